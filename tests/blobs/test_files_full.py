"""A put to a full disk: an error that names the store, the key and the folder (the
bare ENOSPC named no file), and the old bytes of the key still read back."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.blobs import FileBlobStore


@contextlib.contextmanager
def tmpfs(tmp_path: Path, options: str) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted with `options` at ``tmp_path/disk`` (needs the right to
    mount: skipped without it), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options}size=64k", "tmpfs", str(disk)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a disk that really fills."""
    with tmpfs(tmp_path, "") as disk:
        yield disk


async def test_a_put_to_a_full_disk_says_which_store_and_key(small_disk: Path) -> None:
    blobs = FileBlobStore(small_disk / "blobs")
    await blobs.put("runs/r1/out.bin", b"old")
    with pytest.raises(OSError) as caught:
        await blobs.put("runs/r1/out.bin", os.urandom(1 << 20))
    assert caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert "'runs/r1/out.bin'" in message and str(small_disk / "blobs") in message
    assert await blobs.get("runs/r1/out.bin") == b"old"
    assert os.listdir(small_disk / "blobs" / "runs" / "r1") == ["out.bin~blob"]
