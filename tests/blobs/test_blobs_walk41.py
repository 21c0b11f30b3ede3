"""A harness author's walk of the blob stores: the same keys are kept or refused alike
by every store (memory, files, SQLite, PostgreSQL), and a stage output too large for
the record goes to the blob store, is read back from it by a replay, and goes with its
run when the run is pruned."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

import tether
from tether import App, InvalidArgumentError
from tether.blobs import BlobStore, DatabaseBlobStore, FileBlobStore, MemoryBlobStore
from tether.store import open_store
from tether.testing import FakeClock

LONGEST = "/".join(["y" * 200] * 4) + "/" + "z" * 196  # 1,000 characters, 200 a segment
DEEPEST = "q/" * 499 + "q"  # 999 characters, 500 folders deep
KEPT = [LONGEST, DEEPEST, "CON", ".hidden", "...", "a%2F..", "x:y@1#[2]=+.json"]
REFUSED = ["ü.txt", "a/../b", "../x", "/abs", "a//b", "a/", "y" * 201, LONGEST + "z",
           "a b", "a\\b", "a\x00b", "a/.", "a/.tmp-x", "~x"]  # fmt: skip


@pytest.fixture(params=["memory", "files", "database"])
async def blobs(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
    elif request.param == "files":
        yield FileBlobStore(tmp_path / "blobs")
    else:
        store = open_store(database_url)
        yield DatabaseBlobStore(store)
        await store.close()


async def test_every_store_keeps_and_refuses_the_same_keys(blobs: BlobStore) -> None:
    for key in KEPT:
        await blobs.put(key, key.encode())
    for key in REFUSED:
        with pytest.raises(InvalidArgumentError, match="is not a plain path"):
            await blobs.put(key, b"x")
    assert await blobs.list() == sorted(KEPT)
    for key in KEPT:
        assert await blobs.get(key) == key.encode()
        assert await blobs.list(key) == [key]
    assert await blobs.list("q/") == [DEEPEST]
    assert await blobs.delete_prefix("q/") == 1
    assert await blobs.delete_prefix("") == len(KEPT) - 1
    assert await blobs.list() == []


async def test_bytes_of_any_buffer_are_copied_when_put(blobs: BlobStore) -> None:
    body = bytearray(b"abc")
    await blobs.put("ba", body)
    body[0] = 0  # the caller's buffer changing later does not change the blob
    await blobs.put("mv", memoryview(b"xyz")[1:])
    await blobs.put("empty", b"")
    assert [await blobs.get(k) for k in ("ba", "mv", "empty")] == [b"abc", b"yz", b""]
    assert await blobs.has("empty")


class Ask(BaseModel):
    n: int


class Big(BaseModel):
    text: str


@tether.stage(id="make", input=Ask, output=Big)
async def make(ctx: tether.StageContext[Ask, None]) -> Big:
    return Big(text="x" * 200_000)  # above the 64 KiB inline limit


async def test_a_large_output_is_a_blob_replayed_from_it_and_pruned_with_its_run(
    database_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    app = App(database_url, clock=clock)
    try:
        pipe = tether.Pipeline("big", input=Ask).pipe(make)
        app.register(pipe)
        done = await app.arun(pipe, Ask(n=1), workflow_id="big-1")
        assert done.value.text == "x" * 200_000
        keys = await app.blobs.list("runs/big-1/")
        assert keys, "the large output was kept in the record, not the blob store"
        bodies = [await app.blobs.get(k) or b"" for k in keys]
        assert any(b"x" * 200_000 in body for body in bodies)
        assert len(repr(done.record.steps["stage:make"].result)) < 10_000
        again = await app.arun(pipe, workflow_id="big-1")  # answered from the record
        assert again.value.text == "x" * 200_000
        clock.advance(timedelta(hours=2))
        assert await app.aprune("1h") == 1
        assert await app.blobs.list("runs/big-1/") == []
        if isinstance(app.blobs, FileBlobStore):
            assert not (app.blobs.root / "runs" / "big-1").exists()
    finally:
        await app.aclose()


async def test_created_files_and_folders_take_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        store = FileBlobStore(tmp_path / "blobs")
        await store.put("runs/r1/out.json", b"{}")
    finally:
        os.umask(old)
    folder = tmp_path / "blobs" / "runs" / "r1"
    assert (folder / "out.json~blob").stat().st_mode & 0o777 == 0o640
    assert folder.stat().st_mode & 0o777 == 0o750
    assert [p.name for p in folder.iterdir()] == ["out.json~blob"]  # no temporary file
