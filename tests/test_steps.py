"""How a step function is read: sync or async, and whether it takes a `StepContext`."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import threading
import time
import weakref
from datetime import datetime, timedelta
from typing import Any

import pytest

from tether import App, Clock, FakeClock, RetryPolicy, RunStatus, StepContext, Workflow
from tether._steps import is_async, wants_context
from tether.errors import RunAlreadyRunningError
from tether.store import NewEvent
from tether.testing import eventually


class _Document:
    """Something large a step function holds."""


async def fetch(doc: _Document, ctx: StepContext) -> int:
    return ctx.attempt


def render(doc: _Document, *, width: int = 80) -> int:
    return width


class Handler:
    def __init__(self, doc: _Document) -> None:
        self.doc = doc

    async def handle(self, ctx: StepContext) -> int:
        return ctx.attempt

    def plain(self) -> int:
        return 1


class AsyncCallable:
    def __init__(self, doc: _Document) -> None:
        self.doc = doc

    async def __call__(self) -> int:
        return 2


def test_each_kind_of_step_function_is_read_right() -> None:
    doc = _Document()
    cases: list[tuple[Any, bool, bool]] = [  # (fn, async, takes a context)
        (lambda: 1, False, False),
        (lambda ctx: ctx.attempt, False, True),
        (functools.partial(fetch, doc), True, True),
        (functools.partial(fetch, doc, ctx=None), True, False),
        (functools.partial(render, doc), False, False),
        (functools.partial(render, width=3), False, True),
        (Handler(doc).handle, True, True),
        (Handler(doc).plain, False, False),
        (AsyncCallable(doc), True, False),
        (functools.partial(functools.partial(fetch, doc)), True, True),
        (print, False, False),
    ]
    for fn, asynchronous, ctx in cases:
        assert (is_async(fn), wants_context(fn)) == (asynchronous, ctx), fn


def test_reading_a_step_function_keeps_nothing_it_holds_alive() -> None:
    """A partial, a bound method or a callable object made for one step (holding the
    document it works on) is not kept by a cache once the step is done with it."""
    gone: list[weakref.ref[_Document]] = []
    for _ in range(3):
        doc = _Document()
        gone.append(weakref.ref(doc))
        for fn in (functools.partial(fetch, doc), Handler(doc).handle, AsyncCallable(doc)):
            is_async(fn)
            wants_context(fn)
        del doc, fn
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]


async def test_partials_and_methods_run_as_steps(app: App) -> None:
    doc = _Document()
    handler = Handler(doc)

    @app.workflow()
    async def flow(wf: Workflow) -> list[int]:
        return [
            await wf.step("fetch", functools.partial(fetch, doc)),
            await wf.step("render", functools.partial(render, doc, width=7)),
            await wf.step("handle", handler.handle),
            await wf.step("call", AsyncCallable(doc)),
        ]

    assert (await app.arun(flow)).value == [1, 7, 1, 2]


# -- retry back-off: a wait with no step in flight ---------------------------------------

_LONG_BACKOFF = RetryPolicy(attempts=3, backoff=60, max_delay=60, jitter=0)


async def _retrying(app: App, workflow_id: str) -> None:
    async def waits_to_retry() -> bool:
        events = [e.type for e in (await app.aget_record(workflow_id)).events]
        return "step.retrying" in events

    await eventually(waits_to_retry, timeout=10)


async def test_an_exit_during_a_retry_back_off_hands_the_run_back_at_once(
    database_url: str,
) -> None:
    app = App(database_url, shutdown_grace=20)
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise ConnectionError("the agent dropped the call")

    @app.workflow(name="backs-off")
    async def flow(wf: Workflow) -> None:
        await wf.step("call", flaky, retry=_LONG_BACKOFF)

    await app.astart(flow, workflow_id="bo-exit")
    await _retrying(app, "bo-exit")
    began = time.monotonic()
    await app.aclose()  # no step in flight: nothing to wait for, not the 20 s grace
    assert time.monotonic() - began < 5
    again = App(database_url)
    try:
        rec = await again.aget_record("bo-exit")
        assert rec.status is RunStatus.PENDING and rec.events[-1].type == "workflow.handed_back"
        assert rec.steps["call"].attempts == 1 and calls == [1]  # the next process retries
    finally:
        await again.aclose()


async def test_a_run_handed_back_in_its_back_off_waits_out_the_rest_when_resumed(
    database_url: str,
) -> None:
    """The back-off outlives the process that began it: the next process to drive the
    run retries when the attempt is due, not at once (a rate-limited API called again
    the moment a worker restarts)."""
    called: list[datetime] = []

    def opened(clock: Clock | None) -> tuple[App, Any]:
        app = App(database_url, clock=clock)

        def flaky() -> str:
            called.append(app.clock.now())
            if len(called) == 1:
                raise ConnectionError("the agent dropped the call")
            return "ok"

        @app.workflow(name="backs-off-across")
        async def flow(wf: Workflow) -> str:
            return await wf.step("call", flaky, retry=_LONG_BACKOFF)

        return app, flow

    first, flow = opened(None)
    await first.astart(flow, workflow_id="bo-across")
    await _retrying(first, "bo-across")
    await first.aclose()  # handed back at once, in its minute of back-off
    clock = FakeClock(called[0])
    then, flow = opened(clock)
    try:
        rec = await then.aget_record("bo-across")
        retrying = next(e for e in rec.events if e.type == "step.retrying")
        due = datetime.fromisoformat(retrying.detail["retry_at"])
        assert abs((due - called[0]).total_seconds() - 60) < 1
        clock.set(due - timedelta(seconds=45))  # the next process starts 15 s later
        result = await then.arun(flow, workflow_id="bo-across")
        assert result.value == "ok" and len(called) == 2
        assert called[1] == due and clock.slept == [45.0]  # the 45 s left, no more
    finally:
        await then.aclose()


async def _cancel_elsewhere(database_url: str, workflow_id: str) -> None:
    code = "import sys, tether; tether.App(sys.argv[1]).cancel(sys.argv[2], compensate=True)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, database_url, workflow_id
    )
    assert await proc.wait() == 0


@pytest.mark.parametrize("where", ["here", "in another process"])
async def test_a_cancel_during_a_retry_back_off_compensates_at_once(
    database_url: str, where: str
) -> None:
    # another process's cancel is learnt at the next keep-alive turn (a third of a second)
    app = App(database_url, owner_lease=1)
    undone: list[str] = []

    def flaky() -> None:
        raise ConnectionError("the agent dropped the call")

    @app.workflow(name="cancelled-in-back-off")
    async def flow(wf: Workflow) -> None:
        await wf.step("charge", lambda: "c-1", compensate=undone.append)
        await wf.step("call", flaky, retry=_LONG_BACKOFF)

    try:
        await app.astart(flow, workflow_id="bo-cancel")
        await _retrying(app, "bo-cancel")
        began = time.monotonic()
        if where == "here":
            await app.acancel("bo-cancel", "no longer needed", compensate=True)
        else:  # before: only a cancel in the same process cut the back-off short
            await _cancel_elsewhere(database_url, "bo-cancel")
        result = await app.aresult("bo-cancel", timeout=30)
        assert time.monotonic() - began < 15  # not after the minute of back-off
        assert result.record.status is RunStatus.COMPENSATED and undone == ["c-1"]
        assert result.record.steps["call"].attempts == 1  # no attempt after the cancel
    finally:
        await app.aclose()


async def test_a_long_compensation_keeps_its_claim_alive(database_url: str) -> None:
    app = App(database_url, owner_lease=1)  # the claim lapses a second after a missed turn
    undoing, finish = threading.Event(), threading.Event()

    def refund(_: object) -> None:
        undoing.set()
        finish.wait(30)  # a slow refund API, longer than the lease

    @app.workflow(name="slow-undo")
    async def flow(wf: Workflow) -> None:
        await wf.step("charge", lambda: "c-1", compensate=refund)
        await wf.wait_for_signal("go")

    other = App(database_url)
    try:
        await app.arun(flow, workflow_id="slow-undo")  # parked on its signal
        cancelling = asyncio.ensure_future(app.acancel("slow-undo", "stop", compensate=True))
        await eventually(lambda: undoing.is_set(), timeout=10)
        await asyncio.sleep(2.5)  # the lease's length, twice over: real time passes
        with pytest.raises(RunAlreadyRunningError):  # a worker adopting orphans is refused
            await other.store.claim_run(
                "slow-undo", "adopter", app.clock.now(), NewEvent("workflow.compensating"),
                compensating=True, lease=30,
            )  # fmt: skip
        finish.set()
        await cancelling
        rec = (await app.aresult("slow-undo", timeout=30)).record
        assert rec.status is RunStatus.COMPENSATED
    finally:
        finish.set()
        await other.aclose()
        await app.aclose()


async def test_a_step_still_running_when_its_run_ends_is_recorded_failed(app: App) -> None:
    """A step in a task the run's code never awaited stayed `running` in the record of
    the completed run for good (the dashboard showed it running, `tether runs show` too)."""
    never = asyncio.Event()

    async def flow(wf: Workflow) -> str:
        background = asyncio.ensure_future(wf.step("bg", never.wait))
        await wf.step("main", lambda: "m")
        for _ in range(10_000):  # the background step starts (its start is written first)
            if "bg" in wf.in_flight:
                break
            await asyncio.sleep(0.001)
        assert "bg" in wf.in_flight
        del background
        return "done"

    try:
        done = await app.arun(flow, workflow_id="left-running")
        assert done.status is RunStatus.COMPLETED
        steps = done.record.steps
        assert steps["main"].status.value == "completed"
        assert steps["bg"].status.value == "failed", steps["bg"]
        assert (
            steps["bg"].error is not None and "still running when run" in steps["bg"].error.message
        )
    finally:
        never.set()
