"""Helpers for testing code that uses tether (also a pytest plugin).

- `FakeClock`: time that moves only when told to; pass it as ``App(clock=...)``.
- fixtures ``tether_clock`` (a `FakeClock`) and ``tether_app`` (a fresh
  in-memory `App` on that clock), registered automatically when tether is
  installed and pytest runs.
- `eventually` (async) and `eventually_sync`: poll a condition until it
  holds instead of sleeping a guessed while; a timeout fails with what the
  condition last showed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .app import App
from .clock import FakeClock

__all__ = ["FakeClock", "eventually", "eventually_sync", "memory_app", "tether_app", "tether_clock"]

T = TypeVar("T")

FAKE_PAUSE = 0.01  # real seconds between polls on a fake clock (work in threads may need it)

MEMORY_URL = "sqlite:///:memory:"


def memory_app(clock: FakeClock | None = None) -> App:
    """A fresh `App` on an in-memory SQLite store."""
    return App(MEMORY_URL, clock=clock or FakeClock())


class _Poll:
    """One polling of a condition: its deadline, and what it last showed."""

    def __init__(self, condition: Callable[[], Any], timeout: float, interval: float) -> None:
        if not timeout > 0 or not interval > 0:
            raise ValueError(f"timeout and interval must be > 0, got {timeout!r}, {interval!r}")
        self.condition = condition
        self.timeout = timeout
        self.interval = interval
        self.deadline = time.monotonic() + timeout
        self.last: str = "nothing yet"

    def met(self, value: Any) -> bool:
        self.last = f"it returned {value!r}"
        return bool(value)

    def failed(self, exc: AssertionError) -> None:
        self.last = f"it failed: {exc}" if str(exc) else "it failed an assert"

    def pause(self, clock: FakeClock | None) -> float:
        """Real seconds to pause before the next try; a fake clock moves on instead."""
        if clock is None:
            return self.interval
        clock.advance(self.interval)
        return min(self.interval, FAKE_PAUSE)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def error(self) -> AssertionError:
        name = getattr(self.condition, "__qualname__", repr(self.condition))
        return AssertionError(
            f"{name} did not hold within {self.timeout:g}s; last seen: {self.last}"
        )


async def eventually(
    condition: Callable[[], T] | Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    clock: FakeClock | None = None,
) -> T:
    """Call `condition` (sync or async) every `interval` seconds until it returns a
    truthy value, and return that value. A condition may also assert: an
    `AssertionError` means "not yet"; any other exception is raised at once.

    After `timeout` real seconds it fails with an `AssertionError` saying what
    the condition last returned or asserted. With a `FakeClock`, each poll
    moves it on by `interval` (timers and leases on it come due) and pauses
    only briefly in real time; `timeout` stays real seconds either way.
    """
    poll = _Poll(condition, timeout, interval)
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if poll.met(value):
                return value
        except AssertionError as exc:
            poll.failed(exc)
        if poll.expired():
            raise poll.error()
        await asyncio.sleep(poll.pause(clock))


def eventually_sync(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    clock: FakeClock | None = None,
) -> T:
    """`eventually` for sync code (a test driving subprocesses, say)."""
    poll = _Poll(condition, timeout, interval)
    while True:
        try:
            value = condition()
            if poll.met(value):
                return value
        except AssertionError as exc:
            poll.failed(exc)
        if poll.expired():
            raise poll.error()
        time.sleep(poll.pause(clock))


try:
    import pytest
except ImportError:  # pytest is optional: the fixtures exist only under it
    pass
else:

    @pytest.fixture
    def tether_clock() -> FakeClock:
        """A `FakeClock` starting at 2026-01-01T00:00:00Z."""
        return FakeClock()

    @pytest.fixture
    def tether_app(tether_clock: FakeClock) -> Iterator[App]:
        """A fresh in-memory `App` on `tether_clock`, closed after the test."""
        app = memory_app(tether_clock)
        yield app
        app.close()
