"""`FileBlobStore`: blobs as files under a directory (``.tether/blobs`` by default)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InvalidArgumentError
from ._port import check_data, check_key

__all__ = ["FileBlobStore"]


class FileBlobStore:
    """Blobs as files: key ``a/b.json`` is ``<root>/a/b.json``.

    A put writes a temporary file, fsyncs it and renames it over the key, so a
    reader sees the old bytes or the new ones, never a torn file, and a crash
    after `put` returned loses nothing. For several machines without a shared
    disk use `DatabaseBlobStore` on PostgreSQL.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._put, path, check_data(data))
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise InvalidArgumentError(
                f"blob key {key!r} cannot be a file of {self!r}: a file cannot also be a "
                "folder, and one of the keys 'a' and 'a/b' is stored already; name them "
                "apart (e.g. 'report.txt' and 'report/p1.txt')"
            ) from None

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself survives a power cut
        finally:
            os.close(dfd)

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def has(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return True

    async def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        return await asyncio.to_thread(_keys, self.root, prefix)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list(prefix)
        for key in keys:
            await self.delete(key)
        if prefix.endswith("/") and prefix != "/":
            folder = self.root.joinpath(*prefix.strip("/").split("/"))
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return len(keys)


def _keys(root: Path, prefix: str) -> list[str]:
    """The keys under `root` starting with `prefix` (temporary files left out)."""
    if not root.is_dir():
        return []
    keys = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".tmp-")
    ]
    return sorted(k for k in keys if k.startswith(prefix))
