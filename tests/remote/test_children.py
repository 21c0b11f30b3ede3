"""A child a tenant's body starts is looked up on the orchestrator by its name: one
not registered there fails the run, saying how to register it."""

from __future__ import annotations

import httpx
import pytest

import tether
from tether.errors import WorkflowNotFoundError
from tether.remote import TenantApp, handler

SECRET = "s"


def _tenant() -> TenantApp:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="kid")
    async def kid(wf: tether.Workflow) -> int:
        return 1

    @tenant.workflow(name="waits")  # on its child
    async def waits(wf: tether.Workflow) -> int:
        return int(await wf.child(kid)) + 1

    @tenant.workflow(name="starts")  # a detached child
    async def starts(wf: tether.Workflow) -> int:
        await wf.start_child(kid, workflow_id="kid-of-starts")
        return 2

    return tenant


@pytest.mark.parametrize(("parent", "value"), [("waits", 2), ("starts", 2)])
def test_an_unknown_child_is_to_be_registered_as_a_remote_workflow_or_a_local_one(
    app: tether.App, parent: str, value: int
) -> None:
    # the message said only "register it with @app.workflow": a child the tenant
    # serves has no code in the orchestrator's process to decorate
    transport = httpx.ASGITransport(handler(_tenant()))
    flow = app.remote_workflow(parent, url="http://t/", secret=SECRET, transport=transport)
    with pytest.raises(WorkflowNotFoundError) as raised:
        app.run(flow, workflow_id=f"{parent}-1")
    message = str(raised.value)
    assert (
        f"remote workflow {parent!r} (run '{parent}-1') started a child workflow 'kid'" in message
    )
    assert f"(registered: {parent})" in message
    assert "app.remote_workflow('kid', url=..., secret=...) if a tenant serves it" in message
    assert "or with @app.workflow if its code runs in the orchestrator's process" in message
    # the advice works: registered as a remote workflow, the child runs on the tenant
    app.remote_workflow("kid", url="http://t/", secret=SECRET, transport=transport)
    assert app.run(flow, workflow_id=f"{parent}-2").value == value
