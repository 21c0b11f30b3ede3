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

from ._postgres import PostgresServer, find_postgres, locate_postgres, required
from .ai._server import ProviderServer

BACKENDS = [
    b.strip() for b in os.environ.get("TETHER_TEST_BACKENDS", "sqlite,postgresql").split(",")
]


_SERVER = pytest.StashKey[PostgresServer]()
_SKIPPED = pytest.StashKey[tuple[int, str]]()


def _uses_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_pg = callspec is not None and callspec.params.get("backend") == "postgresql"
    return on_pg or "postgres" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Find PostgreSQL once, if any collected test needs it; without it, deselect those
    tests and say why in one line at the end (not one SKIPPED line per test)."""
    wanted = [item for item in items if _uses_postgres(item)]
    if not wanted:
        return
    found = locate_postgres()
    if isinstance(found, PostgresServer):
        config.stash[_SERVER] = found
        config.add_cleanup(found.close)
    elif not required():  # required: the tests stay, and the fixture fails them saying why
        config.stash[_SKIPPED] = (len(wanted), found)
        config.hook.pytest_deselected(items=wanted)
        items[:] = [item for item in items if not _uses_postgres(item)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.config.stash.get(_SKIPPED, None)
    if skipped is not None:
        count, why = skipped
        terminalreporter.write_line(f"PostgreSQL tests skipped ({count} deselected): {why}")


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL database of this test session's own (created, then dropped)."""
    server = request.config.stash.get(_SERVER, None)
    if server is not None:
        yield server  # found at collection; dropped when the session ends
        return
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


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    """A local server speaking OpenAI's and Anthropic's wire formats (`tests/ai/_server`)."""
    srv = ProviderServer()
    yield srv
    srv.close()
