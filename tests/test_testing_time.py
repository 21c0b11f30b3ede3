"""`tether.testing.pass_time` and `App.settle`: days of timers in a moment, each at its time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import tether
from tether import App, RunStatus, Workflow, testing
from tether.testing import FakeClock, pass_time, pass_time_sync


async def reminder(wf: Workflow, who: str) -> str:
    await wf.step("ask", lambda: f"asked {who}")
    try:
        answer = await wf.wait_for_signal("answer", timeout=timedelta(days=1))
    except tether.WaitTimeout:
        await wf.sleep(timedelta(hours=2))
        return "nudged"
    return f"got {answer}"


async def test_each_timer_fires_at_its_own_time_and_its_run_goes_on_before_time_does(
    tether_app: App, tether_clock: FakeClock
) -> None:
    start = tether_clock.now()
    assert (await tether_app.arun(reminder, "bob", workflow_id="r")).status == "waiting"
    # the timeout wakes it after a day; its two-hour sleep is set then, and fires too
    assert await pass_time(tether_app, timedelta(days=2)) == ["r", "r"]
    run = await tether_app.aget_run("r")
    assert run.status is RunStatus.COMPLETED
    assert run.finished_at is not None and run.finished_at - start == timedelta(days=1, hours=2)
    assert tether_clock.now() - start == timedelta(days=2)
    assert (await tether_app.aresult("r", timeout=5)).value == "nudged"


async def test_a_timer_beyond_the_span_stays_set(tether_app: App, tether_clock: FakeClock) -> None:
    await tether_app.arun(reminder, "ada", workflow_id="r")
    assert await pass_time(tether_app, 3600) == []
    assert (await tether_app.aget_run("r")).status is RunStatus.WAITING
    assert await pass_time(tether_app, timedelta(hours=23)) == ["r"]  # the day is up
    assert (await tether_app.aget_run("r")).status is RunStatus.WAITING  # asleep 2 h
    await tether_app.asignal("r", "answer", "late")  # its wait is over: kept, not taken
    assert await pass_time(tether_app, timedelta(hours=2)) == ["r"]
    assert (await tether_app.aresult("r", timeout=5)).value == "nudged"


async def napping_child(wf: Workflow, hours: int) -> int:
    await wf.sleep(timedelta(hours=hours))
    return hours


async def parent(wf: Workflow, n: int) -> int:
    done = await wf.for_each(range(1, n + 1), lambda h: wf.child(napping_child, h), max_parallel=n)
    return sum(v for v in done.values if v is not None)


async def test_children_wake_and_their_ends_wake_the_parent(
    tether_app: App, tether_clock: FakeClock
) -> None:
    start = tether_clock.now()
    assert (await tether_app.arun(parent, 3, workflow_id="p")).status == "waiting"
    woken = await pass_time(tether_app, timedelta(hours=5))
    # an hour apart, in order; each child's end wakes the parent (not a timer)
    assert woken == [f"p/napping_child[{i}]#1" for i in range(3)]
    run = await tether_app.aget_run("p")
    assert run.finished_at is not None and run.finished_at - start == timedelta(hours=3)
    assert (await tether_app.aresult("p", timeout=5)).value == 6


async def test_a_run_that_keeps_a_timer_due_gives_up_rather_than_spin(
    tether_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ticker(wf: Workflow) -> None:
        while True:
            await wf.sleep(1)

    monkeypatch.setattr(testing, "MAX_FIRINGS", 5)
    app = App(tether_app.store.url, clock=tether_app.clock, store=tether_app.store, inline_wait=0)
    await app.arun(ticker, workflow_id="t")
    with pytest.raises(AssertionError, match="5 fired"):
        await pass_time(app, timedelta(days=1))


async def test_an_app_on_the_real_clock_is_refused(sqlite_url: str) -> None:
    async with App(sqlite_url) as app:
        with pytest.raises(tether.InvalidArgumentError, match="needs an App on a FakeClock"):
            await pass_time(app, 60)
    with pytest.raises(tether.InvalidArgumentError, match="pass_time's `by` must be"):
        await pass_time(testing.memory_app(), -1)


async def test_settle_waits_for_the_run_a_signal_woke(tether_app: App) -> None:
    await tether_app.arun(reminder, "ada", workflow_id="r")
    assert await tether_app.asignal("r", "answer", "yes")
    await tether_app.asettle()  # no aresult: the woken run went as far as it can here
    assert (await tether_app.aget_run("r")).status is RunStatus.COMPLETED


async def test_settle_gives_up_at_its_timeout_and_the_run_goes_on(tether_app: App) -> None:
    gate = asyncio.Event()

    async def held(wf: Workflow) -> str:
        async def wait() -> str:
            await gate.wait()
            return "through"

        return await wf.step("gate", wait)

    run_id = await tether_app.astart(held)
    with pytest.raises(TimeoutError, match=r"still running after 0\.05s"):
        await tether_app.asettle(timeout=0.05)
    gate.set()
    await tether_app.asettle()
    assert (await tether_app.aresult(run_id, timeout=5)).value == "through"
    with pytest.raises(tether.InvalidArgumentError, match="timeout must be"):
        await tether_app.asettle(timeout=-1)


def test_a_sync_test_lets_time_pass_too(database_url: str) -> None:
    with App(database_url, clock=FakeClock()) as app:
        assert app.run(reminder, "eve", workflow_id="s").status == "waiting"
        assert pass_time_sync(app, timedelta(days=2)) == ["s", "s"]
        assert app.get_run("s").status is RunStatus.COMPLETED


def test_the_async_form_hops_to_the_loop_of_an_app_used_through_its_sync_api(
    database_url: str,
) -> None:
    # the sync API put the App's store on its own loop thread; a test's own loop
    # (asyncio.run) must not take it from there (on PostgreSQL: another loop's pool)
    with App(database_url, clock=FakeClock()) as app:
        app.run(reminder, "fay", workflow_id="h")
        assert asyncio.run(pass_time(app, timedelta(days=2))) == ["h", "h"]
        assert app.result("h", timeout=5).value == "nudged"


async def answer_or_default(wf: Workflow) -> str:
    return await wf.wait_for_signal("answer", timeout=timedelta(days=1), default="no answer")


async def test_result_fires_a_wait_timeout_the_clock_was_moved_past(
    tether_app: App, tether_clock: FakeClock
) -> None:
    """`aresult` after `clock.advance` past a signal wait's timeout: the timeout fires, as
    a durable timer the clock passed does (it waited for ever, the run left `waiting`)."""
    assert (await tether_app.arun(answer_or_default, workflow_id="d")).status == "waiting"
    tether_clock.advance(timedelta(days=1, hours=3))
    assert (await tether_app.aresult("d", timeout=5)).value == "no answer"
