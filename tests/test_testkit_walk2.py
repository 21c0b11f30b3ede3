"""`tether.testing` walked as a new user writing tests for their own workflows would:
a helper that hung for good, an error that hid how far the fake clock had moved."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tether import App, FakeClock, RunStatus, Workflow, testing
from tether.testing import eventually, pass_time


async def test_eventually_on_a_fake_clock_says_how_far_it_moved(tether_clock: FakeClock) -> None:
    """`timeout` is real seconds and the default `interval` moves the clock about as
    fast as real time: waiting for a minute of fake time failed saying only "did not
    hold within 0.2s", as if the clock had been moved past the minute."""
    start = tether_clock.now()

    def a_minute_passed() -> bool:
        return tether_clock.now() - start >= timedelta(minutes=1)

    with pytest.raises(AssertionError) as caught:
        await eventually(a_minute_passed, timeout=0.2, clock=tether_clock)
    said = str(caught.value)
    moved = (tether_clock.now() - start).total_seconds()
    assert 0 < moved < 60
    assert "the FakeClock moved on only" in said and "larger interval=" in said, said
    # a larger interval moves it far enough within the same real timeout
    assert await eventually(a_minute_passed, timeout=5, interval=10, clock=tether_clock)


async def test_eventually_without_a_clock_says_nothing_of_one() -> None:
    with pytest.raises(AssertionError) as caught:
        await eventually(lambda: False, timeout=0.05)
    assert "FakeClock" not in str(caught.value)


async def test_pass_time_fails_naming_a_run_stuck_in_a_step_instead_of_hanging(
    tether_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time moves on once the runs driven here rest; a step waiting for a gate the test
    opens only after `pass_time` never ends, and `pass_time` hung for good."""
    monkeypatch.setattr(testing, "REST_TIMEOUT", 0.3, raising=False)
    gate = asyncio.Event()

    async def wait_for_gate() -> str:
        await gate.wait()
        return "through"

    @tether_app.workflow(name="gated")
    async def gated(wf: Workflow) -> str:
        return await wf.step("gate", wait_for_gate)

    await tether_app.astart(gated, workflow_id="g1")
    try:
        async with asyncio.timeout(10):  # the old code never returned
            with pytest.raises(AssertionError, match=r"still running: \['g1'\]"):
                await pass_time(tether_app, timedelta(hours=1))
    finally:
        gate.set()
    # the run was left alone: it ends once the gate opens
    assert (await tether_app.aresult("g1", timeout=5)).value == "through"
    assert (await tether_app.aget_run("g1")).status is RunStatus.COMPLETED


async def test_pass_time_fails_naming_a_ticks_run_stuck_in_a_step_instead_of_hanging(
    tether_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schedule's tick is driven by `pass_time` itself, as a worker would; a step of
    it waiting for a gate the test opens afterwards hung `pass_time` for good."""
    monkeypatch.setattr(testing, "REST_TIMEOUT", 0.3, raising=False)
    gate = asyncio.Event()

    async def wait_for_gate() -> str:
        await gate.wait()
        return "through"

    @tether_app.workflow(name="hourly")
    async def hourly(wf: Workflow) -> str:
        return await wf.step("gate", wait_for_gate)

    tether_app.schedule(hourly, cron="0 * * * *")
    try:
        async with asyncio.timeout(10):  # the old code never returned
            with pytest.raises(AssertionError, match=r"run of a schedule's tick, 'hourly@"):
                await pass_time(tether_app, timedelta(hours=1))
    finally:
        gate.set()
    (run,) = await tether_app.alist_runs(workflow="hourly")
    # the run was left alone: it ends once the gate opens
    assert (await tether_app.aresult(run.workflow_id, timeout=5)).value == "through"
