"""A run cancelled from another App while its step runs, whose driving App then
closes before the step returns: the step's record once the drive is cut."""

from __future__ import annotations

import asyncio

import pytest

from tether import App, FakeClock

from .test_cancel_walk import Gate, _assert_cut_short, _flow


@pytest.mark.parametrize("sync", [False, True], ids=["async-step", "sync-step"])
async def test_a_cancelled_runs_step_cut_by_the_drivers_close_is_recorded_cut_short(
    database_url: str, clock: FakeClock, sync: bool
) -> None:
    """Before, the close's cancellation met the cancel in the hand-back (refused), the
    drive ended there and the step read `running` in the cancelled run for good."""
    driver = App(database_url, clock=clock, shutdown_grace=0)
    other = App(database_url, clock=clock)
    gate = Gate(sync)
    try:
        drive = asyncio.create_task(driver.arun(_flow(gate), workflow_id="w"))
        await gate.reached()
        assert await other.acancel("w", "stop") == ["w"]
        await driver.aclose()  # the step is still blocked: the close cuts it
        gate.release()
        await asyncio.gather(drive, return_exceptions=True)
        _assert_cut_short(await other.aget_record("w"))
    finally:
        gate.release()
        await driver.aclose()
        await other.aclose()
