"""Helpers for testing code that uses tether (also a pytest plugin).

- `FakeClock`: time that moves only when told to; pass it as ``App(clock=...)``.
- fixtures ``tether_clock`` (a `FakeClock`) and ``tether_app`` (a fresh
  in-memory `App` on that clock), registered automatically when tether is
  installed and pytest runs.
"""

from __future__ import annotations

from collections.abc import Iterator

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
        yield app
        app.close()
