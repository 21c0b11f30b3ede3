"""A remote body's ``wf.update_state`` is made once per call in its code, however its
invocation is cut and resumed: the state travels in the line of the value that marks
the update written, and the orchestrator records the state, its "state.updated" event
and that value in one write, as in-process."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

import tether
from tether.remote import RemoteRefusedError, TenantApp, handler
from tether.remote._call import parse_line
from tether.remote._recorder import ACCEPTS
from tether.serde import MAX_DEPTH

from ._answers import CutAfterFirst, tenant_lines
from .test_cuts import _serve

SECRET = "s"


class _Heard:
    """A listener: how often the orchestrator told of a state update."""

    def __init__(self) -> None:
        self.updates = 0

    async def intercept(self, call: tether.StepCall, proceed: tether.Proceed) -> Any:
        return await proceed()

    def on_event(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        if type_ == "state.updated":
            self.updates += 1


def _counting() -> TenantApp:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="counted")
    async def counted(wf: tether.Workflow) -> Any:
        await wf.update_state(lambda s: {"count": (s or {}).get("count", 0) + 1})
        await wf.step("after", lambda: 1)
        return wf.state

    return tenant


def test_a_state_update_cut_off_from_its_once_key_is_not_recorded_twice(
    database_url: str,
) -> None:
    # the state went as a "state" line and its once-key as a "step" line after it: cut
    # between them, the state and its event were recorded and the key not, so the next
    # invocation replayed the body past wf.update_state and recorded the event again
    heard = _Heard()
    cut = CutAfterFirst(httpx.ASGITransport(handler(_counting())), b"count")
    with tether.App(database_url, inline_wait=0, interceptors=[heard]) as app:
        flow = app.remote_workflow(
            "counted", url="http://t/", secret=SECRET, retry_delay=0.01, transport=cut
        )
        assert app.run(flow, workflow_id="state-1").value == {"count": 1}
        rec = app.get_record("state-1")
    assert cut.cuts == 1
    assert [e.type for e in rec.events].count("state.updated") == 1
    assert heard.updates == 1
    assert rec.state == {"count": 1}
    assert rec.steps["tether.state"].status is tether.StepStatus.COMPLETED
    assert rec.steps["after"].status is tether.StepStatus.COMPLETED


def test_the_drive_keeps_the_state_the_tenant_updated(database_url: str) -> None:
    # the orchestrator's own context should hold the state as recorded, as it does for
    # a "state" line (`write_state_now`): code run in it after the tenant's (here a
    # local workflow that drives the remote one in its own context) would build on it
    transport = httpx.ASGITransport(handler(_counting()))
    with tether.App(database_url, inline_wait=0) as app:
        flow = app.remote_workflow("counted", url="http://t/", secret=SECRET, transport=transport)

        @app.workflow(name="around")
        async def around(wf: tether.Workflow) -> Any:
            return [await flow(wf), wf.state]

        result = app.run(around, workflow_id="state-2").value
        rec = app.get_record("state-2")
    assert rec.state == {"count": 1}
    assert [e.type for e in rec.events].count("state.updated") == 1
    assert result == [{"count": 1}, {"count": 1}]


def _lines(tenant: TenantApp, accepts: list[str]) -> list[dict[str, Any]]:
    return tenant_lines(tenant, SECRET, "counted", accepts)


def test_an_orchestrator_of_an_earlier_release_is_sent_the_state_on_a_line_of_its_own() -> None:
    # it records no state on a value's line: sent there, the update would be lost
    tenant = _counting()
    earlier = _lines(tenant, ["attempt", "wait", "value_events"])
    assert [line["type"] for line in earlier] == ["state", "step", "attempt", "step", "answer"]
    assert earlier[0]["state"] == '{"count":1}'
    assert earlier[1]["step"]["key"] == "tether.state" and "state" not in earlier[1]["step"]
    first = _lines(tenant, [])  # the first release's: no attempt lines either
    assert [line["type"] for line in first] == ["state", "step", "step", "answer"]
    now = _lines(tenant, list(ACCEPTS))
    assert [line["type"] for line in now] == ["step", "attempt", "step", "answer"]
    value = now[0]["step"]
    assert value["key"] == "tether.state" and value["value"] is True
    assert value["state"] == '{"count":1}' and "events" not in value


def _value_line(state: str, result: str | None = None) -> bytes:
    """A value line of an update to `state` (the value: `result`, or the state)."""
    step = {"key": "tether.state", "name": "tether.state", "value": True, "state": state}
    step["result"] = state if result is None else result
    return json.dumps({"type": "step", "step": step}).encode()


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("NaN", "$ is nan"),
        (json.dumps({"a": [1, math.inf]}), "$.a[1] is inf"),
        (json.dumps("a\x00b"), "NUL"),
        ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), f"nested more than {MAX_DEPTH} levels"),
        ("[" * 10**5 + "]" * 10**5, "step.state is nested too deep"),
        ("{bad", "step.state is not JSON text"),
    ],
    ids=["nan", "inf", "nul", "deep", "recursion", "not-json"],
)
def test_the_state_on_a_value_line_is_checked_as_a_state_line_is(state: str, why: str) -> None:
    # only the value's result was checked, and it need not be the state
    with pytest.raises(ValueError) as raised:
        parse_line(_value_line(state, result="1"))
    assert why in str(raised.value)
    line, values = parse_line(_value_line('{"count":3}'))
    assert line.step is not None and line.step.state == '{"count":3}'  # recorded as it came
    assert values["step.state"] == {"count": 3}


def test_a_state_the_store_cannot_keep_fails_the_run_and_is_not_recorded(
    database_url: str,
) -> None:
    # unchecked, a NUL in it would fail the write on PostgreSQL at every drive (the run
    # left running); the value's own result is fine
    server, url = _serve(_value_line('{"v":"\\u0000"}', result="1") + b"\n", hang=False)
    try:
        with tether.App(database_url, inline_wait=0) as app:
            flow = app.remote_workflow("bad", url=url, secret=SECRET, max_invocations=1)
            with pytest.raises(RemoteRefusedError, match=r"invalid_answer.*NUL"):
                app.run(flow, workflow_id="state-3")
            rec = app.get_record("state-3")
    finally:
        server.shutdown()
        server.server_close()
    assert rec.status is tether.RunStatus.FAILED
    assert rec.state is None
    assert "state.updated" not in [e.type for e in rec.events]
    assert list(rec.steps) == ["remote.tenant"]
