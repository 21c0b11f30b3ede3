"""`aresult` on a run parked on a durable timer of an App on a `FakeClock`.

A FakeClock moves only when told, so such a run never ends by waiting: the
call waited for ever. Now a timer the clock was moved past (from another task,
as a test does) fires and the run's result comes back; a timer not due on a
clock that nobody moves is refused with an error naming the way to move it.
The `wait_for` limits only guard against a hang; they measure nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import TetherError

GUARD = 60  # seconds: only so that a regression fails instead of hanging


@pytest.fixture
async def parked(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App on the FakeClock whose run "n" is parked on a one-hour durable timer."""
    app = App(database_url, clock=clock)

    @app.workflow(name="napper")
    async def napper(wf: Workflow) -> str:
        await wf.step("before", lambda: "b")
        await wf.sleep(3600)
        return await wf.step("after", lambda: "woke")

    try:
        assert (await app.arun(napper, workflow_id="n")).status is RunStatus.WAITING
        yield app
    finally:
        await app.aclose()


async def test_a_timer_nobody_moves_the_clock_for_is_refused(parked: App) -> None:
    with pytest.raises(TetherError) as caught:
        await asyncio.wait_for(parked.aresult("n"), GUARD)
    message = str(caught.value)
    assert "run 'n' waits for a durable timer due in 3600s" in message
    assert "clock.advance(3600)" in message and "pass_time(app, 3600)" in message
    assert (await parked.aget_run("n")).status is RunStatus.WAITING  # left as it was


async def test_the_result_comes_once_another_task_moves_the_clock(
    parked: App, clock: FakeClock
) -> None:
    waiting = asyncio.ensure_future(asyncio.wait_for(parked.aresult("n"), GUARD))
    await asyncio.sleep(0)  # it is waiting now
    clock.advance(3600)  # only moved: nobody fires the timer but the waiting call
    result = await waiting
    assert (result.status, result.value) == (RunStatus.COMPLETED, "woke")


async def test_a_timer_already_due_is_fired_and_the_result_returned(
    parked: App, clock: FakeClock
) -> None:
    clock.advance(7200)
    result = await asyncio.wait_for(parked.aresult("n"), GUARD)
    assert (result.status, result.value) == (RunStatus.COMPLETED, "woke")
