"""Waking a run that nothing will drive says so, whichever way it was woken: a signal
did, a completed token or an event said nothing and the run waited unseen."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tether import App, FakeClock, Workflow

UNDRIVEN = "woke, but no live process drives workflow 'gated'"


def _declare(app: App) -> Any:
    @app.workflow(name="gated")
    async def gated(wf: Workflow) -> None:
        token = await wf.create_token()
        await wf.step("publish", lambda: token)
        await wf.wait_for_token(token)
        await wf.wait_for_event("go")
        await wf.wait_for_signal("done")

    return gated


async def _token_of(app: App) -> str:
    steps = await app.store.load_steps("g1")
    return next(s.result for s in steps if s.name == "publish").strip('"')  # type: ignore[union-attr]


async def test_every_way_of_waking_a_run_nobody_drives_says_so(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with App(database_url, clock=clock) as owner:
        await owner.astart(_declare(owner), workflow_id="g1")
        await owner.asettle(10)
    caplog.set_level(logging.WARNING, logger="tether")
    async with App(database_url, clock=clock) as other:  # the workflow is not here
        await other.acomplete_token(await _token_of(other))
        assert [r.getMessage() for r in caplog.records if UNDRIVEN in r.getMessage()]
        caplog.clear()
        async with App(database_url, clock=clock) as driver:  # drives it to the event
            _declare(driver)
            await driver.aresume("g1")
        assert await other.asend_event("go") == ["g1"]
        assert [r.getMessage() for r in caplog.records if UNDRIVEN in r.getMessage()]


async def test_a_run_this_app_drives_on_waking_is_not_warned_about(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with App(database_url, clock=clock) as app:
        await app.astart(_declare(app), workflow_id="g1")
        await app.asettle(10)
        caplog.set_level(logging.WARNING, logger="tether")
        await app.acomplete_token(await _token_of(app))
        await app.asettle(10)
        await app.asend_event("go")
        await app.asettle(10)
        assert not [r for r in caplog.records if UNDRIVEN in r.getMessage()]
        assert (await app.aget_run("g1")).status.value == "waiting"  # at the signal now


@pytest.mark.parametrize("recover", [False, True], ids=["plain", "recover_orphans"])
async def test_a_run_parked_by_a_live_plain_app_and_woken_elsewhere_is_warned_about(
    database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture, recover: bool
) -> None:
    """The App that parked it lives on, but drives only what it runs, resumes or wakes
    itself: counted as a driver, the warning was missed and the run waited unseen.
    One with recover_orphans takes such runs up: no warning."""
    async with App(database_url, clock=clock, recover_orphans=recover) as owner:
        await owner.astart(_declare(owner), workflow_id="g1")
        await owner.asettle(10)
        caplog.set_level(logging.WARNING, logger="tether")
        async with App(database_url, clock=clock) as other:  # the workflow is not here
            await other.acomplete_token(await _token_of(other))
        warned = [r.getMessage() for r in caplog.records if UNDRIVEN in r.getMessage()]
        assert bool(warned) is not recover, warned
