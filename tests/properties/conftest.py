"""Apps for the property tests: one per test (examples use fresh run ids), on a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether import App

from ._support import new_app


@pytest.fixture
async def sqlite_app(sqlite_url: str) -> AsyncIterator[App]:
    """For the heavy property loops."""
    app = new_app(sqlite_url)
    yield app
    await app.aclose()


@pytest.fixture
async def any_app(database_url: str) -> AsyncIterator[App]:
    """SQLite and PostgreSQL, for the lighter runs of the same properties."""
    app = new_app(database_url)
    yield app
    await app.aclose()
