"""The database blob store finds the blobs under a prefix (a run's files, listed, and
deleted on delete and prune) as a range of the key's index, on PostgreSQL whatever
the database's collation: it tested ``substr(key, ...)`` on every row, a full scan
of the table for each run pruned. No character of a prefix is a wildcard."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from tether import InvalidArgumentError
from tether.blobs import DatabaseBlobStore
from tether.store import Store, open_store
from tether.store._sql import queries
from tether.store._verbs_blobs import prefix_range

from .._postgres import PostgresServer
from ._slices import small_slices

AT = datetime(2026, 1, 1, tzinfo=UTC)

# run ids that differ by a LIKE wildcard, its escape, case or punctuation a language's
# collation ignores ('runs/A/x' sorts between 'runs/a/x' and 'runs/a/y' in en-US)
IDS = ["a%b", "axb", "a_b", "aXb", "a-b", "a\\b", "a\\\\b", "ab", "A_B", "a", "A", "a%", "a_"]
KEYS = sorted(
    [f"runs/{i}/{leaf}" for i in IDS for leaf in ("x", "y/z")]
    + ["runs/a%b", "runs/a_b0/x", "runs/a/", "runs", "other/runs/a/x"]
)
PREFIXES = ["runs/a%b/", "runs/a_b/", "runs/a\\b/", "runs/a/", "runs/a", "runs/A", "runs/", ""]


@pytest.fixture
def icu_en_us(postgres: PostgresServer) -> Iterator[str]:
    """A database whose default collation sorts as a language does (ICU en-US)."""
    name = f"tether_icu_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        try:
            conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error as exc:  # PostgreSQL before 15, or built without ICU
            pytest.skip(f"no database collated by ICU en-US here: {exc}")
    parts = urlsplit(postgres.admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    finally:
        with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["database default", "icu en-US"])
async def pg_url(request: pytest.FixtureRequest, postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh schema, in the session's database or in one collated by ICU en-US."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "database default":
        yield postgres.url_with_schema(schema)
        postgres.drop_schema(schema)
    else:
        yield request.getfixturevalue("icu_en_us") + f"?schema={schema}"


def _conninfo(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), parts.query[7:]


async def _check_every_prefix(store: Store) -> None:
    """For each prefix: list and delete take exactly the keys that start with it."""
    for prefix in PREFIXES:
        for key in KEYS:
            await store.put_blob(key, key.encode(), AT)
        wanted = sorted(k for k in KEYS if k.startswith(prefix))
        assert [k for k, _ in await store.list_blobs(prefix)] == wanted, prefix
        assert await store.delete_blobs(prefix) == len(wanted), prefix
        left = [k for k, _ in await store.list_blobs("")]
        assert left == sorted(set(KEYS) - set(wanted)), prefix  # sorted by byte, everywhere


async def test_a_prefix_takes_the_keys_that_start_with_it_and_no_other(
    database_url: str,
) -> None:
    store = open_store(database_url)
    try:
        await _check_every_prefix(store)
    finally:
        await store.close()


async def test_no_character_of_a_prefix_is_a_wildcard_whatever_the_collation(
    pg_url: str,
) -> None:
    store = open_store(pg_url)
    try:
        await _check_every_prefix(store)
        blobs = DatabaseBlobStore(store)  # and through the adapter (which refuses '\')
        for key in ("runs/r_1/a", "runs/r%1/a", "runs/rx1/a", "runs/R_1/a", "runs/r_10/a"):
            await blobs.put(key, b"x")
        assert await blobs.delete_prefix("runs/r_1/") == 1
        assert await blobs.delete_prefix("runs/r%1/") == 1
        assert await blobs.list("runs/") == ["runs/R_1/a", "runs/r_10/a", "runs/rx1/a"]
    finally:
        await store.close()


def _plan(conn: psycopg.Connection[Any], query: str, params: dict[str, str | None]) -> str:
    return "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN {query}", params))


async def test_prefix_queries_read_a_range_of_the_key_index(pg_url: str) -> None:
    store = open_store(pg_url)
    await store.open()  # migrated
    await store.close()
    conninfo, schema = _conninfo(pg_url)
    q = queries("postgresql")
    lo, hi = prefix_range("runs/r5/")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(
            "INSERT INTO blobs (key, body, size, created_at) SELECT 'runs/r' || i || "
            "'/stages/s/1/output.json', 'x', 1, now() FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE blobs")
        for name in ("delete_blobs", "list_blobs"):
            plan = _plan(conn, q[name], {"lo": lo, "hi": hi})
            assert "Seq Scan" not in plan and "Index" in plan and "blobs_pkey" in plan, plan
            assert "Index Cond: ((key >= 'runs/r5/'::text) AND (key < 'runs/r50'::text))" in (
                plan
            ), plan
        # a statement psycopg prepares (the 6th run of a query) gets a generic plan,
        # made without the prefix's value: it still reads a range of the index
        conn.execute("SET plan_cache_mode = force_generic_plan")
        generic = q["delete_blobs"].replace("%(lo)s", "$1").replace("%(hi)s", "$2")
        conn.execute(f"PREPARE prune_files (text, text) AS {generic}")
        run = sql.SQL("EXPLAIN EXECUTE prune_files ({}, {})").format(
            sql.Literal(lo), sql.Literal(hi)
        )
        plan = "\n".join(str(r[0]) for r in conn.execute(run))
        assert "Seq Scan" not in plan and "blobs_pkey" in plan and "Index Cond" in plan, plan
        collation = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'blobs' AND column_name = 'key'",
            (schema,),
        ).fetchone()
        assert collation == ("C",)
    store = open_store(pg_url)
    try:  # and the rows it reads are the run's
        assert len(await store.list_blobs("runs/r5/")) == 1
        assert await store.delete_blobs("runs/r5/") == 1
        assert len(await store.list_blobs("runs/r5")) == 1110  # r50..r59, r500.., r5000..
    finally:
        await store.close()


def test_the_sqlite_prefix_queries_search_the_key_index() -> None:
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE blobs (key TEXT PRIMARY KEY, body BLOB NOT NULL, size INTEGER NOT NULL, "
        "created_at REAL NOT NULL)"
    )
    q = queries("sqlite")
    for name in ("delete_blobs", "list_blobs"):
        plan = " ".join(str(r) for r in conn.execute(f"EXPLAIN QUERY PLAN {q[name]}",
                                                     {"lo": "a/", "hi": "a0"}))  # fmt: skip
        assert "SEARCH blobs USING" in plan and "key>? AND key<?" in plan, plan


@given(st.text(max_size=6), st.text(max_size=8))
def test_a_prefix_is_the_range_prefix_range_gives(prefix: str, rest: str) -> None:
    lo, hi = prefix_range(prefix)
    for key in (rest, prefix + rest, prefix[:-1] + rest):
        inside = lo <= key and (hi is None or key < hi)  # Python compares by code point
        assert inside == key.startswith(prefix), (prefix, key)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("runs/a/", ("runs/a/", "runs/a0")),
        ("", ("", None)),
        ("\U0010ffff", ("\U0010ffff", None)),
        ("a\U0010ffff\U0010ffff", ("a\U0010ffff\U0010ffff", "b")),
        ("a\ud7ff", ("a\ud7ff", "a\ue000")),
    ],
)
def test_prefix_range_edges(prefix: str, expected: tuple[str, str | None]) -> None:
    assert prefix_range(prefix) == expected


async def _compressed(postgres: PostgresServer, schema: str, key: str) -> bool:
    """Whether the server keeps blob `key` compressed (then `get_blob` unpacks it once)."""
    async with await psycopg.AsyncConnection.connect(postgres.url) as conn:
        cur = await conn.execute(
            f'SELECT pg_column_size(body) < octet_length(body) FROM "{schema}".blobs '
            "WHERE key = %s",
            (key,),
        )
        row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def test_a_body_is_read_back_in_slices_on_postgresql(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a body comes back as hex text, twice its size, and the server makes no text of
    # 1 GB: a 530 MB blob was stored, then every read failed ("invalid memory alloc
    # request size 1111490563"); slices of 1 MiB (they were of 256 MiB), here of 1000
    # bytes, of a body the server compresses (a pattern) or keeps as it is (random)
    small_slices(monkeypatch)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = open_store(postgres.url_with_schema(schema))
    compressed: set[bool] = set()
    try:
        blobs = DatabaseBlobStore(store)
        for size in (0, 1, 999, 1000, 1001, 5500, 250_500):
            for kind, body in [("pattern", bytes(i % 251 for i in range(size))),
                               ("random", os.urandom(size))]:  # fmt: skip
                await blobs.put(f"b/{size}", body)
                assert await blobs.get(f"b/{size}") == body, (size, kind)
                compressed.add(await _compressed(postgres, schema, f"b/{size}"))
        assert compressed == {True, False}  # both ways of reading were taken
        assert await blobs.get("b/none") is None
    finally:
        await store.close()
        postgres.drop_schema(schema)


async def test_a_blob_no_database_holds_is_refused_saying_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.blobs import _database

    monkeypatch.setattr(_database, "MAX_BYTES", 10)
    store = open_store(database_url)
    try:
        blobs = DatabaseBlobStore(store)
        await blobs.put("ok", b"x" * 10)
        with pytest.raises(InvalidArgumentError, match=r"blob 'big' is 11 bytes: .* at most 10 "
                           r"\(a database value's limit\); keep files this large in a "
                           r"FileBlobStore"):  # fmt: skip
            await blobs.put("big", b"x" * 11)
        assert await blobs.list() == ["ok"]
    finally:
        await store.close()
