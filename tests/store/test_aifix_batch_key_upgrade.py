"""A database written at schema version 0018 upgrades to the batch key that names the
provider: its recorded batch results are kept, still refuse a second copy (a
re-poll recorded once), and another provider's batch with the same batch id and
custom id is now recorded beside them. On a real SQLite file and real PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tether.store import open_store
from tether.store._migrations import latest_version, migrations

from .._postgres import PostgresServer

AT_0018 = 18
ROW = (
    "INSERT INTO ai_calls (run_id, step_key, attempt, seq, call_type, provider, model, at, "
    "batch_id, custom_id) VALUES ('r', {key}, 1, 0, 'batch', {provider}, 'm', {at}, "
    "'msgbatch_1', '0')"
)


def _write_0018(dialect: str, execute: Callable[..., Any], mark: str) -> None:
    """The tables an older tether left: migrations 1 to 18 and their versions, run
    through `execute` (a connection's, with `mark` its parameter placeholder)."""
    from tether.store._sqlite import _statements

    applied = "REAL NOT NULL" if dialect == "sqlite" else "timestamptz NOT NULL DEFAULT now()"
    execute(
        "CREATE TABLE schema_version "
        f"(version integer PRIMARY KEY, name text NOT NULL, applied_at {applied})"
    )
    for mig in migrations(dialect)[:AT_0018]:
        parts = _statements(mig.sql) if dialect == "sqlite" else [mig.sql]
        for statement in parts:
            execute(statement)
        when = "0" if dialect == "sqlite" else "now()"
        execute(
            f"INSERT INTO schema_version VALUES ({mark}, {mark}, {when})", (mig.version, mig.name)
        )


def _sqlite_at_0018(path: Path) -> Callable[[str, str], Any]:
    from tether.store._sqlite import APPLICATION_ID

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    _write_0018("sqlite", conn.execute, "?")
    conn.close()

    def insert(key: str, provider: str) -> None:
        with sqlite3.connect(path, isolation_level=None) as c:
            c.execute(ROW.format(key="?", provider="?", at="0"), (key, provider))

    return insert


def _pg_at_0018(server: PostgresServer, schema: str) -> Callable[[str, str], Any]:
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        _write_0018("postgresql", conn.execute, "%s")

    def insert(key: str, provider: str) -> None:
        with psycopg.connect(server.url, autocommit=True) as c:
            c.execute(f"SET search_path TO {schema}")
            c.execute(ROW.format(key="%s", provider="%s", at="now()"), (key, provider))

    return insert


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_0018_database_keys_batch_results_by_provider(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """At 0018 a second provider's result with the same batch and custom id is refused
    (the bug); after the upgrade it is recorded, and the first provider's own
    duplicate is still refused."""
    refused: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
    if backend == "sqlite":
        insert = _sqlite_at_0018(tmp_path / "old.db")
        url, cleanup = f"sqlite:///{tmp_path}/old.db", None
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        insert = _pg_at_0018(server, schema)
        url, cleanup = server.url_with_schema(schema), lambda: server.drop_schema(schema)
    try:
        insert("ai.batch:a.fetch", "anthropic")  # recorded by an older tether
        with pytest.raises(refused):
            insert("ai.batch:p.fetch", "proxy")  # what 0018 does to another provider's
        store = open_store(url)
        try:
            await store.open()
            assert await store.schema_version() == latest_version(store.dialect)
        finally:
            await store.close()
        insert("ai.batch:p.fetch", "proxy")  # now its own row
        with pytest.raises(refused):
            insert("ai.batch:a.again", "anthropic")  # the same result again: still once
    finally:
        if cleanup is not None:
            cleanup()
