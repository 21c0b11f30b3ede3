"""A cancel landing while a step of the run executes: the step's record, and the
run's cancel events. Gates hold the step until the cancel is in (no sleeps)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.record import RunRecord


class Gate:
    """A step function that says it started, then blocks until let go; async, or
    sync (run in a step thread)."""

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.started, self.go = threading.Event(), threading.Event()
        self.astarted, self.ago = asyncio.Event(), asyncio.Event()

    def fn(self) -> Callable[[], Any]:
        if self.sync:

            def blocked() -> int:
                self.started.set()
                assert self.go.wait(30), "the test never let the step go"
                return 1

            return blocked

        async def ablocked() -> int:
            self.astarted.set()
            await self.ago.wait()
            return 1

        return ablocked

    async def reached(self) -> None:
        if self.sync:
            assert await asyncio.to_thread(self.started.wait, 30), "the step never started"
        else:
            await self.astarted.wait()

    def release(self) -> None:
        self.go.set()
        self.ago.set()


def _flow(gate: Gate) -> Callable[[Workflow], Awaitable[int]]:
    async def flow(wf: Workflow) -> int:
        await wf.step("first", lambda: 0)
        await wf.step("blocked", gate.fn())
        await wf.step("after", lambda: 2)
        return 3

    return flow


async def _cancel_mid_step(
    driver: App, canceller: App, sync: bool, *, compensate: bool = False
) -> RunRecord:
    """Drive run "w" on `driver`, cancel it from `canceller` while its step "blocked"
    executes, then let the step finish; the run's record once its drive stopped."""
    gate = Gate(sync)
    drive = asyncio.create_task(driver.arun(_flow(gate), workflow_id="w"))
    try:
        await gate.reached()
        assert await canceller.acancel("w", "stop", compensate=compensate) == ["w"]
    finally:
        gate.release()
    result = await drive
    assert result.status is RunStatus.CANCELLED
    return await canceller.aget_record("w")


def _assert_cut_short(rec: RunRecord) -> None:
    assert rec.status is RunStatus.CANCELLED
    assert {k: s.status.value for k, s in rec.steps.items()} == {
        "first": "completed",
        "blocked": "failed",
    }
    error = rec.steps["blocked"].error
    assert error is not None and "cut short by the cancel" in error.message
    assert error.retryable is False


@pytest.mark.parametrize("sync", [False, True], ids=["async-step", "sync-step"])
async def test_a_step_running_as_its_run_is_cancelled_here_is_recorded_cut_short(
    app: App, sync: bool
) -> None:
    """Before, the step kept status `running` in the cancelled run's record for good:
    its completion was refused, and nothing closed it."""
    rec = await _cancel_mid_step(app, app, sync)
    _assert_cut_short(rec)
    failed = [e for e in rec.events if e.type == "step.failed"]
    assert [e.message for e in failed] == ["blocked"]


@pytest.mark.parametrize("sync", [False, True], ids=["async-step", "sync-step"])
async def test_a_step_running_as_another_app_cancels_its_run_is_recorded_cut_short(
    app: App, database_url: str, clock: FakeClock, sync: bool
) -> None:
    """The cancel comes from another App (process): the driver learns it at the step's
    end or the next step's start, and closes the step it left running."""
    other = App(database_url, clock=clock)
    try:
        rec = await _cancel_mid_step(app, other, sync)
    finally:
        await other.aclose()
    _assert_cut_short(rec)


@pytest.mark.parametrize("compensate", [False, True], ids=["plain", "compensate"])
async def test_a_cancel_of_a_running_run_writes_one_cancelled_event(
    app: App, compensate: bool
) -> None:
    """With compensate=True and nothing to compensate, the drive ended the run with a
    second `workflow.cancelled`, read as a second cancel; its end is named apart."""
    rec = await _cancel_mid_step(app, app, False, compensate=compensate)
    assert rec.status is RunStatus.CANCELLED
    cancels = [e for e in rec.events if e.type == "workflow.cancelled"]
    assert [e.message for e in cancels] == ["stop"]
    if compensate:
        assert rec.events[-1].type == "workflow.nothing_to_compensate"
