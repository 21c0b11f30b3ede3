"""Plain SQL on a test database, beside tether (as a process of another release, or a
look at a table no verb reads), for a SQLite file URL or a PostgreSQL URL with
``?schema=``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg


def execute(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run `statement` (committed) on the database at `url`; the rows it returns."""
    parts = urlsplit(url)
    if url.startswith("sqlite"):
        with sqlite3.connect(parts.path) as conn:
            return list(conn.execute(statement).fetchall())
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        cur = conn.execute(statement)
        return list(cur.fetchall()) if cur.description else []


def sqlite_at(path: str | Path, version: int) -> None:
    """A SQLite file at `path` as an older tether left it: migrated up to `version`."""
    from tether.store._migrations import migrations
    from tether.store._sqlite import APPLICATION_ID, _statements

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(
            "CREATE TABLE schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for mig in migrations("sqlite")[:version]:
            for statement in _statements(mig.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (mig.version, mig.name))
    finally:
        conn.close()


def postgres_at(url: str, schema: str, version: int) -> None:
    """A new schema `schema` in the PostgreSQL database at `url` (no ``?schema=``) as an
    older tether left it: migrated up to `version`."""
    from tether.store._migrations import migrations

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for mig in migrations("postgresql")[:version]:
            conn.execute(mig.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (mig.version, mig.name),
            )
