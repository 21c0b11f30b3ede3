"""Injected time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tether import FakeClock, SystemClock


async def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    t0 = clock.now()
    assert clock.now() == t0
    clock.advance(90)
    assert clock.now() == t0 + timedelta(seconds=90)
    await clock.sleep(10)  # sleeping skips ahead at once
    assert clock.now() == t0 + timedelta(seconds=100)
    assert clock.slept == [10]
    assert clock.store_time() == clock.now()


def test_fake_clock_needs_aware_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 1))


def test_system_clock_defers_store_time_to_the_store() -> None:
    clock = SystemClock()
    assert clock.store_time() is None
    assert clock.now().tzinfo is not None


async def test_overlapping_sleepers_share_the_time_that_passes() -> None:
    """Each sleep added its own seconds: two branches backing off 5 s at once moved
    the clock 10 s, and a lease or a budget judged by it ran out early."""
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    t0 = clock.now()
    woke: dict[str, datetime] = {}

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke[name] = clock.now()

    await asyncio.gather(nap("a", 5), nap("b", 5))
    assert woke == {"a": t0 + timedelta(seconds=5), "b": t0 + timedelta(seconds=5)}
    await asyncio.gather(nap("long", 10), nap("short", 3))
    assert woke["short"] == t0 + timedelta(seconds=8)
    assert woke["long"] == t0 + timedelta(seconds=15)
    assert clock.now() == t0 + timedelta(seconds=15)


async def test_a_cancelled_sleeper_lets_the_later_one_wake() -> None:
    """The later sleeper waits for the earlier one; cancelled, that one must say so."""
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    t0 = clock.now()
    late = asyncio.create_task(clock.sleep(30))
    early = asyncio.create_task(clock.sleep(1))
    await asyncio.sleep(0)  # both registered: the late one now waits for the early one
    early.cancel()
    await asyncio.wait_for(late, timeout=10)
    assert clock.now() == t0 + timedelta(seconds=30)
    assert early.cancelled()


async def test_sleep_refuses_seconds_no_clock_can_reach() -> None:
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"FakeClock\.sleep needs a finite number"):
        await clock.sleep(1e30)
    assert clock.now() == datetime(2026, 5, 1, tzinfo=UTC)


def test_a_sleeper_left_on_a_stopped_loop_holds_no_one_back() -> None:
    """A loop stopped with a task asleep on the clock (a thread's loop, abandoned):
    its sleeper never wakes, and must not keep later sleepers waiting behind it."""
    clock = FakeClock(datetime(2026, 5, 1, tzinfo=UTC))
    t0 = clock.now()
    other = asyncio.new_event_loop()
    try:
        left = other.create_task(clock.sleep(1))
        other.call_soon(other.stop)
        other.run_forever()  # one turn: it registered, then its loop stopped
        assert not left.done()

        async def later() -> None:
            await asyncio.wait_for(clock.sleep(30), timeout=10)

        asyncio.run(later())
        assert clock.now() == t0 + timedelta(seconds=30)
    finally:
        left.cancel()
        other.run_until_complete(asyncio.sleep(0))
        other.close()
