"""`DatabaseBlobStore`: blobs as rows of the run store's own database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from ..errors import InvalidArgumentError
from ._port import check_data, check_folder, check_key

__all__ = ["BlobRows", "DatabaseBlobStore"]

_VERBS = ("put_blob", "get_blob", "has_blob", "list_blobs", "delete_blobs", "delete_blob")
# the most a blob row holds: SQLite's longest value (PostgreSQL's bytea: 1 GiB)
MAX_BYTES = 1_000_000_000


class BlobRows(Protocol):
    """The store verbs this adapter needs (`tether.store.Store` has them)."""

    async def put_blob(self, key: str, body: bytes, at: datetime) -> None: ...
    async def get_blob(self, key: str) -> bytes | None: ...
    async def has_blob(self, key: str) -> bool: ...
    async def list_blobs(self, prefix: str) -> list[tuple[str, int]]: ...
    async def delete_blobs(self, prefix: str) -> int: ...
    async def delete_blob(self, key: str) -> bool: ...


class DatabaseBlobStore:
    """Blobs in the ``blobs`` table: on PostgreSQL, machines that share the database
    need no shared disk. Each call is its own transaction, never the step's."""

    def __init__(
        self, store: BlobRows, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        missing = [v for v in _VERBS if not callable(getattr(store, v, None))]
        if missing:  # a URL was taken, then the first put raised a bare AttributeError
            raise InvalidArgumentError(  # the value is not shown: a URL may hold a password
                f"DatabaseBlobStore(store) takes a run store, got a {type(store).__name__} "
                f"(it has no {', '.join(missing)}); pass the store itself, e.g. "
                "DatabaseBlobStore(tether.store.open_store('postgresql://host/db')) or "
                "DatabaseBlobStore(app.store)"
            )
        self._store = store
        self._now = clock

    def __repr__(self) -> str:
        return f"DatabaseBlobStore({self._store!r})"

    async def put(self, key: str, data: bytes) -> None:
        key, body = check_key(key), check_data(data)
        if len(body) > MAX_BYTES:
            raise InvalidArgumentError(
                f"blob {key!r} is {len(body):,} bytes: a blob of {self!r} holds at most "
                f"{MAX_BYTES:,} (a database value's limit); keep files this large in a "
                "FileBlobStore on a disk the workers share"
            )
        await self._store.put_blob(key, body, self._now())

    async def get(self, key: str) -> bytes | None:
        return await self._store.get_blob(check_key(key))

    async def has(self, key: str) -> bool:
        return await self._store.has_blob(check_key(key))

    async def delete(self, key: str) -> bool:
        return await self._store.delete_blob(check_key(key))

    async def list(self, prefix: str = "") -> list[str]:
        return [k for k, _ in await self._store.list_blobs(check_key(prefix, prefix=True))]

    async def delete_prefix(self, prefix: str) -> int:
        return await self._store.delete_blobs(check_folder(prefix))
