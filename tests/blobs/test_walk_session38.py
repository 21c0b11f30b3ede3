"""A new user's mistakes with blob stores, told at once and plainly: a URL where a
store is wanted, a root of ``~/...``, and a root the process may read but not write."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import InvalidArgumentError
from tether.blobs import DatabaseBlobStore, FileBlobStore

from .test_files_full import tmpfs


@pytest.mark.parametrize("given", ["postgresql://me:s3cret@127.0.0.1/test", None])
def test_a_database_store_given_no_store_says_to_pass_one(given: object) -> None:
    # it was taken, and the first put raised "'str' object has no attribute 'put_blob'"
    with pytest.raises(InvalidArgumentError, match="takes a run store") as caught:
        DatabaseBlobStore(given)  # type: ignore[arg-type]
    assert "open_store(" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_file_store_root_of_tilde_is_refused_not_made_where_the_process_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgumentError, match="does not expand ~") as caught:
        FileBlobStore("~/blobs")
    assert str(Path("~/blobs").expanduser()) in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no folder named '~' was made


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs: a disk no write reaches."""
    with tmpfs(tmp_path, "ro,") as disk:
        yield disk


async def test_a_put_to_a_read_only_disk_names_the_store_the_key_and_the_mend(
    read_only_disk: Path,
) -> None:
    # it was a bare "[Errno 30] Read-only file system: '.../blobs'", naming no store
    store = FileBlobStore(read_only_disk / "blobs")
    assert await store.get("runs/r1/out.json") is None  # reading it is no error
    assert await store.list() == []
    with pytest.raises(OSError) as caught:
        await store.put("runs/r1/out.json", b"{}")
    assert caught.value.errno == errno.EROFS
    message = str(caught.value)
    assert repr(store) in message and "'runs/r1/out.json'" in message
    assert "remount it read-write" in message
