"""Injected time."""

from __future__ import annotations

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
