"""Helpers for testing code that uses tether (also a pytest plugin).

- `FakeClock`: time that moves only when told to; pass it as ``App(clock=...)``.
- fixtures ``tether_clock`` (a `FakeClock`) and ``tether_app`` (a fresh
  in-memory `App` on that clock), registered automatically when tether is
  installed and pytest runs.
- an ``async def`` test that uses those fixtures runs on its own event loop
  without an async plugin (pytest alone cannot run an ``async def`` test);
  where pytest-asyncio, anyio or trio already runs it, that plugin does.
- `eventually` (async) and `eventually_sync`: poll a condition until it
  holds instead of sleeping a guessed while; a timeout fails with what the
  condition last showed.
- `pass_time` (and `pass_time_sync`): let days of a run's timers and wait timeouts pass in a
  moment, each at its own time, the runs they wake driven before time moves on.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._durations import check_seconds
from ._loop import await_on, home_loop
from .app import App
from .clock import FakeClock
from .errors import InvalidArgumentError

__all__ = [
    "FakeClock",
    "eventually",
    "eventually_sync",
    "memory_app",
    "pass_time",
    "pass_time_sync",
    "tether_app",
    "tether_clock",
]

T = TypeVar("T")

FAKE_PAUSE = 0.01  # real seconds between polls on a fake clock (work in threads may need it)

MEMORY_URL = "sqlite:///:memory:"


def memory_app(clock: FakeClock | None = None) -> App:
    """A fresh `App` on an in-memory SQLite store. Closing it cuts the runs still in
    flight at once (no `shutdown_grace`): their database goes with the App, so there is
    nobody to hand them back to, and a test that failed with a run stuck on a step (a
    gate never opened) waited 30 real seconds in teardown before its failure showed."""
    return App(MEMORY_URL, clock=clock or FakeClock(), shutdown_grace=0)


def _check_callable(condition: object) -> None:
    """Refuse a condition already evaluated (`eventually(app.aget_run(id))`, or
    `eventually(x == 1)`), which would fail with "'bool' object is not callable"."""
    if callable(condition):
        return
    if inspect.iscoroutine(condition):
        condition.close()  # no "never awaited" warning on top of the error
    raise InvalidArgumentError(
        f"eventually needs a function to call again and again, got {condition!r} (a "
        f"{type(condition).__name__}, evaluated once already); pass the function itself "
        "or wrap the check in one: eventually(lambda: ...) or an `async def`"
    )


class _Poll:
    """One polling of a condition: its deadline, and what it last showed."""

    def __init__(
        self, condition: Callable[[], Any], timeout: float | timedelta, interval: float | timedelta
    ) -> None:
        # checked as pass_time's `by` is: a timedelta or a string here would otherwise
        # fail with a bare "'>' not supported" TypeError from inside this class
        _check_callable(condition)
        self.timeout = check_seconds("eventually's `timeout`", timeout, positive=True)
        self.interval = check_seconds("eventually's `interval`", interval, positive=True)
        self.condition = condition
        self.deadline = time.monotonic() + self.timeout
        self.last: str = "nothing yet"
        self.overdue = False  # a call outlived the deadline: fail now, no further try

    def met(self, value: Any) -> bool:
        self.last = f"it returned {value!r}"
        return bool(value)

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """One try: an `AssertionError` inside means "not yet", and is remembered."""
        try:
            yield
        except AssertionError as exc:
            if self.overdue:
                raise
            self.last = f"it failed: {exc}" if str(exc) else "it failed an assert"

    def pause(self, clock: FakeClock | None) -> float:
        """Real seconds to pause before the next try (a fake clock moves on instead);
        past the deadline, the `AssertionError` saying what was last seen."""
        if time.monotonic() >= self.deadline:
            raise self.error()
        if clock is None:
            return self.interval
        clock.advance(self.interval)
        return min(self.interval, FAKE_PAUSE)

    def left(self) -> float:
        """Real seconds one call of the condition may take: what is left of `timeout`,
        and at least one `interval` (a last try after the deadline still gets its go)."""
        return max(self.deadline - time.monotonic(), self.interval)

    async def awaited(self, value: Awaitable[Any]) -> Any:
        """`value` awaited within `left()`: a condition that never returns (a result it
        awaits that never comes) fails at the deadline like one that returns false,
        instead of hanging the test for good. A `TimeoutError` of the condition's own
        is raised as it is, as any other exception."""
        scope = asyncio.timeout(self.left())
        try:
            async with scope:
                return await value
        except TimeoutError:
            if not scope.expired():
                raise
            self.last = "its call was still running at the deadline (cancelled)"
            self.overdue = True
            raise self.error() from None

    def error_name(self) -> str:
        return str(getattr(self.condition, "__qualname__", repr(self.condition)))

    def error(self) -> AssertionError:
        return AssertionError(
            f"{self.error_name()} did not hold within {self.timeout:g}s; last seen: {self.last}"
        )


async def eventually(
    condition: Callable[[], T] | Callable[[], Awaitable[T]],
    *,
    timeout: float | timedelta = 10.0,
    interval: float | timedelta = 0.01,
    clock: FakeClock | None = None,
) -> T:
    """Call `condition` (sync or async) every `interval` seconds until it returns a
    truthy value, and return that value. A condition may also assert: an
    `AssertionError` means "not yet"; any other exception is raised at once.

    After `timeout` real seconds it fails with an `AssertionError` saying what
    the condition last returned or asserted; an async condition still running
    then is cancelled and fails it too. With a `FakeClock`, each poll
    moves it on by `interval` (leases and timers on it come due: a due timer is
    started by a worker, or by ``app.fire_due_timers()`` in the condition) and
    pauses only briefly in real time; `timeout` stays real seconds either way.
    """
    poll = _Poll(condition, timeout, interval)
    while True:
        with poll.attempt():
            value = condition()
            if inspect.isawaitable(value):
                value = await poll.awaited(value)
            if poll.met(value):
                return value
        await asyncio.sleep(poll.pause(clock))


def eventually_sync(
    condition: Callable[[], T],
    *,
    timeout: float | timedelta = 10.0,
    interval: float | timedelta = 0.01,
    clock: FakeClock | None = None,
) -> T:
    """`eventually` for sync code (a test driving subprocesses, say). An async
    condition is refused: its coroutine, never awaited, would count as true."""
    poll = _Poll(condition, timeout, interval)
    while True:
        with poll.attempt():
            value = condition()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # no "never awaited" warning on top of the error
                raise TypeError(
                    f"eventually_sync got an async condition ({poll.error_name()}); "
                    "await tether.testing.eventually(...) instead"
                )
            if poll.met(value):
                return value
        time.sleep(poll.pause(clock))


#: timers fired within one `pass_time` before it gives up: a run that sets a timer due
#: at once, again and again, would otherwise keep it firing for ever
MAX_FIRINGS = 10_000


async def pass_time(app: App, by: float | timedelta) -> list[str]:
    """Let `by` (seconds or a timedelta) pass for `app`, an App on a `FakeClock`, as
    it would for a process that keeps it running: each timer and wait timeout due
    in that span fires at its own time, in order, and the runs it wakes are driven
    here until they rest (ended, or parked again) before the clock moves on. So a
    run that waits a day for a signal and then sleeps two hours ends within
    ``await pass_time(app, timedelta(days=2))``. The ids of the runs woken, in the
    order they woke. Queued runs (`submit`) are woken but left to workers."""
    clock = app.clock
    if not isinstance(clock, FakeClock):
        raise InvalidArgumentError(
            f"pass_time needs an App on a FakeClock (App(clock=FakeClock()), or the "
            f"tether_app fixture), got one on {type(clock).__name__}"
        )
    end = clock.now() + timedelta(seconds=check_seconds("pass_time's `by`", by))
    home = home_loop(app)  # an App used through its sync API: its store lives there
    if home is not None and home is not asyncio.get_running_loop():
        return await await_on(home, _pass_until(app, clock, end, by), lambda: None)
    return await _pass_until(app, clock, end, by)


def pass_time_sync(app: App, by: float | timedelta) -> list[str]:
    """`pass_time` for a test that uses the App's sync API (`app.run`, `app.signal`)."""
    return app.run_sync(pass_time(app, by))


async def _pass_until(
    app: App, clock: FakeClock, end: datetime, by: float | timedelta
) -> list[str]:
    woken: list[str] = []
    await app.asettle()
    for _ in range(MAX_FIRINGS):
        due = await app.store.next_due()
        if due is None or due > end:
            clock.set(max(clock.now(), end))
            return woken
        clock.set(max(clock.now(), due))
        woken += await app.afire_due_timers()
        await app.asettle()
    raise AssertionError(
        f"timers kept coming due within {by}: {MAX_FIRINGS} fired, the last woke "
        f"{woken[-3:]}; a run that sets a timer due at once in a loop never lets time pass"
    )


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
    def tether_app(tether_clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[App]:
        """A fresh in-memory `App` on `tether_clock`, closed after the test."""
        _refuse_other_loops(request)
        app = memory_app(tether_clock)
        # connect now: the connection (on the store's own thread) then serves whichever loop
        # the test runs on, and no two first uses can race to open two in-memory databases
        _run(app.store.open())
        yield app
        try:
            app.close()
        except RuntimeError:
            # an async plugin ran the test on a loop it has closed since, and with it what
            # the App had running there: only the store is left to close
            _run(app.store.close())

    def _refuse_other_loops(request: pytest.FixtureRequest) -> None:
        """An App runs on asyncio only: anyio (which runs a marked test on every backend
        installed, trio too) gets a failure saying so, not "no current event loop"."""
        if "anyio_backend" not in request.fixturenames:
            return
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.fail(
                f"tether_app runs on asyncio, not on anyio's {name!r} backend; keep this "
                "test on asyncio with a fixture in conftest.py: @pytest.fixture "
                "def anyio_backend(): return 'asyncio'",
                pytrace=False,
            )

    def _run(coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on a loop of its own, leaving the thread's current loop (which an
        async plugin may have set) as it was; `asyncio.run` would reset it."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(coro)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    _OURS = frozenset({"tether_app", "tether_clock"})
    _OTHER_RUNNERS = ("asyncio", "anyio", "trio")  # markers of plugins that run async tests

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
        """Run an ``async def`` test using tether's fixtures on a fresh event loop,
        unless an async plugin runs it (it then is no coroutine function here, or
        carries that plugin's marker)."""
        fn = pyfuncitem.obj
        if not inspect.iscoroutinefunction(fn) or not _OURS & set(pyfuncitem.fixturenames):
            return None
        if any(pyfuncitem.get_closest_marker(m) for m in _OTHER_RUNNERS):
            return None
        if "anyio_backend" in pyfuncitem.fixturenames:
            return None
        args = {
            name: pyfuncitem.funcargs[name]
            for name in inspect.signature(fn).parameters
            if name in pyfuncitem.funcargs
        }
        app = pyfuncitem.funcargs.get("tether_app")

        async def test() -> None:
            try:
                await fn(**args)
            finally:  # on the loop the App ran on; the fixture's close() then has nothing to do
                if isinstance(app, App):
                    await app.aclose()

        _run(test())
        return True
