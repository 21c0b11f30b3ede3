"""A run whose input or version does not fit the tenant's registration fails saying
how to mend it, as a run in-process is refused. The tenant's handler is reached
through an httpx transport; the orchestrator is an App on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import tether
from tether import RunStatus
from tether.remote import RemoteVersionError, RemoteWorkflowError, TenantApp, handler

SECRET = "s"


@pytest.fixture
def ran() -> list[object]:
    """What the tenant's bodies were called with."""
    return []


@pytest.fixture
def tenant(ran: list[object]) -> TenantApp:
    t = TenantApp(secret=SECRET)

    @t.workflow(name="ping", version="1")
    async def ping(wf: tether.Workflow) -> str:
        ran.append("ping")
        return "pong"

    @t.workflow(name="double", version="1")
    async def double(wf: tether.Workflow, n: int) -> int:
        ran.append(n)
        return n * 2

    @t.workflow(name="unversioned")
    async def unversioned(wf: tether.Workflow) -> str:
        return "done"

    return t


def _flow(app: tether.App, tenant: TenantApp, name: str, version: str | None = "1") -> Any:
    transport = httpx.ASGITransport(app=handler(tenant))
    return app.remote_workflow(name, url="http://t/", secret=SECRET, version=version,
                               transport=transport)  # fmt: skip


def test_an_input_to_a_workflow_that_takes_none_fails_the_run(
    app: tether.App, tenant: TenantApp, ran: list[object]
) -> None:
    # the input was dropped without a word and the run completed, where a run
    # in-process is refused ("takes no input ... drop the input")
    flow = _flow(app, tenant, "ping")
    with pytest.raises(RemoteWorkflowError) as raised:
        app.run(flow, {"to": "ada"}, workflow_id="ping-1")
    assert raised.value.error_type == "InvalidArgumentError"
    assert "workflow 'ping' on the tenant takes no input" in str(raised.value)
    assert "start it without an input, or add a parameter" in str(raised.value)
    assert ran == [] and app.get_record("ping-1").status is RunStatus.FAILED
    assert app.run(flow, workflow_id="ping-2").value == "pong"


def test_a_run_without_the_input_the_workflow_needs_fails_saying_so(
    app: tether.App, tenant: TenantApp, ran: list[object]
) -> None:
    # the body was called with None for `n: int` and failed inside (here: at its
    # result, "NoneType ... does not read back as int"), far from the cause
    flow = _flow(app, tenant, "double")
    with pytest.raises(RemoteWorkflowError) as raised:
        app.run(flow, workflow_id="double-1")
    assert raised.value.error_type == "InvalidArgumentError"
    assert (
        "workflow 'double' on the tenant takes an input, and the run was started without "
        "one: start it with one"
    ) in str(raised.value)
    assert ran == []
    assert app.run(flow, 21, workflow_id="double-2").value == 42


def test_a_version_given_on_the_orchestrator_only_says_to_drop_it(
    app: tether.App, tenant: TenantApp
) -> None:
    # it said "served at versions [None] ... it serves versions None: ... have the
    # tenant serve '1' (@tenant.workflow(compatible=[...]))"
    with pytest.raises(RemoteVersionError) as raised:
        app.run(_flow(app, tenant, "unversioned", "1"))
    assert str(raised.value).endswith(
        "workflow 'unversioned' is served at versions none (no version=), not '1'; the "
        "tenant registered the workflow without a version: drop version= from "
        "app.remote_workflow here, or give it @tenant.workflow(version='1')"
    )


def test_a_version_given_on_the_tenant_only_says_to_give_it_here(
    app: tether.App, tenant: TenantApp
) -> None:
    # it said "not None; ... or have the tenant serve None (@tenant.workflow(compatible=
    # [...]))", and compatible= takes only strings
    with pytest.raises(RemoteVersionError) as raised:
        app.run(_flow(app, tenant, "ping", None))
    assert raised.value.supported == ["1"]
    assert str(raised.value).endswith(
        "workflow 'ping' is served at versions '1', not none (no version=); this run has "
        "no version (app.remote_workflow was given no version=): register the workflow "
        "here with app.remote_workflow(..., version=) naming one the tenant serves"
    )


class _Switch:
    """The tenant's handler, replaced by a redeployment's between two invocations."""

    def __init__(self, tenant: TenantApp) -> None:
        self.inner = handler(tenant)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.inner(scope, receive, send)


def _waiter(version: str | None, compatible: list[str] | None = None) -> TenantApp:
    t = TenantApp(secret=SECRET)

    @t.workflow(name="seat", version=version, compatible=compatible or [])
    async def seat(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("pay")

    return t


@pytest.mark.parametrize(
    ("before", "after", "advice", "mended"),
    [
        ("1", "2", "served at versions '2', not '1'; this run is at version '1', which each "
         "of its invocations sends (a version= given here applies to new runs only): have "
         "the tenant serve '1' too (@tenant.workflow(compatible=['1'])), then rerun this run (app.rerun_from)", ("2", ["1"])),
        ("1", None, "served at versions none (no version=), not '1'; the tenant registered "
         "the workflow without a version: give it @tenant.workflow(version='1'), then rerun this run (app.rerun_from)", ("1", [])),
        (None, "2", "served at versions '2', not none (no version=); this run has no "
         "version, which each of its invocations sends: only a tenant workflow registered "
         "without version= resumes it (its compatible= may list the versions served now), "
         "then rerun this run (app.rerun_from)", (None, ["2"])),
    ],
)  # fmt: skip
def test_a_run_under_way_is_told_to_have_the_tenant_serve_its_version(
    app: tether.App,
    before: str | None,
    after: str | None,
    advice: str,
    mended: tuple[str | None, list[str]],
) -> None:
    # it was told to "register the workflow here with one of them (app.remote_workflow(
    # ..., version=))", which cannot save it: each invocation sends the run's recorded
    # version. And the versions served were named twice, by the tenant and the advice
    switch = _Switch(_waiter(before))
    flow = app.remote_workflow("seat", url="http://t/", secret=SECRET, version=before,
                               transport=httpx.ASGITransport(app=switch))  # fmt: skip
    assert app.run(flow, workflow_id="seat-1").status is RunStatus.WAITING
    switch.inner = handler(_waiter(after))
    app.signal("seat-1", "pay", 1)
    with pytest.raises(RemoteVersionError) as raised:
        app.run(flow, workflow_id="seat-1")
    assert str(raised.value).endswith(advice)
    assert "app.remote_workflow(" not in str(raised.value)
    switch.inner = handler(_waiter(*mended))  # as the advice says: the run goes on
    assert app.rerun_from("seat-1", "remote.tenant").status is RunStatus.WAITING
    app.signal("seat-1", "pay", 2)
    assert app.run(flow, workflow_id="seat-1").value == 2
