"""A remote run's steps reach the run's `on_event` listeners as a local run's do:
the same events, the same shapes, once each."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import tether
from tether import RunStatus
from tether.remote import TenantApp, handler

from .test_inprocess import _Twice

SECRET = "s"

Seen = list[tuple[str, str | None, Any]]


class Listener:
    """An App-level listener (an interceptor's ``on_event``): it hears the drives
    this App makes in the background too, such as the resume a signal starts."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}

    async def intercept(self, call: tether.StepCall, proceed: tether.Proceed) -> Any:
        return await proceed()

    def on_event(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        self.seen.setdefault(workflow_id, []).append((type_, message, detail))


@pytest.fixture
def listener() -> Listener:
    return Listener()


@pytest.fixture
def app(database_url: str, listener: Listener) -> Iterator[tether.App]:
    a = tether.App(database_url, inline_wait=0, interceptors=[listener])
    yield a
    a.close()


def _body(tries: dict[str, int]) -> Any:
    """A workflow with a step, a retried step, a step that fails for good, a state
    update, an event, a recorded value and a wait."""

    def flaky(key: str) -> str:
        tries[key] = tries.get(key, 0) + 1
        if tries[key] < 2:
            raise ConnectionError("down")
        return "up"

    def refuse() -> None:
        raise PermissionError("no")

    async def body(wf: tether.Workflow) -> list[Any]:
        a = await wf.step("a", lambda: 1)
        f = await wf.step(
            "f", lambda: flaky(wf.workflow_id), retry=tether.RetryPolicy(attempts=3, backoff=0)
        )
        with contextlib.suppress(PermissionError):
            await wf.step("refused", refuse)
        await wf.update_state({"phase": "asked"})
        await wf.append_event("note", "hi", {"n": 1})
        await wf.uuid()
        got = await wf.wait_for_signal("go")
        return [a, f, got, await wf.step("b", lambda: 2)]

    return body


def _drive(app: tether.App, listener: Listener, flow: Any, wid: str) -> Seen:
    """Run `wid` to its signal, signal it, run it to its end; what the listeners saw
    (a hook given to `run` and the App's own: the same)."""
    seen: Seen = []

    def hook(workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        seen.append((type_, message, detail))

    assert app.run(flow, workflow_id=wid, on_event=hook).status is RunStatus.WAITING
    assert seen == listener.seen[wid]
    app.signal(wid, "go", "yes")  # the run goes on in the background
    assert app.run(flow, workflow_id=wid).value == [1, "up", "yes", 2]
    return listener.seen[wid]


def _the_runs(seen: Seen) -> Seen:
    """What a remote run's listener sees besides the orchestrator's own events."""
    return [e for e in seen if e[1] != "remote.tenant" and e[0] != "remote.invoked"]


@pytest.mark.parametrize("twice", [False, True], ids=["once", "lines-delivered-twice"])
def test_a_remote_runs_listener_sees_its_steps_as_a_local_runs_does(
    app: tether.App, listener: Listener, twice: bool
) -> None:
    # the listener saw only the run's own events (running, waiting, completed), and a
    # state update twice; the tenant's steps reached the store but no listener
    tries: dict[str, int] = {}
    tenant = TenantApp(secret=SECRET)
    tenant.workflow(name="far")(_body(tries))
    inner = httpx.ASGITransport(handler(tenant))
    flow = app.remote_workflow(
        "far", url="http://t/", secret=SECRET, transport=_Twice(inner) if twice else inner
    )
    local = app.workflow(name="here")(_body(tries))
    remote_seen = _drive(app, listener, flow, "far-1")
    local_seen = _drive(app, listener, local, "here-1")
    assert _the_runs(remote_seen) == local_seen
    steps = [(t, m) for t, m, _ in local_seen if t.startswith("step.")]
    assert steps == [
        ("step.started", "a"), ("step.completed", "a"),
        ("step.started", "f"), ("step.retrying", "f"),
        ("step.started", "f"), ("step.completed", "f"),
        ("step.started", "refused"), ("step.failed", "refused"),
        ("step.started", "b"), ("step.completed", "b"),
    ]  # fmt: skip
    assert ("step.completed", "f", {"attempt": 2}) in remote_seen
    # and the record holds the same events as the local run's
    kinds = [(e.type, e.message) for e in app.get_record("far-1").events]
    assert kinds.count(("state.updated", None)) == 1
    assert not any(m and m.startswith(("tether.", "uuid")) for _, m in kinds)


def test_an_event_a_step_appends_on_the_tenant_is_recorded_with_it(app: tether.App) -> None:
    # the tenant dropped it: a step's attached events never left the tenant
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="noted")
    async def noted(wf: tether.Workflow) -> int:
        async def work() -> int:
            await wf.append_event("progress", "half way", {"done": 0.5})
            return 1

        return await wf.step("work", work)

    flow = app.remote_workflow(
        "noted", url="http://t/", secret=SECRET, transport=httpx.ASGITransport(handler(tenant))
    )
    seen: Seen = []
    app.run(flow, workflow_id="ev-1", on_event=lambda _w, t, m, d: seen.append((t, m, d)))
    events = app.get_record("ev-1").events
    progress = [(e.type, e.message, e.detail) for e in events if e.type == "progress"]
    assert progress == [("progress", "half way", {"done": 0.5})]
    kinds = [(e.type, e.message) for e in events]
    assert kinds[kinds.index(("step.completed", "work")) + 1][0] == "progress"
    assert seen.count(("progress", "half way", {"done": 0.5})) == 1
