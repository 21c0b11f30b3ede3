"""Shared fixtures: every engine test runs once per store backend.

`database_url` is parametrised over SQLite (a real file in a temp folder) and
PostgreSQL (a real server; each test gets its own schema). Where PostgreSQL
is found is decided once per session in `tests/_postgres.py`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tether import App, FakeClock

from ._postgres import PostgresServer, find_postgres

BACKENDS = [
    b.strip() for b in os.environ.get("TETHER_TEST_BACKENDS", "sqlite,postgresql").split(",")
]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL database of this test session's own (created, then dropped)."""
    server = find_postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: object, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of the current backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/tether.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield server.url_with_schema(schema)
    server.drop_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/tether.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock)
    yield the_app
    await the_app.aclose()
