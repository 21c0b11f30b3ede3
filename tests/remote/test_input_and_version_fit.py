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
        "workflow 'ping' is served at versions '1', not none (no version=); it serves "
        "versions '1', and this run has no version (app.remote_workflow was given no "
        "version=): register the workflow here with app.remote_workflow(..., version=) "
        "naming one of them"
    )
