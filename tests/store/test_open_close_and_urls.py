"""The store as an operator meets it: a close while a call runs, a file locked by
another process, a password that needs percent-encoding."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tether.errors import InvalidArgumentError, StoreError
from tether.store import open_store, parse_pg_url, redact
from tether.testing import eventually

from .._postgres import PostgresServer


@pytest.fixture
def schema(postgres: PostgresServer) -> Iterator[str]:
    name = f"t_sto_{uuid.uuid4().hex[:10]}"
    yield name
    postgres.drop_schema(name)


async def test_closing_a_postgres_store_under_a_call_fails_the_call_clearly(
    postgres: PostgresServer, schema: str
) -> None:
    """The call in flight raised a bare AssertionError (no message) from the retry
    meant for a connection the server dropped."""
    import psycopg

    store = open_store(postgres.url_with_schema(schema))
    await store.open()
    blocker = await psycopg.AsyncConnection.connect(postgres.url)
    watcher = await psycopg.AsyncConnection.connect(postgres.url, autocommit=True)
    try:
        await blocker.execute(f'LOCK TABLE "{schema}".runs IN ACCESS EXCLUSIVE MODE')
        call = asyncio.ensure_future(store.get_run("r1"))

        async def waiting() -> bool:
            cur = await watcher.execute(  # autocommit: a fresh snapshot of the view each time
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                ("%runs%",),
            )
            row = await cur.fetchone()
            return row is not None and row[0] > 0

        await eventually(waiting)
        await store.close()
        with pytest.raises(StoreError, match="closed while a call on it was in flight"):
            await call
    finally:
        await watcher.close()
        await blocker.close()
        await store.close()


async def test_a_file_another_process_holds_locked_is_not_called_unreadable(
    tmp_path: Path,
) -> None:
    """A database another process held locked was refused as "not a readable SQLite
    database; point tether at a new file", which reads as "this file is damaged"."""
    path = tmp_path / "t.db"
    sqlite3.connect(path).close()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            store = open_store(f"sqlite:///{path}?busy_timeout=0")
            with pytest.raises(StoreError, match="stayed locked by another process") as info:
                await store.open()
            assert "not a readable" not in str(info.value)
            await store.close()
        finally:
            holder.kill()


# a process that holds the file's exclusive lock until it is killed
_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("CREATE TABLE other (x)")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("password", ["p#ss", "pa/ss", "p?ss", "p@ss", "p%zz"])
def test_a_password_needing_percent_encoding_is_refused_without_showing_it(
    password: str,
) -> None:
    """Left as it is, a '#', '/' or '?' in the password was reported as "a bad port"
    with the password in clear; an '@' sent libpq to the host "ss@127.0.0.1" and a '%'
    printed it in libpq's error, both read as "check that the server runs"."""
    url = f"postgresql://u:{password}@127.0.0.1/db?schema=s"
    with pytest.raises(InvalidArgumentError, match="must be percent-encoded") as info:
        open_store(url)
    assert password not in str(info.value)


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert redact("postgresql://u:p@ss@127.0.0.1/db") == "postgresql://u:***@127.0.0.1/db"


def test_an_encoded_password_still_opens_the_url() -> None:
    url = "postgresql://u:p%40ss%23@127.0.0.1:5432/db?application_name=me@host"
    assert parse_pg_url(url).host == "127.0.0.1:5432"
    assert redact(url) == "postgresql://u:***@127.0.0.1:5432/db?application_name=me@host"


async def test_a_unix_socket_given_as_libpq_documents_it_opens(
    postgres: PostgresServer, schema: str
) -> None:
    """postgresql:///db?host=/run/postgresql was refused as an unknown option."""
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute("SHOW unix_socket_directories").fetchone()
    folder = row[0].split(",")[0].strip() if row else ""
    parts = urlsplit(postgres.url)
    user = f"{parts.username}@" if parts.username else ""
    query = urlencode({"host": folder, "schema": schema})
    url = f"postgresql://{user}:{parts.port or 5432}{parts.path}?{query}"
    store = open_store(url)
    try:
        await store.open()
        assert await store.get_run("nope") is None
        assert parse_pg_url(url).host == f"{folder}:{parts.port or 5432}"
    finally:
        await store.close()
