"""The file blob store under crashes and at scale: a writer SIGKILLed mid-put (a real
process), power-cut durability of the folders a put makes, file modes, and the cost
of listing one run's files among many."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.blobs import FileBlobStore, _files
from tether.testing import eventually_sync

SRC = Path(tether.__file__).resolve().parents[1]  # the tether this test imports

# a writer that stalls for good once its temporary file is written (before the rename)
WRITER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from tether.blobs import FileBlobStore, _files

    def stall(fd):
        print("written", flush=True)
        time.sleep(3600)

    async def main():
        store = FileBlobStore(sys.argv[1])
        await store.put("out/big.bin", b"old" * 10)
        os.fsync = stall
        await store.put("out/big.bin", b"new" * 2_000_000)

    asyncio.run(main())
    """
)


def _kill_mid_put(tmp_path: Path, root: Path) -> None:
    """Run WRITER, SIGKILL it once its half-done put has written its temporary file."""
    script, log = tmp_path / "writer.py", tmp_path / "writer.log"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(root)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def stalled() -> bool:
            assert proc.poll() is None, log.read_text()
            return "written" in log.read_text()

        eventually_sync(stalled, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_writer_killed_mid_put_leaves_the_old_bytes_and_its_leftover_goes(
    tmp_path: Path,
) -> None:
    # the temporary file of a killed writer (MBs) stayed for good, hidden from list():
    # nothing but deleting the whole run removed it
    root = tmp_path / "blobs"
    _kill_mid_put(tmp_path, root)
    folder = root / "out"
    assert [p for p in folder.iterdir() if p.name.startswith(".tmp-")]  # the half-done put
    store = FileBlobStore(root)
    assert await store.get("out/big.bin") == b"old" * 10  # never the half-written bytes
    assert await store.list() == ["out/big.bin"]
    await store.put("out/big.bin", b"again")  # the next put to that folder tidies it
    assert sorted(p.name for p in folder.iterdir()) == ["big.bin~blob"]
    assert await store.get("out/big.bin") == b"again"


def _age_sweeps(store: FileBlobStore) -> None:
    """Make every folder `store` swept due for its next sweep (as time passing would)."""
    for folder in store._swept:
        store._swept[folder] -= _files._SWEEP_EVERY


async def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    await store.put("a/x", b"1")
    mine = tmp_path / "a" / f".tmp-{_files._writer()}-abc"
    mine.write_bytes(b"half")  # another task of this (live) process is writing
    other_host = tmp_path / "a" / ".tmp-elsewhere:1:0-abc"
    other_host.write_bytes(b"half")  # a machine whose processes we cannot see
    await FileBlobStore(tmp_path).put("a/y", b"2")  # a first put to the folder sweeps it
    assert mine.exists() and other_host.exists()
    os.utime(other_host, (0, 0))  # a day old: abandoned
    _age_sweeps(store)
    await store.put("a/z", b"3")
    assert mine.exists() and not other_host.exists()


async def test_a_put_does_not_read_its_folder_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every put listed its folder (and stat'ed each temporary file) looking for leftovers:
    # a put cost more as the folder filled, 10,000 puts to one folder 50 million reads
    store = FileBlobStore(tmp_path)
    await store.put("runs/r/0", b"x")
    read: list[str] = []
    real = os.scandir

    def spy(path: Any = ".") -> Any:
        read.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    for i in range(1, 300):
        await store.put(f"runs/r/{i}", b"x")
    assert read == []
    await store.put("runs/other/0", b"x")  # a folder it makes holds no leftover to sweep
    await store.put("runs/other/1", b"x")
    assert read == []
    _age_sweeps(store)  # ten minutes on, the next put to a folder sweeps it once
    for i in range(3):
        await store.put(f"runs/r/{i}", b"y")
    assert read == [str(tmp_path / "runs" / "r")]
    assert len(await store.list("runs/r/")) == 300


async def test_a_long_running_store_sweeps_a_writer_killed_after_its_first_put(
    tmp_path: Path,
) -> None:
    # the store of a long-running worker swept the folder before another process died in
    # it: the leftover goes at its next sweep of that folder, not at its next put
    root = tmp_path / "blobs"
    store = FileBlobStore(root)
    await store.put("out/other.bin", b"mine")  # swept (made) now
    _kill_mid_put(tmp_path, root)
    folder = root / "out"
    assert [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    await store.put("out/other.bin", b"again")
    assert [p for p in folder.iterdir() if p.name.startswith(".tmp-")]  # not yet
    _age_sweeps(store)
    await store.put("out/other.bin", b"and again")
    assert sorted(p.name for p in folder.iterdir()) == ["big.bin~blob", "other.bin~blob"]
    assert await store.get("out/big.bin") == b"old" * 10


async def test_files_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    # mkstemp made every blob 0o600: another user of the group that shares the
    # database (a worker, the dashboard) could read the run but not its stage outputs
    old = os.umask(0o002)
    try:
        await FileBlobStore(tmp_path).put("a/b", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b~blob").stat().st_mode) == 0o664


async def test_the_folders_a_put_makes_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the key's own folder was fsynced: after a power cut a new folder's entry
    # (and with it a blob whose put had returned) could be gone
    synced: list[str] = []
    real = os.fsync

    def spy(fd: Any) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    await FileBlobStore(tmp_path / "blobs").put("a/b/c.bin", b"x")
    for folder in (tmp_path, tmp_path / "blobs", tmp_path / "blobs/a", tmp_path / "blobs/a/b"):
        assert str(folder) in synced


async def test_listing_a_prefix_reads_only_the_folder_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every list() (so every run's delete on prune) walked the whole store: 20 runs'
    # deletes among 5000 runs' files took 9.5 s, a prune of thousands of runs hours
    store = FileBlobStore(tmp_path)
    for run in ("r1", "r2", "r10"):
        await store.put(f"runs/{run}/stages/s/1/out.json", b"{}")
    read: list[str] = []
    real = os.scandir

    def spy(path: Any = ".") -> Any:
        read.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    assert await store.list("runs/r1/") == ["runs/r1/stages/s/1/out.json"]
    assert read and not [p for p in read if "r2" in p or "r10" in p]
    assert await store.list("runs/r1") == [
        "runs/r1/stages/s/1/out.json",
        "runs/r10/stages/s/1/out.json",
    ]
    assert await store.delete_prefix("runs/r1/") == 1
    assert await store.list() == ["runs/r10/stages/s/1/out.json", "runs/r2/stages/s/1/out.json"]
