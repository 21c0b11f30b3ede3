"""`FileBlobStore`: blobs as files under a directory (``.tether/blobs`` by default)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import time
from pathlib import Path

from .._owners import new_owner, owner_is_dead
from ..errors import InvalidArgumentError
from ._port import check_data, check_folder, check_key

__all__ = ["FileBlobStore"]

_TMP = ".tmp-"
_FILE = "~blob"  # the end of a blob's file name: '~' is in no key, so in no folder's name
_WRITERS: dict[int, str] = {}  # pid -> the owner name in this process's temporary files
_STALE_SECONDS = 24 * 3600  # a temporary file of another machine this old is abandoned
# a folder is swept of abandoned temporary files at a store's first put to it, then at
# most once per this many seconds: a put costs the same however full its folder is
_SWEEP_EVERY = 600.0
_SWEPT_MAX = 4096  # folders remembered as swept (forgotten ones are swept again)
_TRIES = 20  # a put whose folder a delete removes as it writes makes it again, this often


class FileBlobStore:
    """Blobs as files: key ``a/b.json`` is ``<root>/a/b.json~blob``.

    The ``~blob`` ending (``~`` is in no key) keeps a key's file apart from the
    folder of the keys under it: ``report`` and ``report/p1`` are both blobs, as
    in every other store. Files of the layout before it (``<root>/a/b.json``) are
    read, listed and deleted as their keys; a put replaces one with its new file.

    A put writes a temporary file, fsyncs it and renames it over the key, so a
    reader sees the old bytes or the new ones, never a torn file, and a crash
    (even a power cut) after `put` returned loses nothing: the folders it made
    are fsynced into their parents too. Files get the mode the process's umask
    gives (as the database file does), not a private one. For several machines
    without a shared disk use `DatabaseBlobStore` on PostgreSQL.

    A writer killed mid-put leaves its temporary file; a put removes those of
    dead writers from its folder, not at every put (it read the whole folder
    each time, so a put cost more as the folder filled) but at the store's first
    put to that folder and then every ten minutes at most; `delete_prefix` removes
    them with the folder it empties.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        if not isinstance(root, str | os.PathLike) or not os.fspath(root):
            # "" was the current directory: blobs landed wherever the process started
            raise InvalidArgumentError(
                f"FileBlobStore(root) takes the folder to keep blobs in, got {root!r}; "
                "e.g. FileBlobStore('/var/lib/app/blobs')"
            )
        if os.fspath(root).startswith("~"):  # blobs went to a folder '~' where it started
            raise InvalidArgumentError(
                f"FileBlobStore({os.fspath(root)!r}): a path here does not expand ~ (blobs "
                f"would go to a folder named {Path(root).parts[0]!r} in the working "
                f"directory); write the full path, e.g. "
                f"FileBlobStore({os.path.expanduser(root)!r})"
            )
        self.root = Path(root)
        self._swept: dict[Path, float] = {}  # folder -> when this store last swept it

    def _sweep_due(self, folder: Path) -> bool:
        """Whether a put to `folder` sweeps it (noted as swept now if so)."""
        now = time.monotonic()
        last = self._swept.get(folder)
        if last is not None and now - last < _SWEEP_EVERY:
            return False
        if len(self._swept) >= _SWEPT_MAX:
            self._swept = {f: t for f, t in self._swept.items() if now - t < _SWEEP_EVERY}
            if len(self._swept) >= _SWEPT_MAX:
                self._swept.clear()
        self._swept[folder] = now
        return True

    def _path(self, key: str) -> Path:
        """The file of `key` (a folder never ends with `_FILE`, so is never one)."""
        return _new(self._legacy(key))

    def _legacy(self, key: str) -> Path:
        """Where `key` was kept before `_FILE`: a key 'a' stood where 'a/b' needs a folder."""
        return self.root.joinpath(*check_key(key).split("/"))

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        body = check_data(data)
        try:
            await asyncio.to_thread(_put, self.root, path, body, self._sweep_due(path.parent))
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            blocked = _file_above(self.root)
            if blocked is not None:  # not a clash of keys: no key can be stored here
                raise InvalidArgumentError(
                    f"{self!r} cannot keep blob {key!r}: {str(blocked)!r} is a file, not a "
                    "folder; give the store a folder path (one that is not there is made)"
                ) from None
            raise InvalidArgumentError(
                f"{self!r} cannot keep blob {key!r} at {str(path)!r}: a folder stands "
                "there, or a file no blob of the store (put there by hand) stands where "
                "one of its folders must be; move it out of the store's folder"
            ) from None
        except OSError as e:
            mended = self._put_error(e, key, len(body), path)
            if mended is None:
                raise
            raise mended from e

    def _put_error(self, e: OSError, key: str, size: int, path: Path) -> OSError | None:
        """`e`, which a put of `key` raised, saying which store and how to mend it
        (None: `e` says enough as it is)."""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            # the bare "[Errno 28] No space left on device" named no file: which disk
            # (the database's or the blobs') was full could not be told
            return OSError(
                e.errno,
                f"{self!r} cannot keep blob {key!r} ({size:,} bytes): the disk of "
                f"{str(self.root)!r} is full or over quota ({e.strerror}); free space "
                "there or give the store a folder on a larger disk",
                str(path),
            )
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            # a bare "[Errno 13] Permission denied: '/srv/blobs'" did not say it was
            # the blob store, nor that reads had worked and only writes could not
            at = e.filename if e.filename is not None else str(path)
            mend = ("remount it read-write" if e.errno == errno.EROFS
                    else f"let {_user()} write there")  # fmt: skip
            return type(e)(
                e.errno,
                f"{self!r} cannot keep blob {key!r}: it may not write {str(at)!r} "
                f"({e.strerror}); {mend}, or give the store a folder this process may "
                "write (App(blobs=FileBlobStore(...)))",
                str(path),
            )
        return None

    async def get(self, key: str) -> bytes | None:
        # the new file again after the old one: a put may have moved it meanwhile
        for path in (self._path(key), self._legacy(key), self._path(key)):
            try:
                return await asyncio.to_thread(path.read_bytes)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
        return None

    async def has(self, key: str) -> bool:
        return any(p.is_file() for p in (self._path(key), self._legacy(key), self._path(key)))

    async def delete(self, key: str) -> bool:
        found = [_unlink(p) for p in (self._path(key), self._legacy(key))]
        return any(found)

    async def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        return await asyncio.to_thread(_keys, self.root, prefix)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list(check_folder(prefix))
        for key in keys:
            await self.delete(key)
        if prefix:  # a folder: remove it too, with temporary files left in it
            folder = self.root.joinpath(*prefix.strip("/").split("/"))
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return len(keys)


def _user() -> str:
    """Who this process writes as (whom a folder's permissions are checked for)."""
    geteuid = getattr(os, "geteuid", None)
    return f"user id {geteuid()}" if geteuid is not None else "this process's user"


def _writer() -> str:
    """Who writes this process's temporary files (a forked child is a writer of its
    own): a process killed mid-put leaves one, which a later sweep of its folder
    removes once that writer is known to be dead."""
    pid = os.getpid()
    found = _WRITERS.get(pid)
    if found is None:
        found = _WRITERS[pid] = new_owner()
    return found


def _put(root: Path, path: Path, data: bytes, sweep: bool) -> None:
    """Write `data` at `path` through a temporary file renamed over it, durably;
    with `sweep`, first remove the abandoned temporary files of its folder. A blob
    of the old layout standing where a folder of `path` must be is moved to its file.

    A delete of its folder under way meanwhile (`delete_prefix`: a prune, a rerun's
    cleanup) can remove the folder, or the temporary file, from under the put: it
    makes them again and writes again, coming after the delete (it failed with a
    bare FileNotFoundError, or FileExistsError when the folder went between mkdir's
    try and its check). A folder gone once the rename is done was deleted after
    the put, which is then done: the delete stands."""
    made: list[Path] = []  # folders this put made, deepest first, over its tries
    for attempt in range(_TRIES):
        try:
            fresh = _make_folders(path.parent)
            made = fresh + [f for f in made if f not in fresh]
            if sweep and not fresh:  # a folder this put made holds none
                _sweep(path.parent)
            sweep = False
            _write(path, data)
            break
        except FileNotFoundError:
            if attempt == _TRIES - 1:
                raise
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            # mkdir saw the folder, then a delete removed it before mkdir checked it:
            # a race, not a clash, unless a file really stands where a folder must
            if (_clashes(path) and not _move_legacy(root, path)) or attempt == _TRIES - 1:
                raise
    try:
        _fsync_folder(path.parent)  # the rename itself survives a power cut
        for folder in made:  # ... and so do the folders it is in that this put made
            _fsync_folder(folder.parent)
    except FileNotFoundError:
        pass  # deleted since it was written: nothing of it left to keep
    # a file of the layout before `_FILE` holds the key's old bytes: gone, never read again
    _unlink(path.with_name(path.name.removesuffix(_FILE)))


def _write(path: Path, data: bytes) -> None:
    tmp = path.parent / f"{_TMP}{_writer()}-{secrets.token_hex(6)}"
    # 0o666 under the umask, as open() gives: mkstemp's 0o600 would hide the blobs
    # from the other users (workers, the dashboard) that can read the database
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
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


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones that were missing, deepest first."""
    missing: list[Path] = []
    at = folder
    while not at.is_dir():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _new(legacy: Path) -> Path:
    """The file of the key whose file was `legacy` before `_FILE`."""
    return legacy.with_name(legacy.name + _FILE)


def _unlink(path: Path) -> bool:
    """Remove the file at `path`, never a folder (a key's legacy path may be one)."""
    if not path.is_file():
        return False
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _move_legacy(root: Path, path: Path) -> bool:
    """Move the blobs of the old layout that stand where folders of `path` must be
    (below `root`) to their files; whether any was there. One whose new file is
    there already is older than it (a put writes the new file, then removes the
    old), so it is removed."""
    moved = False
    for folder in reversed(path.relative_to(root).parents[:-1]):
        at = root / folder
        if at.is_file():
            with contextlib.suppress(FileNotFoundError):
                if _new(at).is_file():
                    at.unlink()
                else:
                    os.replace(at, _new(at))
                moved = True
    return moved


def _clashes(path: Path) -> bool:
    """Whether `path` is a folder, or one of the folders it must be in is a file."""
    if path.is_dir():
        return True
    return any(p.exists() and not p.is_dir() for p in path.parents)


def _file_above(root: Path) -> Path | None:
    """The file standing at `root` or at one of its parents, where a folder must be."""
    return next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep(folder: Path) -> None:
    """Remove the temporary files in `folder` that a writer killed mid-put left behind:
    those of a process of this machine that is gone, or a day old. Never a live
    writer's: its rename would fail."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(_TMP) and _abandoned(entry):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _abandoned(entry: os.DirEntry[str]) -> bool:
    writer = entry.name[len(_TMP) :].rpartition("-")[0]
    if writer and owner_is_dead(writer):
        return True
    try:
        age = os.path.getmtime(entry.path)
    except OSError:
        return False
    return time.time() - age > _STALE_SECONDS


def _keys(root: Path, prefix: str) -> list[str]:
    """The keys under `root` starting with `prefix`. Only the folder the prefix names is
    walked: deleting one run's files must not read every other run's. A file whose path
    is no key (a temporary file, an editor's ``notes.txt~``) is left out: listed, it was
    a key that `get` and `delete` refuse, and `delete_prefix` failed on it. A file of
    the old layout is its key (once, beside its new file a crashed put left)."""
    head, _, _ = prefix.rpartition("/")
    start = root.joinpath(*head.split("/")) if head else root
    if not start.is_dir():
        return []
    keys: list[str] = []
    for folder, _dirs, files in os.walk(start):
        rel = Path(folder).relative_to(root).as_posix()
        base = "" if rel == "." else f"{rel}/"
        keys.extend(f"{base}{name.removesuffix(_FILE)}" for name in files)
    return sorted({k for k in keys if k.startswith(prefix) and _is_key(k)})


def _is_key(path: str) -> bool:
    try:
        check_key(path)
    except InvalidArgumentError:
        return False
    return True
