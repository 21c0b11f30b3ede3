"""Helpers for testing code that uses tether (also a pytest plugin).

- `FakeClock`: time that moves only when told to; pass it as ``App(clock=...)``.
- fixtures ``tether_clock`` (a `FakeClock`) and ``tether_app`` (a fresh
  in-memory `App` on that clock, with the App options ``tether_app_options``
  returns: override that fixture to give them), registered automatically when
  tether is installed and pytest runs.
- an ``async def`` test that uses those fixtures runs on its own event loop
  without an async plugin (pytest alone cannot run an ``async def`` test);
  where pytest-asyncio, anyio or trio already runs it, that plugin does.
- `eventually` (async) and `eventually_sync`: poll a condition until it
  holds instead of sleeping a guessed while; a timeout fails with what the
  condition last showed.
- `pass_time` (and `pass_time_sync`): let days of a run's timers and wait timeouts pass in a
  moment, each at its own time, the runs they wake driven before time moves on;
  schedule ticks too, their runs driven as a worker would.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._durations import check_seconds
from ._loop import await_on, home_loop
from .app import App
from .clock import FakeClock
from .errors import InvalidArgumentError
from .store import JobRow

__all__ = [
    "FakeClock",
    "eventually",
    "eventually_sync",
    "memory_app",
    "pass_time",
    "pass_time_sync",
    "tether_app",
    "tether_app_options",
    "tether_clock",
]

T = TypeVar("T")

FAKE_PAUSE = 0.01  # real seconds between polls on a fake clock (work in threads may need it)

MEMORY_URL = "sqlite:///:memory:"


def memory_app(clock: FakeClock | None = None, **app_options: Any) -> App:
    """A fresh `App` on an in-memory SQLite store; `app_options` are `App`'s own (``ai=``,
    ``interceptors=``, ``sinks=``, ...). Closing it cuts the runs still in flight at
    once (`shutdown_grace` 0 unless given): their database goes with the App, so there
    is nobody to hand them back to, and a test that failed with a run stuck on a step
    (a gate never opened) waited 30 real seconds in teardown before its failure showed."""
    _check_app_options(app_options, "memory_app")
    app_options.setdefault("shutdown_grace", 0)
    return App(MEMORY_URL, clock=clock or FakeClock(), **app_options)


def _check_app_options(options: object, what: str) -> None:
    """Refuse what `memory_app` cannot pass on, naming the options it can: a mistyped
    one, or a database (the App's store is in memory, and goes with it)."""
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InvalidArgumentError(
            f"{what} needs a dict of App options, e.g. {{'interceptors': [...]}}, got {options!r}"
        )
    taken = set(inspect.signature(App.__init__).parameters) - {"self", "clock"}
    allowed = sorted(taken - {"database_url", "store"})
    for name in options:
        if name in ("database_url", "store"):
            raise InvalidArgumentError(
                f"{what} is an App on an in-memory SQLite store and takes no {name}=; "
                "for another database build App(url, clock=FakeClock()) yourself"
            )
        if name not in taken:
            raise InvalidArgumentError(
                f"{what} got an option App does not take: {name!r}; App's options "
                f"are {', '.join(allowed)}"
            )


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


def _check_clock(clock: object) -> None:
    """Refuse a `clock=` that is no `FakeClock` (the App itself, a SystemClock, `clock.now`)
    up front: it failed at the first poll that found the condition false, with
    "'App' object has no attribute 'advance'"."""
    if clock is None or isinstance(clock, FakeClock):
        return
    hint = " (pass its clock: clock=app.clock)" if isinstance(clock, App) else ""
    raise InvalidArgumentError(
        f"eventually's `clock` must be a FakeClock to move on each poll (the tether_clock "
        f"fixture), or None, got {type(clock).__name__}{hint}"
    )


class _Poll:
    """One polling of a condition: its deadline, and what it last showed."""

    def __init__(
        self,
        condition: Callable[[], Any],
        timeout: float | timedelta,
        interval: float | timedelta,
        clock: FakeClock | None,
    ) -> None:
        # checked as pass_time's `by` is: a timedelta or a string here would otherwise
        # fail with a bare "'>' not supported" TypeError from inside this class
        _check_callable(condition)
        _check_clock(clock)
        self.timeout = check_seconds("eventually's `timeout`", timeout, positive=True)
        self.interval = check_seconds("eventually's `interval`", interval, positive=True)
        self.condition = condition
        self.deadline = time.monotonic() + self.timeout
        self.last: str = "nothing yet"
        self.moved = 0.0  # fake seconds a FakeClock was moved on, for the error
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
        self.moved += self.interval
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
        """What was last seen; on a FakeClock, how far it moved too: `timeout` is real
        seconds, and at the default `interval` the clock moves about as fast as real
        time, so a condition waiting for a minute of fake time failed saying only
        "did not hold within 10s", as if the clock had been moved past it."""
        moved = ""
        if self.moved:
            moved = (
                f"; the FakeClock moved on only {self.moved:g}s meanwhile ({self.interval:g}s "
                "a poll): give eventually a larger interval= to move it further"
            )
        return AssertionError(
            f"{self.error_name()} did not hold within {self.timeout:g}s; last seen: "
            f"{self.last}{moved}"
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
    poll = _Poll(condition, timeout, interval, clock)
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
    poll = _Poll(condition, timeout, interval, clock)
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
#: the worker id under which `pass_time` claims the jobs of scheduled runs
TICK_WORKER = "tether.testing.pass_time"
#: real seconds `pass_time` waits for the runs it drives to rest before it fails
REST_TIMEOUT = 30.0


async def pass_time(app: App, by: float | timedelta) -> list[str]:
    """Let `by` (seconds or a timedelta) pass for `app`, an App on a `FakeClock`, as
    it would for a process that keeps it running: each timer and wait timeout due
    in that span fires at its own time, in order, and the runs it wakes are driven
    here until they rest (ended, or parked again) before the clock moves on. So a
    run that waits a day for a signal and then sleeps two hours ends within
    ``await pass_time(app, timedelta(days=2))``. Each tick of the App's schedules in
    the span starts at its time too, and its run (queued) is driven here as a worker
    would, with the queued runs of the scheduled workflows. The ids of the runs
    woken or started by a tick, in that order. Other queued runs (`submit`) are
    woken but left to workers: in a test,
    ``await tether.worker.ServerlessHost(app).aprocess_available_jobs()`` drives them."""
    if not isinstance(app, App):
        # `pass_time(tether_clock, 60)` failed with "'FakeClock' object has no attribute
        # 'clock'": the timers and schedules to fire are the App's, not the clock's
        given = type(app).__name__
        raise InvalidArgumentError(
            f"pass_time needs the App whose time passes (the tether_app fixture), as "
            f"pass_time(app, by), got a {given}"
            + (" (the App's clock: pass the App built on it)" if isinstance(app, FakeClock) else "")
        )
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
    await _rest(app)
    woken = await _tick(app)  # a schedule not saved yet counts from now, as for a worker
    fired = 0
    while True:
        timer = await app.store.next_due()
        due = min(
            (t for t in (timer, await _next_tick(app, clock.now())) if t is not None), default=None
        )
        if due is None or due > end:
            clock.set(max(clock.now(), end))
            return woken
        clock.set(max(clock.now(), due))
        if timer is not None and timer <= due:
            if fired == MAX_FIRINGS:
                raise AssertionError(
                    f"timers kept coming due within {by}: {MAX_FIRINGS} fired, the last "
                    f"woke {woken[-3:]}; a run that sets a timer due at once in a loop "
                    "never lets time pass"
                )
            fired += 1
            woken += await app.afire_due_timers()
            await _rest(app)
        woken += await _tick(app)


async def _rest(app: App) -> None:
    """`app.asettle()`, bounded: time moves on only once the runs driven here rest, and
    one whose step waits for what the test does after `pass_time` (a gate it opens)
    never rests, so `pass_time` hung for good where a running process lets time pass."""
    try:
        await app.asettle(REST_TIMEOUT)
    except TimeoutError:
        running = [r.workflow_id for r in await app.alist_runs(status="running", limit=5)]
        raise AssertionError(
            f"pass_time waited {REST_TIMEOUT:g} real seconds for the runs driven here to "
            f"rest (end, or park on a wait) before moving the clock on at "
            f"{app.clock.now():%Y-%m-%dT%H:%M:%SZ}; still running: {running}. A step that "
            "waits for what the test does only after pass_time returns (an event it sets, "
            "a gate it opens) never ends: do that first, or run pass_time in a task"
        ) from None


# a tick's run whose step outlasted `REST_TIMEOUT`: left to end on its own, as `_rest`
# leaves a run driven elsewhere, and kept here so that its task is not collected
_LEFT: set[asyncio.Task[Any]] = set()


async def _drive_job(app: App, job: JobRow) -> None:
    """Drive a tick's queued run here, as a worker would, for at most `REST_TIMEOUT`
    real seconds: a step waiting for what the test does after `pass_time` hung it for
    good when the run was driven by the tick itself."""
    task = asyncio.ensure_future(app.kernel.execute_job(job, TICK_WORKER))
    done, _ = await asyncio.wait({task}, timeout=REST_TIMEOUT)
    if task in done:
        task.result()  # (its error, if the drive itself failed)
        return
    _LEFT.add(task)
    task.add_done_callback(_LEFT.discard)
    raise AssertionError(
        f"pass_time waited {REST_TIMEOUT:g} real seconds for the run of a schedule's tick, "
        f"{job.workflow_id!r}, driven here as a worker would, at "
        f"{app.clock.now():%Y-%m-%dT%H:%M:%SZ}; it is still running. A step that waits "
        "for what the test does only after pass_time returns (an event it sets, a gate it "
        "opens) never ends: do that first, or run pass_time in a task"
    )


async def _next_tick(app: App, now: datetime) -> datetime | None:
    """When the next tick of `app`'s schedules not paused falls, after `now`."""
    if not app.schedules:
        return None
    paused = {row.name for row in await app.store.list_schedules() if row.paused}
    return min(
        (s.next_tick(now) for s in app.schedules.values() if s.name not in paused),
        default=None,
    )


async def _tick(app: App) -> list[str]:
    """Start the schedules' ticks due now, and drive the queued runs of the scheduled
    workflows on their queues until they rest, as a worker serving them would (a
    tick's run is queued, and so is its run woken by its own timer later); the ids
    of the ticks' runs."""
    if not app.schedules:
        return []
    started = await app.afire_schedules()
    runs = app.kernel.host.run_claim()
    names = {s.workflow for s in app.schedules.values()}
    queues = sorted({s.queue for s in app.schedules.values()})
    for _ in range(MAX_FIRINGS):
        # only the scheduled workflows' jobs: a run the test queued itself is left
        # to workers, as `pass_time` leaves every other queued run
        jobs = await app.store.claim_jobs(
            TICK_WORKER, queues, limit=1, visibility=app.kernel.job_visibility,
            limits=app.queue_limits, now=app.clock.store_time(), at=app.clock.now(),
            runs=runs, workflows=[w for w in runs.workflows if w[0] in names],
        )  # fmt: skip
        if not jobs:
            return started
        await _drive_job(app, jobs[0])
        await _rest(app)
    raise AssertionError(
        f"the queued runs of scheduled workflows {sorted(names)} kept coming back to "
        f"their queues: {MAX_FIRINGS} driven at {app.clock.now():%Y-%m-%dT%H:%M:%SZ}"
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
    def tether_app_options() -> dict[str, Any]:
        """The `App` options of `tether_app` (none). Override this fixture, in a
        conftest.py or a test module, to give the App ``ai=``, ``interceptors=``, ...::

            @pytest.fixture
            def tether_app_options():
                return {"interceptors": [Timing()]}
        """
        return {}

    @pytest.fixture
    def tether_app(
        tether_clock: FakeClock, tether_app_options: Any, request: pytest.FixtureRequest
    ) -> Iterator[App]:
        """A fresh in-memory `App` on `tether_clock`, with `tether_app_options`, closed
        after the test."""
        _refuse_other_loops(request)
        if isinstance(tether_app_options, Mapping) and "clock" in tether_app_options:
            raise InvalidArgumentError(
                "tether_app_options gives clock=; tether_app runs on the tether_clock "
                "fixture: override tether_clock instead"
            )
        _check_app_options(tether_app_options, "tether_app_options")
        app = memory_app(tether_clock, **tether_app_options)
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
