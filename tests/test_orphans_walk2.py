"""A failing run's compensation cut mid-step by an App's close: handed back at once,
so another process continues it without waiting for the closed App's claim to lapse."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tether import App, FakeClock, RunStatus, Workflow
from tether.testing import eventually


def _register(
    app: App, undo_calls: list[str], gate: asyncio.Event | None
) -> Callable[[Workflow], Awaitable[str]]:
    async def undo(booked: str) -> None:
        undo_calls.append(booked)
        if gate is not None:
            gate.set()
            await asyncio.Event().wait()  # never set: the close cuts it

    @app.workflow(name="walk-fail-undo")
    async def flow(wf: Workflow) -> str:
        await wf.step("book", lambda: "booked", compensate=undo)
        raise ValueError("payment declined")

    return flow


async def _is(app: App, workflow_id: str, status: RunStatus) -> bool:
    return (await app.aget_run(workflow_id)).status is status


async def test_a_failing_runs_compensation_cut_by_close_is_handed_back_at_once(
    database_url: str, clock: FakeClock
) -> None:
    """Before, the CancelledError raised inside `_execute`'s failure path skipped the
    hand-back: the run stayed claimed by the closed App until its claim lapsed."""
    app = App(database_url, clock=clock, shutdown_grace=0)
    undoing, cut_calls = asyncio.Event(), list[str]()
    flow = _register(app, cut_calls, undoing)
    try:
        await app.astart(flow, workflow_id="f")
        await asyncio.wait_for(undoing.wait(), 30)
    finally:
        await app.aclose()
    assert cut_calls == ["booked"]

    other, calls = App(database_url, clock=clock), list[str]()
    _register(other, calls, None)
    try:
        run = await other.store.get_run("f")
        assert run is not None and run.owner_expires_at is None  # released, not held
        assert run.status is RunStatus.PENDING
        assert await other.arecover_orphans(grace=0) == ["f"]  # no lapse waited for
        await eventually(lambda: _is(other, "f", RunStatus.COMPENSATED), timeout=30)
        events = [e.type for e in (await other.aget_record("f")).events]
    finally:
        await other.aclose()
    assert calls == ["booked"]  # the cut compensation completes once, elsewhere
    assert "workflow.handed_back" in events
    assert events.count("workflow.failed") == 1
