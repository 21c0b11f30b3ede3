"""A cancel stops the async step functions of its run that are running: an agent's
call of many minutes is not waited for, only to have its result refused at the step
boundary. From this App at once; from another App (process) within about a second
(`CANCEL_CHECK`). A sync step's thread cannot be stopped: it runs on (see
`test_cancel_walk`). Gates hold the steps; a step never let go proves the stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tether import App, FakeClock, RetryPolicy, RunStatus, Workflow
from tether.record import RunRecord

HANG = 60  # a guard: without the stop, the drive waits for a step nobody lets go


class Held:
    """An async step function that says it started, then waits for good; how it ended
    (stopped, or stubborn: it catches the cancel and returns anyway)."""

    def __init__(self, *, stubborn: bool = False, turns_into: type[Exception] | None = None):
        self.started = asyncio.Event()
        self.go = asyncio.Event()  # set only by a test's guard against a hang
        self.ended: list[str] = []
        self.calls = 0
        self.stubborn, self.turns_into = stubborn, turns_into

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.ended.append("stopped")
            if self.stubborn:
                return "late"
            if self.turns_into is not None:
                raise self.turns_into("the client was cancelled") from None
            raise
        return "never"


def _flow(held: Held, **step: Any) -> Callable[[Workflow], Awaitable[str]]:
    async def flow(wf: Workflow) -> str:
        await wf.step("first", lambda: 0)
        await wf.step("held", held, **step)
        await wf.step("after", lambda: 2)
        return "done"

    return flow


async def _cancelled_while_held(
    driver: App, canceller: App, held: Held, flow: Callable[..., Any], **cancel: Any
) -> RunRecord:
    ends = RunStatus.COMPENSATED if cancel.get("compensate") else RunStatus.CANCELLED
    drive = asyncio.create_task(driver.arun(flow, workflow_id="w"))
    await asyncio.wait_for(held.started.wait(), HANG)
    assert await canceller.acancel("w", "stop", **cancel) == ["w"]
    result = await _ended(drive)
    assert result.status is ends
    return await canceller.aget_record("w")


async def _ended(drive: asyncio.Task[Any]) -> Any:
    """The drive's result once it ended by itself (not cut by a timeout of the test's:
    a stubborn step would swallow that cancellation and end the drive)."""
    done, _ = await asyncio.wait({drive}, timeout=HANG)
    if not done:
        drive.cancel()
        raise AssertionError("the drive still waits for a step the cancel should have stopped")
    return drive.result()


def _assert_stopped(rec: RunRecord, held: Held) -> None:
    assert held.ended == ["stopped"] and held.calls == 1  # stopped once, never retried
    assert {k: s.status.value for k, s in rec.steps.items()} == {
        "first": "completed",
        "held": "failed",
    }
    error = rec.steps["held"].error
    assert error is not None and "by the cancel" in error.message


@pytest.fixture
async def other(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock)
    yield the_app
    await the_app.aclose()


async def test_a_cancel_from_this_app_stops_the_async_step_running(app: App) -> None:
    """Before, the drive waited for the step to return, which this one never does."""
    held = Held()

    async def cancel_when_held() -> list[str]:
        await held.started.wait()
        return await app.acancel("w", "stop")

    canceller = asyncio.create_task(cancel_when_held())
    asyncio.get_running_loop().call_later(HANG, held.go.set)  # (before: let go late)
    result = await app.arun(_flow(held), workflow_id="w")  # driven in this very task
    assert await canceller == ["w"] and result.status is RunStatus.CANCELLED
    _assert_stopped(await app.aget_record("w"), held)
    # the cancel was taken back from the task that awaited the step (the caller's, as
    # `arun` drives inline): it is not left cancelling, to be cut at its next timeout
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancel_from_another_app_stops_it_at_the_drivers_keep_alive(
    database_url: str, clock: FakeClock, other: App
) -> None:
    """The driver learns of the cancel as it renews the claims of its runs with an
    async step running, every second (before: only at its keep-alive turn, a third of
    its owner lease, here 20 minutes), and stops the step then."""
    driver = App(database_url, clock=clock, owner_lease=3600.0)
    try:
        held = Held()
        rec = await _cancelled_while_held(driver, other, held, _flow(held))
    finally:
        await driver.aclose()
    _assert_stopped(rec, held)


async def test_a_step_that_catches_the_cancel_and_returns_has_its_result_refused(
    app: App,
) -> None:
    held = Held(stubborn=True)
    rec = await _cancelled_while_held(app, app, held, _flow(held))
    _assert_stopped(rec, held)
    assert rec.status is RunStatus.CANCELLED


async def test_a_step_that_turns_the_cancel_into_its_own_error_is_not_retried(app: App) -> None:
    """Its retry policy would have waited out a back-off and tried again, to be refused."""
    held = Held(turns_into=ConnectionError)
    flow = _flow(held, retry=RetryPolicy(attempts=5, backoff=0.01))
    rec = await _cancelled_while_held(app, app, held, flow)
    _assert_stopped(rec, held)


async def test_a_step_with_a_timeout_stopped_by_the_cancel_is_no_timeout(app: App) -> None:
    held = Held()
    rec = await _cancelled_while_held(app, app, held, _flow(held, timeout=HANG * 10))
    _assert_stopped(rec, held)
    error = rec.steps["held"].error
    assert error is not None and "timed out" not in error.message


async def test_a_compensating_cancel_stops_the_step_then_compensates(app: App) -> None:
    undone: list[str] = []
    held = Held()

    async def flow(wf: Workflow) -> str:
        await wf.step("booked", lambda: "B", compensate=lambda: undone.append("booked"))
        await wf.step("held", held)
        return "done"

    rec = await _cancelled_while_held(app, app, held, flow, compensate=True)
    assert held.ended == ["stopped"] and undone == ["booked"]
    assert rec.steps["held"].status.value == "failed"


@pytest.mark.parametrize("stop_on_error", [True, False])
async def test_the_steps_of_a_for_each_and_a_step_inside_a_step_are_stopped(
    app: App, stop_on_error: bool
) -> None:
    items = [Held() for _ in range(3)]
    inner = Held()

    async def outer() -> str:
        return await wf_box[0].step("inner", inner)

    wf_box: list[Workflow] = []

    async def flow(wf: Workflow) -> str:
        wf_box.append(wf)

        async def item(i: int) -> str:
            return await wf.step("item", items[i])

        await asyncio.gather(
            wf.for_each(range(3), item, max_parallel=3, stop_on_error=stop_on_error),
            wf.step("outer", outer),
        )
        return "done"

    drive = asyncio.create_task(app.arun(flow, workflow_id="w"))
    for held in [*items, inner]:
        await asyncio.wait_for(held.started.wait(), HANG)
    assert await app.acancel("w", "stop") == ["w"]
    result = await _ended(drive)
    assert result.status is RunStatus.CANCELLED
    assert [h.ended for h in [*items, inner]] == [["stopped"]] * 4
    rec = await app.aget_record("w")
    statuses = {k: s.status.value for k, s in rec.steps.items()}
    assert statuses == {"for_each.items#1": "completed"} | dict.fromkeys(
        ["item[0]", "item[1]", "item[2]", "outer", "outer/inner"],
        "failed",
    ), statuses


async def test_a_cancel_of_a_parent_stops_the_step_of_the_child_it_awaits(app: App) -> None:
    held = Held()

    async def kid(wf: Workflow) -> str:
        return await wf.step("held", held)

    async def parent(wf: Workflow) -> str:
        return await wf.child(kid, workflow_id="kid")

    drive = asyncio.create_task(app.arun(parent, workflow_id="w"))
    await asyncio.wait_for(held.started.wait(), HANG)
    assert sorted(await app.acancel("w", "stop")) == ["kid", "w"]
    result = await _ended(drive)
    assert result.status is RunStatus.CANCELLED and held.ended == ["stopped"]
    kid_rec = await app.aget_record("kid")
    assert kid_rec.status is RunStatus.CANCELLED
    assert kid_rec.steps["held"].status.value == "failed"
