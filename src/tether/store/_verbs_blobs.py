"""Blob verbs: the rows behind `tether.blobs.DatabaseBlobStore`.

Each verb is its own short transaction and never runs inside another: a
blob is written before the record that names it, and deleted only after
the record that dropped it committed, so a rollback never loses data.
"""

from __future__ import annotations

from datetime import datetime

from ._base import StoreBase, Tx

__all__ = ["BlobVerbs"]


class BlobVerbs(StoreBase):
    async def put_blob(self, key: str, body: bytes, at: datetime) -> None:
        """Write blob `key` (replacing one of the same key), in its own transaction."""

        await self._execute("write", "put_blob", key=key, body=body, size=len(body), at=at)

    async def get_blob(self, key: str) -> bytes | None:
        """The body of blob `key`, or None."""

        async def go(tx: Tx) -> bytes | None:
            row = await tx.one("get_blob", key=key)
            return None if row is None else bytes(row[0])

        return await self._tx("read", go)

    async def list_blobs(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every blob whose key starts with `prefix`, by key."""

        async def go(tx: Tx) -> list[tuple[str, int]]:
            return [
                (r[0], int(r[1])) for r in await tx.all("list_blobs", prefix=prefix, n=len(prefix))
            ]

        return await self._tx("read", go)

    async def delete_blobs(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix`; how many."""

        return await self._execute("write", "delete_blobs", prefix=prefix, n=len(prefix))

    async def delete_blob(self, key: str) -> bool:
        """Delete blob `key`; False if there was none."""

        return await self._execute("write", "delete_blob", key=key) == 1
