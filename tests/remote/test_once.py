"""What a remote body writes once (``wf.append_event`` outside a step) is recorded
once, however its invocation is cut and resumed: as in-process, where the event
and the write that marks it done are one transaction."""

from __future__ import annotations

from typing import Any

import httpx

import tether
from tether.remote import TenantApp, handler
from tether.remote._recorder import ACCEPTS

from ._answers import CutAfterFirst, tenant_lines

SECRET = "s"


class _Heard:
    """A listener: the custom events the orchestrator told of."""

    def __init__(self) -> None:
        self.notes: list[tuple[str | None, Any]] = []

    async def intercept(self, call: tether.StepCall, proceed: tether.Proceed) -> Any:
        return await proceed()

    def on_event(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        if type_ == "note":
            self.notes.append((message, detail))


def test_an_event_cut_off_from_its_once_key_is_not_recorded_twice(database_url: str) -> None:
    # the event went as an "event" line and its once-key as a "step" line after it: cut
    # between them, the event was recorded and its key not, so the next invocation
    # replayed the body past wf.append_event and recorded the event a second time
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="noted")
    async def noted(wf: tether.Workflow) -> int:
        await wf.append_event("note", "hello", {"n": 1})
        return 1

    heard = _Heard()
    cut = CutAfterFirst(httpx.ASGITransport(handler(tenant)), b'"note"')
    with tether.App(database_url, inline_wait=0, interceptors=[heard]) as app:
        flow = app.remote_workflow(
            "noted", url="http://t/", secret=SECRET, retry_delay=0.01, transport=cut
        )
        assert app.run(flow, workflow_id="once-1").value == 1
        rec = app.get_record("once-1")
    assert cut.cuts == 1
    assert [(e.type, e.message) for e in rec.events if e.type == "note"] == [("note", "hello")]
    assert heard.notes == [("hello", {"n": 1})]
    assert rec.steps["tether.event"].status is tether.StepStatus.COMPLETED


def test_events_of_a_body_go_in_order_with_the_steps_around_them(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="ordered")
    async def ordered(wf: tether.Workflow) -> int:
        await wf.step("before", lambda: 1)
        await wf.append_event("note", "one")
        await wf.append_event("note", "two", {"k": [1, 2]})
        await wf.step("after", lambda: 2)
        return 3

    flow = app.remote_workflow(
        "ordered", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    assert app.run(flow, workflow_id="once-2").value == 3
    rec = app.get_record("once-2")
    seen = [
        (e.type, e.message)
        for e in rec.events
        if e.type in ("note", "step.completed") and e.message != "remote.tenant"
    ]
    assert seen == [
        ("step.completed", "before"),
        ("note", "one"),
        ("note", "two"),
        ("step.completed", "after"),
    ]
    assert [e.detail for e in rec.events if e.type == "note"] == [None, {"k": [1, 2]}]


def _lines(tenant: TenantApp, accepts: list[str]) -> list[dict[str, Any]]:
    return tenant_lines(tenant, SECRET, "noted", accepts)


def test_an_orchestrator_of_an_earlier_release_is_sent_the_event_on_a_line_of_its_own() -> None:
    # it records no events on a value's line: sent there, the event would be lost
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="noted")
    async def noted(wf: tether.Workflow) -> int:
        await wf.append_event("note", "hello", {"n": 1})
        return 1

    event = {"type": "note", "message": "hello", "detail": '{"n":1}'}
    earlier = _lines(tenant, ["attempt", "wait"])
    assert [line["type"] for line in earlier] == ["event", "step", "answer"]
    assert earlier[0]["event"] == event and "events" not in earlier[1]["step"]
    now = _lines(tenant, list(ACCEPTS))
    assert [line["type"] for line in now] == ["step", "answer"]
    assert now[0]["step"]["value"] is True and now[0]["step"]["events"] == [event]
