from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .._postgres import PostgresServer
from ._serve import Served, start, tether


@pytest.fixture(autouse=True)
def _patient_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's default timeout is 5 s: a request to a `tether serve` process on a slow,
    loaded machine may take longer. Here a bare `httpx.get(...)` (and its kin) waits up
    to 60 s, a bound for a hang, not a measure of speed; a test that passes its own
    timeout keeps it."""
    for verb in ("request", "stream", "get", "options", "head", "post", "put", "patch", "delete"):
        monkeypatch.setattr(httpx, verb, functools.partial(getattr(httpx, verb), timeout=60))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`tether serve` on a SQLite file, with no API token (open to this machine)."""
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db")
    yield s
    s.stop()


@pytest.fixture
def pg_served(tmp_path: Path, postgres: PostgresServer) -> Iterator[Served]:
    """`tether serve` on a PostgreSQL schema of its own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    s = start(tmp_path, postgres.url_with_schema(schema))
    yield s
    s.stop()
    postgres.drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def either_served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`tether serve` on each database in turn."""
    if request.param == "sqlite":
        yield request.getfixturevalue("served")
        return
    yield request.getfixturevalue("pg_served")


def make_token(folder: Path, db: str, scope: str) -> str:
    done = tether(folder, db, "tokens", "create", "--scope", scope, "--name", scope)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    """`tether serve` with a token of each scope (so no request goes unauthenticated)."""
    db = f"sqlite:///{tmp_path}/t.db"
    tokens = {scope: make_token(tmp_path, db, scope) for scope in ("read", "write", "admin")}
    s = start(tmp_path, db)
    yield s, tokens
    s.stop()
