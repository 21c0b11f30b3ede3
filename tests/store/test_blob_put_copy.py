"""Blob puts on PostgreSQL go by binary COPY, the body a slice at a time
(`PgTx.write_blob`): the row must come out as a bound INSERT wrote it, and two puts
of one key at once must both succeed, one after the other, as ON CONFLICT made them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from tether.store import open_store
from tether.store._postgres import _BLOB_SLICE

from .._postgres import PostgresServer


async def test_odd_bodies_and_keys_come_back_as_put(database_url: str) -> None:
    store = open_store(database_url)
    await store.open()
    try:
        bodies = {
            "empty": b"",
            "one": b"\x00",
            "slice": bytes(range(256)) * (_BLOB_SLICE // 256),
            "slice+1": b"\xff" * (_BLOB_SLICE + 1),
            "ünï/cödé ✓": b"\\x00 not hex \r\n",
        }
        at = datetime.now(UTC)
        for key, body in bodies.items():
            await store.put_blob(key, body, at)
        for key, body in bodies.items():
            assert await store.get_blob(key) == body, key
        listed = dict(await store.list_blobs(""))
        assert listed == {k: len(b) for k, b in bodies.items()}
        await store.put_blob("slice", b"shorter", at)  # replacing one
        assert await store.get_blob("slice") == b"shorter"
        assert dict(await store.list_blobs("slice"))["slice"] == 7
    finally:
        await store.close()


async def test_a_put_keeps_its_time(postgres: PostgresServer) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = open_store(postgres.url_with_schema(schema))
    await store.open()
    at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    naive = datetime(1999, 12, 31, 23, 59, 59, 999999)  # taken as UTC
    try:
        await store.put_blob("timed", b"x", at)
        await store.put_blob("naive", b"y", naive)
        async with await psycopg.AsyncConnection.connect(postgres.url) as conn:
            cur = await conn.execute(f'SELECT key, created_at FROM "{schema}".blobs')
            got = dict(await cur.fetchall())
        assert got == {"timed": at, "naive": naive.replace(tzinfo=UTC)}
    finally:
        await store.close()
        postgres.drop_schema(schema)


async def test_two_puts_of_one_key_at_once_both_succeed(database_url: str) -> None:
    # COPY cannot replace a row: without the lock on the key, the second of two puts
    # that both deleted before either wrote failed on the key's uniqueness
    stores = [open_store(database_url) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        bodies = [bytes([i]) * (_BLOB_SLICE * 2 + i) for i in range(8)]
        at = datetime.now(UTC) - timedelta(seconds=1)
        await asyncio.gather(
            *(stores[i % 2].put_blob("same", body, at) for i, body in enumerate(bodies))
        )
        assert await stores[0].get_blob("same") in bodies
        assert await stores[1].list_blobs("same") == [
            ("same", len(await stores[1].get_blob("same") or b""))
        ]
    finally:
        for s in stores:
            await s.close()
