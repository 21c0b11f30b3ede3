"""Where the tests find PostgreSQL.

Order: $TETHER_TEST_POSTGRES_URL; else a server on 127.0.0.1:5432 (trust
auth); else a throwaway cluster started from installed server binaries. If
none works the PostgreSQL tests skip with one line saying why, unless
TETHER_REQUIRE_POSTGRES=1, which turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest


@dataclass
class PostgresServer:
    admin_url: str  # a database we may CREATE DATABASE from
    url: str  # this session's own database
    dbname: str
    _closers: list[object] = field(default_factory=list)

    def url_with_schema(self, schema: str) -> str:
        parts = urlsplit(self.url)
        query = urlencode({"schema": schema})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def drop_schema(self, schema: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def close(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        finally:
            for closer in reversed(self._closers):
                closer()  # type: ignore[operator]


def _unavailable(why: str) -> PostgresServer:
    if os.environ.get("TETHER_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (TETHER_REQUIRE_POSTGRES=1) but {why}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {why}")


def _try(admin_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )


def _create_db(admin_url: str, closers: list[object] | None = None) -> PostgresServer:
    import psycopg

    dbname = f"tether_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", "", ""))
    return PostgresServer(admin_url, url, dbname, closers or [])


def find_postgres() -> PostgresServer:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return _unavailable("the psycopg driver is not installed (pip install 'tether[postgres]')")
    explicit = os.environ.get("TETHER_TEST_POSTGRES_URL")
    if explicit:
        err = _try(explicit)
        if err:
            return _unavailable(f"TETHER_TEST_POSTGRES_URL={explicit} is unreachable ({err})")
        return _create_db(explicit)
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    err = _try(local)
    if err is None:
        return _create_db(local)
    local_test = "postgresql://127.0.0.1:5432/test"
    if _try(local_test) is None:
        return _create_db(local_test)
    return _unavailable(
        f"no server at 127.0.0.1:5432 ({err}) and no throwaway cluster could be started"
    )
