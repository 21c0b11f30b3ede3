"""The blob store contract, run against every adapter (files, memory, and the
database on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether import App, FakeClock, InvalidArgumentError
from tether.blobs import (
    BlobStore,
    DatabaseBlobStore,
    FileBlobStore,
    MemoryBlobStore,
    check_key,
    default_blobs,
)
from tether.store import open_store


@pytest.fixture(params=["files", "memory", "database"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[BlobStore]:
    if request.param == "files":
        yield FileBlobStore(tmp_path / "blobs")
    elif request.param == "memory":
        yield MemoryBlobStore()
    else:
        store = open_store(database_url)
        try:
            yield DatabaseBlobStore(store)
        finally:
            await store.close()


async def test_put_get_replace_has_delete(blobs: BlobStore) -> None:
    assert isinstance(blobs, BlobStore)
    assert await blobs.get("a/b.json") is None and not await blobs.has("a/b.json")
    await blobs.put("a/b.json", b"one")
    await blobs.put("a/b.json", b"two")  # a put replaces
    assert await blobs.get("a/b.json") == b"two" and await blobs.has("a/b.json")
    assert await blobs.delete("a/b.json") is True
    assert await blobs.delete("a/b.json") is False
    await blobs.put("bin", bytes(range(256)))
    assert await blobs.get("bin") == bytes(range(256))


async def test_list_and_delete_by_prefix_treat_wildcards_literally(blobs: BlobStore) -> None:
    for key in ["runs/r_1/x", "runs/r_1/y/z", "runs/rx1/x", "runs/r%1/x", "other"]:
        await blobs.put(key, key.encode())
    assert await blobs.list("runs/r_1/") == ["runs/r_1/x", "runs/r_1/y/z"]
    assert await blobs.list("runs/r%1/") == ["runs/r%1/x"]
    assert len(await blobs.list()) == 5
    assert await blobs.delete_prefix("runs/r_1/") == 2
    assert await blobs.list("runs/") == ["runs/r%1/x", "runs/rx1/x"]


async def test_a_prefix_is_matched_case_and_all(blobs: BlobStore) -> None:
    # SQLite's LIKE ignores case: deleting run Doc-1's blobs took run doc-1's too
    for key in ["runs/doc-1/out", "runs/Doc-1/out", "runs/DOC-1/out"]:
        await blobs.put(key, key.encode())
    assert await blobs.list("runs/Doc-1/") == ["runs/Doc-1/out"]
    assert await blobs.delete_prefix("runs/Doc-1/") == 1
    assert sorted(await blobs.list("runs/")) == ["runs/DOC-1/out", "runs/doc-1/out"]


async def test_bad_keys_are_refused_everywhere(blobs: BlobStore) -> None:
    for bad in ["../escape", "a//b", "/abs", "a/./b", "", "sp ace", "a/"]:
        with pytest.raises(InvalidArgumentError, match="not a plain path"):
            await blobs.put(bad, b"x")
    with pytest.raises(TypeError, match="must be bytes"):
        await blobs.put("k", "text")  # type: ignore[arg-type]


def test_check_key_accepts_prefixes_only_where_asked() -> None:
    assert check_key("runs/a/", prefix=True) == "runs/a/"
    assert check_key("", prefix=True) == ""
    with pytest.raises(InvalidArgumentError):
        check_key("runs/a/")


async def test_the_file_store_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    await store.put("x/y", b"data")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y~blob"]
    assert await store.delete_prefix("x/") == 1
    assert not (tmp_path / "x").exists()


async def test_the_default_follows_the_run_store(tmp_path: Path, postgres: Any) -> None:
    (tmp_path / "db").mkdir()
    app = App(f"sqlite:///{tmp_path}/db/tether.db")
    assert isinstance(app.blobs, FileBlobStore) and app.blobs.root == tmp_path / "db" / "blobs"
    await app.aclose()
    app = App("sqlite:///:memory:")
    assert isinstance(app.blobs, MemoryBlobStore)
    await app.aclose()
    pg = open_store(postgres.url_with_schema("blob_default"))
    try:
        assert isinstance(default_blobs(pg, FakeClock()), DatabaseBlobStore)
    finally:
        await pg.close()
        postgres.drop_schema("blob_default")
    with pytest.raises(InvalidArgumentError, match=r"blobs must be a tether\.blobs\.BlobStore"):
        App("sqlite:///:memory:", blobs="here")  # type: ignore[arg-type]


@pytest.mark.parametrize("first", ["report", "report/p1"])
async def test_a_key_and_the_keys_under_it_are_all_blobs(blobs: BlobStore, first: str) -> None:
    # the file store kept 'report' as a file where 'report/p1' needs a folder: the
    # second put failed (an artifact 'report' and one 'report/p1' of one stage too)
    keys = ["report", "report/p1", "report/p1/a"]
    order = [first] + [k for k in keys if k != first]
    for key in order:
        await blobs.put(key, key.encode())
    for key in keys:
        assert await blobs.get(key) == key.encode() and await blobs.has(key)
    assert await blobs.list() == keys and await blobs.list("report/") == keys[1:]
    assert await blobs.delete("report/p1") and await blobs.get("report/p1") is None
    assert await blobs.get("report/p1/a") == b"report/p1/a"
    assert await blobs.delete_prefix("report/") == 1
    assert await blobs.list() == ["report"] and await blobs.get("report") == b"report"


async def test_a_segment_a_file_store_keeps_for_its_writes_is_refused_everywhere(
    blobs: BlobStore,
) -> None:
    # '.tmp-' names the file store's half-written files: such a key was accepted, then
    # hidden from list() and left out of delete_prefix's count
    with pytest.raises(InvalidArgumentError, match=r"'\.tmp-'"):
        await blobs.put("runs/.tmp-x", b"x")


async def test_delete_prefix_takes_a_folder_not_the_start_of_a_name(blobs: BlobStore) -> None:
    """delete_prefix("runs/r1") (the '/' left off) deleted run r10's files with r1's."""
    for key in ["runs/r1/out", "runs/r10/out", "runs/r1x"]:
        await blobs.put(key, b"x")
    with pytest.raises(InvalidArgumentError, match=r"delete_prefix\('runs/r1/'\)"):
        await blobs.delete_prefix("runs/r1")
    assert await blobs.list() == ["runs/r1/out", "runs/r10/out", "runs/r1x"]
    assert await blobs.delete_prefix("runs/r1/") == 1
    assert await blobs.list() == ["runs/r10/out", "runs/r1x"]


async def test_a_file_store_whose_root_is_a_file_says_so(tmp_path: Path) -> None:
    """A root that is a file (or under one) blamed two keys 'a' and 'a/b' clashing,
    which the store did not hold: the message now names the file in the way."""
    (tmp_path / "taken").write_bytes(b"not a folder")
    for root in (tmp_path / "taken", tmp_path / "taken" / "blobs"):
        store = FileBlobStore(root)
        with pytest.raises(InvalidArgumentError, match="is a file, not a folder") as caught:
            await store.put("report.json", b"{}")
        assert str(tmp_path / "taken") in str(caught.value)
        assert "'a/b'" not in str(caught.value)


def test_a_file_store_needs_a_folder_path() -> None:
    """FileBlobStore("") (an unset setting) kept blobs in the current directory, and
    FileBlobStore(None) raised a bare TypeError from pathlib."""
    for root in ("", None, 3):
        with pytest.raises(InvalidArgumentError, match="takes the folder to keep blobs in"):
            FileBlobStore(root)  # type: ignore[arg-type]
