"""A blob put holds no copy of its body: bound as a value, SQLite copied it and built
the row from that copy, and on PostgreSQL the driver and libpq each copied it, so a
put of N bytes grew the process by about 2 N. Measured in a process of its own, by
its peak resident size; an older database's blobs are still read after the
migration that moves the body last (0023)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tether.store import open_store

from .._sql import sqlite_at

PUT = r"""
import asyncio, json, resource, sys
from datetime import UTC, datetime
from tether.store import open_store

async def main(url, size):
    store = open_store(url)
    await store.open()
    await store.put_blob("big/one", b"small first", datetime.now(UTC))
    body = bytes(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await store.put_blob("big/one", body, datetime.now(UTC))  # replacing one
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    back = await store.get_blob("big/one")
    listed = await store.list_blobs("big/")
    await store.close()
    print(json.dumps({"grew_kib": after - before, "same": back == body, "listed": listed}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_a_blob_put_holds_no_copy_of_its_body(database_url: str) -> None:
    size = 64 << 20
    done = subprocess.run(
        [sys.executable, "-c", PUT, database_url, str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["same"] and seen["listed"] == [["big/one", size]]
    assert seen["grew_kib"] * 1024 < size // 4, seen  # was about 2 x size


async def test_blobs_an_older_sqlite_database_kept_are_read_after_the_migration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    sqlite_at(path, 22)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO blobs VALUES ('a/b', x'00ff10', 3, 5.0)")
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.get_blob("a/b") == b"\x00\xff\x10"
        await store.put_blob("a/c", b"new", datetime.now(UTC))
        assert await store.list_blobs("a/") == [("a/b", 3), ("a/c", 3)]
    finally:
        await store.close()
