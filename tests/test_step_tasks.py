"""An async step function that catches its cancellation and goes on: the run's cancel,
the step's timeout and `App.close` stop waiting on it (abandoned, a warning naming
it) instead of holding the drive for good. Gates, not sleeps; the step is let go at
each test's end so that no task outlives it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tether import App, FakeClock, RunStatus, StepTimeoutError, Workflow, _step_tasks


class Stubborn:
    """A step function that swallows every cancellation until let go."""

    def __init__(self) -> None:
        self.started, self.let_go, self.ended = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.cancels = 0

    async def fn(self) -> int:
        self.started.set()
        try:
            while not self.let_go.is_set():
                try:
                    await self.let_go.wait()
                except asyncio.CancelledError:
                    self.cancels += 1
        finally:
            self.ended.set()
        return 1


@pytest.fixture
async def stubborn(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stubborn]:
    monkeypatch.setattr(_step_tasks, "STOP_GRACE", 0.01)  # real seconds it is given
    step = Stubborn()
    yield step
    step.let_go.set()
    if step.started.is_set():
        await step.ended.wait()


def _abandoned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ignored its cancellation" in r.message]


async def test_a_cancelled_run_ends_though_its_step_ignores_the_cancel(
    app: App, stubborn: Stubborn, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `app.arun` never returned: the drive awaited the step for ever."""

    async def flow(wf: Workflow) -> int:
        return await wf.step("s", stubborn.fn)

    caplog.set_level(logging.WARNING, "tether")
    drive = asyncio.create_task(app.arun(flow, workflow_id="w"))
    await stubborn.started.wait()
    assert await app.acancel("w") == ["w"]
    result = await asyncio.wait_for(drive, 30)
    assert result.status is RunStatus.CANCELLED
    step = result.record.steps["s"]
    assert step.status.value == "failed" and step.error is not None
    assert "cut short by the cancel" in step.error.message
    assert stubborn.cancels == 1 and not stubborn.ended.is_set()
    [said] = _abandoned(caplog)
    assert "step 's' of run w" in said


async def test_a_cancel_from_another_app_stops_the_step_at_the_keep_alive(
    database_url: str, clock: FakeClock, stubborn: Stubborn
) -> None:
    """The driver learns of another process's cancel at its keep-alive turn (a third of
    its owner lease) and stops the step there."""
    driver = App(database_url, clock=clock, owner_lease=1)
    other = App(database_url, clock=clock)

    async def flow(wf: Workflow) -> int:
        return await wf.step("s", stubborn.fn)

    try:
        drive = asyncio.create_task(driver.arun(flow, workflow_id="w"))
        await stubborn.started.wait()
        assert await other.acancel("w") == ["w"]
        result = await asyncio.wait_for(drive, 30)
        assert result.status is RunStatus.CANCELLED
        assert result.record.steps["s"].status.value == "failed"
    finally:
        await other.aclose()
        await driver.aclose()


async def test_a_cooperative_step_is_cancelled_with_its_run_and_not_abandoned(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel reaches the step function (before: it ran on to its end, its result
    refused, and `app.arun` waited that long)."""
    started, seen = asyncio.Event(), asyncio.Event()

    async def slow() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise
        return 1

    async def flow(wf: Workflow) -> int:
        return await wf.step("slow", slow)

    caplog.set_level(logging.WARNING, "tether")
    drive = asyncio.create_task(app.arun(flow, workflow_id="c"))
    await started.wait()
    await app.acancel("c")
    result = await asyncio.wait_for(drive, 30)
    assert result.status is RunStatus.CANCELLED and seen.is_set()
    assert _abandoned(caplog) == []


async def test_a_step_timeout_fails_a_step_that_ignores_its_cancellation(
    app: App, stubborn: Stubborn, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the timeout cancelled it and then waited on it for ever."""

    async def flow(wf: Workflow) -> int:
        return await wf.step("s", stubborn.fn, timeout=0.05)

    caplog.set_level(logging.WARNING, "tether")
    with pytest.raises(StepTimeoutError):
        await asyncio.wait_for(app.arun(flow, workflow_id="t"), 30)
    rec = await app.aget_record("t")
    assert rec.status is RunStatus.FAILED and rec.steps["s"].status.value == "failed"
    assert len(_abandoned(caplog)) == 1


async def test_close_hands_the_run_back_past_its_grace_though_the_step_ignores_it(
    database_url: str, clock: FakeClock, stubborn: Stubborn, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `App.close` cancelled the drive at the grace period's end and then waited
    on the step for ever."""
    app = App(database_url, clock=clock, shutdown_grace=0.01)

    async def flow(wf: Workflow) -> int:
        return await wf.step("s", stubborn.fn)

    caplog.set_level(logging.WARNING, "tether")
    drive = asyncio.create_task(app.arun(flow, workflow_id="g"))
    await stubborn.started.wait()
    await asyncio.wait_for(app.aclose(), 30)
    result = await asyncio.wait_for(drive, 30)
    assert result.status is RunStatus.PENDING
    assert result.record.steps["s"].status.value == "running"  # interrupted: runs again
    assert result.record.events[-1].detail == {"interrupted": ["s"]}
    assert len(_abandoned(caplog)) == 1
