"""Helpers for testing code that uses tether (also a pytest plugin).

- `FakeClock`: time that moves only when told to; pass it as ``App(clock=...)``.
- fixtures ``tether_clock`` (a `FakeClock`) and ``tether_app`` (a fresh
  in-memory `App` on that clock), registered automatically when tether is
  installed and pytest runs.
- an ``async def`` test that uses those fixtures runs on its own event loop
  without an async plugin (pytest alone cannot run an ``async def`` test);
  where pytest-asyncio, anyio or trio already runs it, that plugin does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine, Iterator
from typing import Any

from .app import App
from .clock import FakeClock

__all__ = ["FakeClock", "memory_app", "tether_app", "tether_clock"]

MEMORY_URL = "sqlite:///:memory:"


def memory_app(clock: FakeClock | None = None) -> App:
    """A fresh `App` on an in-memory SQLite store."""
    return App(MEMORY_URL, clock=clock or FakeClock())


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
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        app = pyfuncitem.funcargs.get("tether_app")

        async def test() -> None:
            try:
                await fn(**args)
            finally:  # on the loop the App ran on; the fixture's close() then has nothing to do
                if isinstance(app, App):
                    await app.aclose()

        _run(test())
        return True
