"""Injected time.

Core logic reads time from a `Clock`, never from `time` or `datetime`
directly, so tests can drive it with `FakeClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from ._durations import seconds_of
from .errors import InvalidArgumentError

__all__ = ["Clock", "FakeClock", "SystemClock", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class Clock(Protocol):
    """Where the engine gets the time and waits for it to pass."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let `seconds` of this clock's time pass."""
        ...

    def store_time(self) -> datetime | None:
        """The time the store should use for expiries, or None to use the store's own.

        The wall clock returns None so a shared database (PostgreSQL) judges lock
        expiry by one clock, the server's, and skewed machines cannot steal a lock.
        """
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return utcnow()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def store_time(self) -> datetime | None:
        return None


class FakeClock:
    """A clock that moves only when told to.

    `sleep` advances the clock by the requested amount at once (and yields to the
    event loop), so retry back-off on a fake clock costs no real time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware("FakeClock start", start or datetime(2026, 1, 1, tzinfo=UTC))
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move time forward by `seconds` (or a timedelta, as `pass_time` takes) and
        return the new time."""
        seconds = seconds_of(seconds)
        number = math.nan
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            with contextlib.suppress(OverflowError):
                number = float(seconds)
        try:
            if not math.isfinite(number):
                raise OverflowError
            self._now += timedelta(seconds=number)
        except OverflowError:
            raise InvalidArgumentError(
                f"FakeClock.advance needs a finite number of seconds that keeps the clock "
                f"within the years 1..9999, got {seconds!r}; pass e.g. advance(60)"
            ) from None
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _aware("FakeClock.set", when)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def store_time(self) -> datetime | None:
        return self._now


def _aware(what: str, when: object) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidArgumentError(
            f"{what} needs a timezone-aware datetime, got {when!r}; "
            "pass e.g. datetime(2026, 1, 1, tzinfo=UTC)"
        )
    return when
