"""Blob stores used by several processes at once: two writers on the same keys and
folders while a third deletes by prefix (a prune, a rerun's cleanup). A reader sees
whole values only, and a put never fails because a delete ran beside it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.blobs import BlobStore, DatabaseBlobStore, FileBlobStore, _files
from tether.store import open_store

SRC = Path(tether.__file__).resolve().parents[1]  # the tether this test imports


@pytest.mark.parametrize("at", ["before its temporary file", "before its rename"])
async def test_a_put_whose_folder_a_delete_removes_meanwhile_writes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    # a prune removing a run's folder as a put wrote there failed the put with a bare
    # FileNotFoundError (at mkdir, at the temporary file, at the rename or at the fsync)
    store = FileBlobStore(tmp_path)
    await store.put("runs/r/a", b"first")
    real_write, real_replace = _files._write, os.replace
    removed: list[str] = []

    def prune() -> None:
        if not removed:
            shutil.rmtree(tmp_path / "runs")
            removed.append(at)

    def write(path: Path, data: bytes) -> None:
        if at == "before its temporary file":
            prune()
        real_write(path, data)

    def replace(src: Any, dst: Any) -> None:
        prune()
        real_replace(src, dst)

    monkeypatch.setattr(_files, "_write", write)
    if at == "before its rename":
        monkeypatch.setattr(os, "replace", replace)
    await store.put("runs/r/b", b"second")
    monkeypatch.undo()
    assert removed == [at]
    assert await store.list() == ["runs/r/b"]  # after the delete: 'a' went, 'b' stands
    assert await store.get("runs/r/b") == b"second"
    assert not [p for p in (tmp_path / "runs" / "r").iterdir() if p.name.startswith(".tmp-")]


async def test_a_put_whose_folder_goes_once_written_is_done_and_the_delete_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path)
    real = _files._fsync_folder
    gone: list[Path] = []

    def fsync_folder(folder: Path) -> None:
        if not gone:
            gone.append(folder)
            shutil.rmtree(tmp_path / "runs")  # deleted after the rename, before its fsync
        real(folder)

    monkeypatch.setattr(_files, "_fsync_folder", fsync_folder)
    await store.put("runs/r/a", b"x")  # no FileNotFoundError
    assert gone and await store.list() == []


async def test_a_put_whose_folder_goes_between_mkdir_and_its_check_writes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mkdir(exist_ok=True) found the folder there, a prune removed it, and mkdir's own
    # check then saw no folder: the put failed as a key clashing with a folder
    store = FileBlobStore(tmp_path)
    await store.put("runs/r/a", b"first")
    real_mkdir = os.mkdir
    raced: list[str] = []

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if not raced and Path(path) == tmp_path / "runs" / "r":
            raced.append(str(path))
            shutil.rmtree(tmp_path / "runs")
            raise FileExistsError(17, "File exists", str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    await store.put("runs/r/b", b"second")
    monkeypatch.undo()
    assert raced
    assert await store.list() == ["runs/r/b"]
    (tmp_path / "runs" / "r" / "d~blob").mkdir()  # made by hand where a blob's file goes
    with pytest.raises(tether.InvalidArgumentError, match="a folder stands there"):
        await store.put("runs/r/d", b"still a clash when a folder stands there")


# a writer process: puts self-checking bodies (sha256|payload) to the keys of 4 runs and
# to one shared key, as fast as it can, for a while; prints the errors it met
WRITER = textwrap.dedent(
    """
    import asyncio, hashlib, json, random, sys, time
    from tether.blobs import DatabaseBlobStore, FileBlobStore
    from tether.store import open_store

    def body(tag, n):
        payload = (tag * n)[:n].encode()
        return hashlib.sha256(payload).hexdigest().encode() + b"|" + payload

    async def main(kind, where, name, seconds):
        store = None
        if kind == "files":
            blobs = FileBlobStore(where)
        else:
            store = open_store(where)
            blobs = DatabaseBlobStore(store)
        errors, puts = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end or puts + len(errors) < 20:  # slow machine: enough
            i = random.randrange(20)
            for key, size in ((f"runs/r{i % 4}/stages/s/1/out{i}.json", 5000),
                              ("shared/same.json", random.choice([10, 200_000]))):
                try:
                    await blobs.put(key, body(f"{name}{puts}", size))
                    puts += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
        if store is not None:
            await store.close()
        print(json.dumps({"puts": puts, "errors": errors[:5], "failed": len(errors)}))

    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4])))
    """
)


def _whole(body: bytes) -> bool:
    digest, _, payload = body.partition(b"|")
    return hashlib.sha256(payload).hexdigest().encode() == digest


async def test_two_writer_processes_and_a_pruner_beside_them_on_files(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    await _write_while_pruning(tmp_path, "files", str(root), FileBlobStore(root))
    assert not [p for p in root.rglob(".tmp-*")]


async def test_two_writer_processes_and_a_pruner_beside_them_on_the_database(
    tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    await store.open()  # migrated before the writers start
    try:
        await _write_while_pruning(tmp_path, "database", database_url, DatabaseBlobStore(store))
    finally:
        await store.close()


async def _write_while_pruning(tmp_path: Path, kind: str, where: str, blobs: BlobStore) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    async def spawn(name: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, str(script), kind, where, name, "3"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    writers = [await spawn("a"), await spawn("b")]
    done = asyncio.gather(*(w.communicate() for w in writers))
    pruned = reads = 0
    while not done.done():  # prune, and read, as they write
        pruned += await blobs.delete_prefix(f"runs/r{reads % 4}/")
        for key in ("shared/same.json", f"runs/r{reads % 4}/stages/s/1/out{reads % 4}.json"):
            got = await blobs.get(key)
            assert got is None or _whole(got), f"a torn read of {key}: {len(got)} bytes"
        reads += 1
        await asyncio.sleep(0.002)
    outs = await asyncio.wait_for(done, timeout=120)
    for w, (out, err) in zip(writers, outs, strict=True):
        assert w.returncode == 0, err.decode()
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["failed"] == 0, report  # no put failed for a prune beside it
        assert report["puts"] > 10
    assert pruned > 0 and reads > 10
    for key in await blobs.list():
        got = await blobs.get(key)
        assert got is not None and _whole(got), key
