"""Injected time.

Core logic reads time from a `Clock`, never from `time` or `datetime`
directly, so tests can drive it with `FakeClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from dataclasses import dataclass
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

    `sleep` moves the clock on to the sleeper's wake-up time at once (after one turn
    of the event loop), so retry back-off on a fake clock costs no real time.
    Sleeps begun together (in one turn of the loop, as `asyncio.gather` begins
    them) share the time that passes, as on a real clock: two of 5 s both wake
    5 s later, not 10; of 5 s and 10 s, the first wakes at 5 s and the second at
    10 s. A sleep begun later counts from the time the clock shows then.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware("FakeClock start", start or datetime(2026, 1, 1, tzinfo=UTC))
        self.slept: list[float] = []
        self._sleepers: list[_Sleeper] = []  # in every loop's tasks, so behind a lock
        self._guard = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move time forward by `seconds` (or a timedelta, as `pass_time` takes) and
        return the new time."""
        self._now = self._later("FakeClock.advance", seconds)
        self._wake_sleepers()
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _aware("FakeClock.set", when)
        self._wake_sleepers()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        me = _Sleeper(self._later("FakeClock.sleep", max(0.0, seconds)), loop.create_future())
        with self._guard:
            self._sleepers.append(me)
        try:
            await asyncio.sleep(0)  # sleepers started in this same turn overlap with this one
            while True:
                me.woken = loop.create_future()  # before the check: a wake-up is never lost
                if self._due(me):
                    break
                await me.woken
            self._now = max(self._now, me.wake)
        finally:
            with self._guard:
                self._sleepers.remove(me)
            self._wake_sleepers()

    def store_time(self) -> datetime | None:
        return self._now

    def _later(self, what: str, seconds: float | timedelta) -> datetime:
        """Now plus `seconds`, or a clear error for seconds no datetime can add."""
        seconds = seconds_of(seconds)
        number = math.nan
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            with contextlib.suppress(OverflowError):
                number = float(seconds)
        try:
            if not math.isfinite(number):
                raise OverflowError
            return self._now + timedelta(seconds=number)
        except OverflowError:
            raise InvalidArgumentError(
                f"{what} needs a finite number of seconds that keeps the clock "
                f"within the years 1..9999, got {seconds!r}; pass e.g. advance(60)"
            ) from None

    def _due(self, me: _Sleeper) -> bool:
        """`me` wakes once its time has come, or when no sleeper wakes before it (of
        a loop still running: one left behind on a stopped loop never wakes)."""
        with self._guard:
            live = [s.wake for s in self._sleepers if s.woken.get_loop().is_running()]
        return me.wake <= self._now or me.wake <= min(live, default=me.wake)

    def _wake_sleepers(self) -> None:
        """Have every waiting sleeper look again (from any thread: each on its loop)."""
        with self._guard:
            waiting = [s.woken for s in self._sleepers if not s.woken.done()]
        for fut in waiting:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                fut.get_loop().call_soon_threadsafe(_resolve, fut)


@dataclass(slots=True)
class _Sleeper:
    wake: datetime
    woken: asyncio.Future[None]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _aware(what: str, when: object) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidArgumentError(
            f"{what} needs a timezone-aware datetime, got {when!r}; "
            "pass e.g. datetime(2026, 1, 1, tzinfo=UTC)"
        )
    return when
