"""Sync step functions: run in step threads, without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from tether import App, RetryPolicy, StepContext, StepTimeoutError, Workflow
from tether._step_threads import SPIN, StepThreads
from tether.testing import eventually


async def test_a_long_sync_step_does_not_block_the_loop(app: App) -> None:
    release = threading.Event()
    entered = threading.Event()
    ticks = 0

    def blocking() -> str:
        entered.set()
        assert release.wait(10), "the test never released the step"
        return "done"

    async def ticker() -> None:
        nonlocal ticks
        await eventually(entered.is_set, interval=0.001)
        for _ in range(20):  # the step is blocked: the loop must keep ticking meanwhile
            await asyncio.sleep(0.001)
            ticks += 1
        release.set()

    async def flow(wf: Workflow) -> str:
        out, _ = await asyncio.gather(wf.step("block", blocking), ticker())
        return str(out)

    result = await asyncio.wait_for(app.arun(flow, workflow_id="wf-block"), 20)
    assert result.value == "done"
    assert ticks == 20


async def test_sync_step_results_and_errors_pass_through(app: App) -> None:
    class Boom(Exception):
        pass

    def fail() -> int:
        raise Boom("no")

    def with_ctx(ctx: StepContext) -> dict[str, object]:
        return {"name": ctx.name, "attempt": ctx.attempt, "thread": threading.current_thread().name}

    async def flow(wf: Workflow) -> dict[str, object]:
        out = await wf.step("ctx", with_ctx)
        with pytest.raises(Boom, match="no"):
            await wf.step("fail", fail)
        return out

    result = await app.arun(flow, workflow_id="wf-pass")
    assert result.value["name"] == "ctx" and result.value["attempt"] == 1
    assert str(result.value["thread"]).startswith("tether-step-")
    assert result.record.steps["fail"].error is not None


async def test_step_threads_hand_back_slow_and_fast_calls() -> None:
    pool = StepThreads(max_threads=2)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    try:
        assert await pool.run(lambda: 1) == 1
        assert await pool.run(var.get) == "caller"  # runs in a copy of the caller's context

        def slow(x: int) -> int:
            threading.Event().wait(SPIN * 20)  # well past the in-place wait
            return x * 2

        assert await asyncio.gather(*(pool.run(slow, i) for i in range(5))) == [0, 2, 4, 6, 8]
        with pytest.raises(KeyError):
            await pool.run({}.__getitem__, "missing")
    finally:
        assert pool.shutdown(wait=True, timeout=5)
    assert await pool.run(lambda: "again") == "again"  # usable after shutdown
    assert pool.shutdown(wait=True, timeout=5)


async def test_shutdown_waits_for_a_step_in_flight_up_to_its_timeout() -> None:
    pool = StepThreads()
    release = threading.Event()
    started = threading.Event()

    def step() -> str:
        started.set()
        release.wait(10)
        return "finished"

    task = asyncio.ensure_future(pool.run(step))
    await eventually(started.is_set, interval=0.001)
    assert pool.in_flight == 1
    assert not await asyncio.to_thread(pool.shutdown, True, 0.05)  # still running
    release.set()
    assert await asyncio.to_thread(pool.shutdown, True, 5)
    assert await task == "finished"
    assert pool.in_flight == 0
    threads = [t for t in threading.enumerate() if t.name.startswith("tether-step-")]
    assert all(t.daemon for t in threads)


async def test_steps_that_timed_out_while_hung_do_not_starve_later_steps(app: App) -> None:
    hung = threading.Event()  # a request that never answers, until the test ends

    def hangs() -> str:
        hung.wait(30)
        return "late"

    async def flow(wf: Workflow) -> str:
        # more attempts than the App has step threads, each abandoned still running
        with pytest.raises(StepTimeoutError):
            await wf.step("hangs", hangs, timeout=0.05, retry=RetryPolicy(40, backoff=0))
        return await wf.step("quick", lambda: "quick", timeout=5)

    try:
        result = await asyncio.wait_for(app.arun(flow, workflow_id="wf-hung"), 30)
        assert result.value == "quick"  # it ran, instead of timing out in the queue
    finally:
        hung.set()


async def test_a_call_given_up_before_a_thread_took_it_never_runs() -> None:
    pool = StepThreads(max_threads=1)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def busy() -> str:
        started.set()
        release.wait(10)
        return "busy"

    first = asyncio.ensure_future(pool.run(busy))
    await eventually(started.is_set, interval=0.001)
    with pytest.raises(TimeoutError):  # `busy` holds the one thread: this call is queued
        await asyncio.wait_for(pool.run(ran.append, "late"), 0.05)
    release.set()
    assert await first == "busy"
    assert await pool.run(lambda: "next") == "next"  # the thread is free again
    assert ran == []  # its caller gave up: running it now would be a side effect nobody sees
    assert pool.shutdown(wait=True, timeout=5)
