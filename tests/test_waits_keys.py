"""A wait key given by the caller never stands for a wait tether numbers itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import InvalidArgumentError

PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def test_a_given_key_that_is_a_later_sleeps_number_is_refused(
    app: App, clock: FakeClock
) -> None:
    """Before, the second `wf.sleep(3600)` (numbered ``sleep#2``) found the waitpoint of
    `sleep_until(key="sleep#2")` resolved and returned at once: the run never slept."""
    slept: list[float] = []

    @app.workflow
    async def naps(wf: Workflow) -> None:
        await wf.sleep_until(PAST, key="sleep#2")
        await wf.sleep(1)
        start = clock.now()
        await wf.sleep(3600)
        slept.append((clock.now() - start).total_seconds())

    with pytest.raises(InvalidArgumentError, match=r"'sleep#2'.*e\.g\. 'sleep-2'"):
        await app.arun(naps, workflow_id="naps")
    assert (await app.aget_run("naps")).status is RunStatus.FAILED
    assert slept == []


async def test_a_signal_wait_numbered_like_an_earlier_given_key_is_refused(app: App) -> None:
    """Before, the third wait for "go" (numbered ``signal:go#2``) returned the payload
    that the first wait, given that key, had taken: one signal answered two waits."""

    @app.workflow
    async def listens(wf: Workflow) -> list[object]:
        first = await wf.wait_for_signal("go", key="signal:go#2")
        return [first, await wf.wait_for_signal("go"), await wf.wait_for_signal("go")]

    await app.astart(listens, workflow_id="listens")
    await app.asettle(5)
    for n in range(2):
        await app.asignal("listens", "go", n)
        await app.asettle(5)
    result = await app.aresult("listens", timeout=30)
    assert result.record.status is RunStatus.FAILED, result.value
    error = result.record.last_error
    assert error is not None and "'signal:go#2' of run 'listens'" in error.message


async def test_a_given_key_after_the_wait_numbered_so_is_refused(app: App) -> None:
    @app.workflow
    async def late(wf: Workflow) -> None:
        await wf.wait_for_event("tick", timeout=0, default=None)
        await wf.wait_for_event("tick", timeout=0, default=None, key="event:tick#1")

    with pytest.raises(InvalidArgumentError, match=r"'event:tick#1' of run 'late'"):
        await app.arun(late, workflow_id="late")


async def test_given_keys_of_their_own_still_name_one_waitpoint(app: App, clock: FakeClock) -> None:
    """A key given twice is one waitpoint, as before; a '#' of the caller's is fine."""

    @app.workflow
    async def daily(wf: Workflow) -> list[object]:
        await wf.sleep_until(PAST, key="issue#7")
        await wf.sleep_until(PAST, key="issue#7")
        await wf.sleep(1)
        return [await wf.wait_for_signal("go", timeout=0, default=n) for n in range(2)]

    result = await app.arun(daily, workflow_id="daily")
    if result.record.status is RunStatus.WAITING:
        clock.advance(1)
        await app.afire_due_timers()
        result = await app.aresult("daily", timeout=30)
    assert result.value == [0, 1]
