"""A live mutex holder keeps its claim, and a holder that is done frees it at once.

Time is a `FakeClock`: the store judges expiry by it, while the holder renews
every third of `stale_after` in real time, so a test moves the clock past an
expiry exactly when it wants one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether.store import LockOutcome, LockRow
from tether.testing import eventually


class _Renewals:
    """Counts the store's mutex renewals; the first `fail` of them raise."""

    def __init__(self, app: App, fail: int = 0) -> None:
        self.calls = 0
        self.rows: list[LockRow | None] = []
        self._fail = fail
        self._real = app.store.renew_lock
        app.store.renew_lock = self._renew  # type: ignore[method-assign]

    async def _renew(self, *args: Any, **kwargs: Any) -> LockRow | None:
        self.calls += 1
        if self.calls <= self._fail:
            raise tether.StoreUnavailableError("the database blinked")
        row = await self._real(*args, **kwargs)
        self.rows.append(row)
        return row

    async def more(self) -> None:
        """Wait for one more renewal to finish."""
        seen = len(self.rows)
        await eventually(lambda: len(self.rows) > seen, timeout=30)


async def _intruder(app: App, clock: FakeClock) -> LockOutcome:
    """What another process asking for the mutex gets now."""
    now: datetime = clock.now()
    got = await app.store.acquire_lock("mutex", "acct-1", "intruder", ttl=30, now=now, at=now)
    return got.outcome


async def test_a_renewal_that_fails_is_tried_again(app: App, clock: FakeClock) -> None:
    # one database blip killed the renewer: the claim lapsed under a live holder
    # and another process entered the block beside it
    await app.store.open()
    renewals = _Renewals(app, fail=1)
    wf = await app.aopen("slow-holder")
    async with wf.mutex("acct-1", stale_after=0.3) as handle:
        await renewals.more()
        for _ in range(3):  # 0.6 s of store time: twice stale_after, renewed throughout
            clock.advance(0.2)
            await renewals.more()
        assert await _intruder(app, clock) is LockOutcome.CONFLICT
        assert not handle.lost
    assert renewals.calls >= 5


async def test_a_late_renewal_keeps_a_claim_nobody_took(app: App, clock: FakeClock) -> None:
    # the holder stalled past its expiry but nobody took the mutex meanwhile: its
    # renewal was refused, the holder marked lost and its claim left to lapse, so the
    # next asker got in while the live holder still ran its block
    await app.store.open()
    renewals = _Renewals(app)
    wf = await app.aopen("stalled-holder")
    async with wf.mutex("acct-1", stale_after=0.3) as handle:
        clock.advance(1.0)  # lapsed; nobody asked
        await renewals.more()
        assert renewals.rows[-1] is not None and renewals.rows[-1].holder == handle.holder
        assert not handle.lost
        assert await _intruder(app, clock) is LockOutcome.CONFLICT


async def test_a_renewal_after_a_takeover_reports_the_loss(app: App, clock: FakeClock) -> None:
    # the other side of the rule above: a taker is the holder now, so the old holder's
    # renewal changes nothing and says it lost the mutex
    await app.store.open()
    renewals = _Renewals(app)
    wf = await app.aopen("evicted-holder")
    async with wf.mutex("acct-1", stale_after=0.3) as handle:
        clock.advance(1.0)
        renewals.rows.clear()
        assert await _intruder(app, clock) is LockOutcome.ACQUIRED
        await eventually(lambda: handle.lost, timeout=30)
    lock = await app.store.get_lock("mutex", "acct-1")
    assert lock is not None and lock.holder == "intruder" and lock.released_at is None


@pytest.mark.parametrize("fan_out", [False, True])
async def test_cancelling_a_run_inside_a_mutex_frees_the_key_at_once(
    app: App, fan_out: bool
) -> None:
    # the cancelled run's release was refused with its event, so the key stayed
    # held, unrenewed, for stale_after (30 s by default) after the run had ended
    inside, go_on = asyncio.Event(), asyncio.Event()

    async def flow(wf: Workflow) -> None:
        async def work(i: int) -> int:
            await wf.step("charge", lambda: i)
            inside.set()
            await go_on.wait()  # cancelled meanwhile: the next step is refused
            return await wf.step("receipt", lambda: i)

        if fan_out:
            await wf.for_each([1], work, mutex_key=lambda _: "acct-1")
        else:
            async with wf.mutex("acct-1"):
                await work(1)

    await app.astart(flow, workflow_id="cancelled-holder")
    await asyncio.wait_for(inside.wait(), 10)
    await app.acancel("cancelled-holder")
    go_on.set()
    assert (await app.aresult("cancelled-holder")).status is RunStatus.CANCELLED

    async def next_run(wf: Workflow) -> str:
        async with wf.mutex("acct-1", timeout=0.5, poll=0.01):
            return "acquired"

    assert (await app.arun(next_run, workflow_id="next")).value == "acquired"
