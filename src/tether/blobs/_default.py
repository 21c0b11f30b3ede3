"""The blob store an App gets when it is given none: it follows the run store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ._database import DatabaseBlobStore
from ._files import FileBlobStore
from ._memory import MemoryBlobStore
from ._port import BlobStore

__all__ = ["default_blobs"]


def default_blobs(store: Any, clock: Any) -> BlobStore:
    """Files in ``blobs/`` beside a SQLite database file (``.tether/blobs`` for the
    default ``.tether/tether.db``); memory beside an in-memory database; the database
    itself otherwise (PostgreSQL: machines sharing it need no shared disk)."""
    now: Callable[[], datetime] = clock.now
    if getattr(store, "dialect", None) == "sqlite":
        path = str(getattr(getattr(store, "config", None), "path", ":memory:"))
        if path == ":memory:" or path.startswith("file::memory:"):
            return MemoryBlobStore()
        return FileBlobStore(Path(path).parent / "blobs")
    return DatabaseBlobStore(store, clock=now)
