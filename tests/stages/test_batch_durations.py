"""A batch stage's `Suspend` and `NotReady` take a timedelta, as every other wait and
timeout of tether does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus

from ._flows import Doc

CHECKS: list[int] = []


class Done(BaseModel):
    checks: int


@tether.batch_stage(id="slow-batch", input=Doc, output=Done)
async def slow_batch(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
    return tether.Suspend({"id": 1}, poll_every=timedelta(minutes=2), max_wait=timedelta(hours=1))


@slow_batch.check
async def _check(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
    CHECKS.append(len(CHECKS) + 1)
    if len(CHECKS) == 1:
        return tether.NotReady()  # poll_every: 120 s
    if len(CHECKS) == 2:
        return tether.NotReady(next_check_in=timedelta(seconds=90))
    return tether.Ready(Done(checks=len(CHECKS)))


durations = tether.Pipeline("batch-durations", input=Doc, output=Done).pipe(slow_batch)


def test_durations_are_seconds_or_timedeltas_and_checked() -> None:
    """`Suspend(state, poll_every=timedelta(minutes=1))` was refused ("poll_every must be
    seconds > 0, got datetime.timedelta(seconds=60)"), where `wf.sleep`, tokens and
    timeouts all take one."""
    asked = tether.Suspend({}, poll_every=timedelta(minutes=1), max_wait=timedelta(days=1))
    assert (asked.poll_every, asked.max_wait) == (60.0, 86400.0)
    assert tether.NotReady(next_check_in=timedelta(seconds=90)).next_check_in == 90.0
    assert tether.NotReady(next_check_in=5).next_check_in == 5.0
    for bad in (0, -1, float("nan"), "60", True, timedelta(0)):
        with pytest.raises(tether.InvalidArgumentError, match="poll_every must be a number"):
            tether.Suspend({}, poll_every=bad)  # type: ignore[arg-type]
    with pytest.raises(tether.InvalidArgumentError, match="next_check_in must be a number"):
        tether.NotReady(next_check_in=timedelta(seconds=-5))


async def test_a_batch_stage_parks_for_the_timedeltas_it_asked(app: App, clock: FakeClock) -> None:
    CHECKS.clear()
    app.register(durations)
    parked = await app.arun(durations, Doc(url="u"), workflow_id="td")
    assert parked.status is RunStatus.WAITING and CHECKS == [1]
    clock.advance(119)
    assert await app.afire_due_timers() == []  # poll_every: 2 minutes
    clock.advance(1)
    assert await app.afire_due_timers() == ["td"]
    assert (await app.aresume("td")).status is RunStatus.WAITING and CHECKS == [1, 2]
    clock.advance(89)
    assert await app.afire_due_timers() == []  # next_check_in: 90 s
    clock.advance(1)
    assert await app.afire_due_timers() == ["td"]
    done = await app.aresume("td")
    assert done.value == Done(checks=3)
