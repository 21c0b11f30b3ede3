"""Plain SQL on a test database, beside tether (as a process of another release, or a
look at a table no verb reads), for a SQLite file URL or a PostgreSQL URL with
``?schema=``."""

from __future__ import annotations

import sqlite3
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
