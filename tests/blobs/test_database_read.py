"""Reading a blob of the database blob store: the body is held once, not two or three
times over, and it is always the body of one put, never part of one and part of the
next (a put, or a delete and another key's put, between the slices of one read)."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tether
from tether.blobs import DatabaseBlobStore
from tether.store import open_store
from tether.store._sqlite import SQLiteTx

from .._postgres import PostgresServer
from ._slices import small_slices

SRC = Path(tether.__file__).resolve().parents[1]  # the tether this test imports
AT = datetime(2026, 1, 1, tzinfo=UTC)
MIB = 2**20

# reads blob "big" of argv[1] (argv[2] bytes) with argv[3] ("get", or "has": is it there)
# and prints how far the process grew
_READ = """
import asyncio, gc, sys
from pathlib import Path
from tether.blobs import DatabaseBlobStore
from tether.store import open_store

def vm(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024

async def main() -> None:
    store = open_store(sys.argv[1])
    blobs = DatabaseBlobStore(store)
    assert await blobs.get("small") == b"s"  # connected, migrated, every module loaded
    gc.collect()
    try:  # the peak (VmHWM) starts again from here
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # it stays this process's peak so far: never less than the growth
        pass
    before = vm("VmRSS")
    body = await getattr(blobs, sys.argv[3])("big")
    grown = vm("VmHWM") - before
    if sys.argv[3] == "has":
        assert body is True, body
    else:
        assert type(body) is bytes and len(body) == int(sys.argv[2]), len(body or b"")
    print(grown)
    await store.close()

asyncio.run(main())
"""


def _body(kind: str, size: int) -> bytes:
    """`size` bytes that PostgreSQL stores as they are ("random"), or compresses."""
    if kind == "random":
        return os.urandom(size)
    words = [b"alpha", b"beta", b"gamma", b'"key":', b"12345", b"{", b"}", b",", b"0.5"]
    rng = random.Random(size)
    return b" ".join(rng.choices(words, k=size // 3))[:size]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("kind", ["random", "compressible"])
async def test_a_read_holds_the_body_once(database_url: str, kind: str) -> None:
    """A read of N bytes grew the process by 3 N on PostgreSQL (libpq's input buffer,
    its result, the bytes; as hex text it had been 6 N) and 2 N on SQLite (SQLite's
    copy of the value, the bytes). Now by N and a slice or two."""
    size = 64 * MIB
    grown = await _growth(database_url, _body(kind, size), "get")
    assert grown < 1.6 * size, f"a read of {size:,} bytes grew the process {grown / size:.2f} times"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
async def test_asking_whether_a_blob_is_there_reads_no_body(database_url: str) -> None:
    """`has` read the whole body to say True: 64 MiB for one bool."""
    size = 64 * MIB
    grown = await _growth(database_url, os.urandom(size), "has")
    assert grown < 0.25 * size, f"has() of a {size:,} byte blob grew the process by {grown:,}"


async def _growth(database_url: str, body: bytes, op: str) -> int:
    """How far a process grows doing `op` ("get", "has") on blob "big" holding `body`."""
    store = open_store(database_url)
    try:
        await store.put_blob("small", b"s", AT)
        await store.put_blob("big", body, AT)
    finally:
        await store.close()
    out = subprocess.run(
        [sys.executable, "-c", _READ, database_url, str(len(body)), op],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


async def test_a_put_during_a_read_on_postgresql_is_not_seen_by_it(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the slices are rows of one statement, so of one snapshot: a put committed between
    # two of them (here, as the first is copied) leaves the read with the old body whole
    from tether.store import _postgres

    small_slices(monkeypatch)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.url_with_schema(schema)
    store = open_store(url)
    old, new = os.urandom(50_000), os.urandom(50_000)
    put: list[int] = []
    load = _postgres._Slice.load

    def slice_then_put(self: Any, data: Any) -> Any:
        if not put:  # another session replaces the blob and commits, read or not
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                conn.execute(f'UPDATE "{schema}".blobs SET body = %s WHERE key = %s', (new, "k"))
                put.append(1)
        return load(self, data)

    try:
        blobs = DatabaseBlobStore(store)
        await blobs.put("k", old)
        monkeypatch.setattr(_postgres._Slice, "load", slice_then_put)
        assert await blobs.get("k") == old
        assert put
        assert await blobs.get("k") == new
    finally:
        await store.close()
        postgres.drop_schema(schema)


class _Interleaved:
    """A connection whose first `blobopen` lets another connection commit `then` first."""

    def __init__(self, conn: sqlite3.Connection, path: Path, then: list[tuple[str, Any]]):
        self._conn, self._path, self._then = conn, path, then

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def blobopen(self, *args: Any, **kwargs: Any) -> Any:
        then, self._then = self._then, []
        other = sqlite3.connect(self._path, isolation_level=None)
        try:
            for sql, params in then:
                other.execute(sql, params)
        finally:
            other.close()
        return self._conn.blobopen(*args, **kwargs)


async def test_a_read_on_sqlite_finds_its_row_and_reads_it_in_one_transaction(
    tmp_path: Path,
) -> None:
    # the row is found, then its body opened by rowid: a delete of the blob and a put of
    # another key between the two (which takes the freed rowid) gave that key's body
    path = tmp_path / "t.db"
    store = open_store(f"sqlite:///{path}")
    try:
        await store.put_blob("a", b"body of a", AT)
    finally:
        await store.close()
    then = [
        ("DELETE FROM blobs WHERE key = ?", ("a",)),
        ("INSERT INTO blobs (key, body, size, created_at) VALUES (?, ?, 9, 0)", ("b", b"b's")),
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        tx = SQLiteTx(_Interleaved(conn, path, then))  # type: ignore[arg-type]
        assert await tx.read_blob("a") == b"body of a"
        assert not conn.in_transaction  # its own transaction, ended
        assert await tx.read_blob("a") is None
        assert await tx.read_blob("b") == b"b's"
        rowids = conn.execute("SELECT rowid FROM blobs").fetchall()
        assert rowids == [(1,)]  # b took a's row id: by rowid alone, a read gave b's body
    finally:
        conn.close()
