"""Blob verbs: the rows behind `tether.blobs.DatabaseBlobStore`.

Each verb is its own short transaction and never runs inside another: a
blob is written before the record that names it, and deleted only after
the record that dropped it committed, so a rollback never loses data.

The blobs under a prefix are found as a range of the key's index (keys
compare byte by byte on both dialects: see migration 0017), never by a
test of every row: deleting one run's files must not read every other run's.
"""

from __future__ import annotations

from datetime import datetime

from ._base import StoreBase, Tx

__all__ = ["BlobVerbs", "prefix_range"]

_LAST = "\U0010ffff"  # the greatest code point: no key continues a prefix past it


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The keys starting with `prefix` as a range: those from the first string up to,
    not including, the second (None: no upper bound), compared by code point (the
    order of their UTF-8 bytes, as PostgreSQL's "C" and SQLite's BINARY compare).
    No character is special: ``%``, ``_`` and ``\\`` are only themselves."""
    head = prefix.rstrip(_LAST)
    if not head:
        return prefix, None
    after = ord(head[-1]) + 1
    if 0xD800 <= after <= 0xDFFF:  # surrogates are no characters of a UTF-8 string
        after = 0xE000
    return prefix, head[:-1] + chr(after)


class BlobVerbs(StoreBase):
    async def put_blob(self, key: str, body: bytes, at: datetime) -> None:
        """Write blob `key` (replacing one of the same key), in its own transaction."""

        await self._tx("write", lambda tx: tx.write_blob(key, body, at))

    async def get_blob(self, key: str) -> bytes | None:
        """The body of blob `key`, or None, in one snapshot: read into the bytes returned,
        not held twice (a read of N bytes grew the process by 3 N on PostgreSQL, by 2 N
        on SQLite; see each dialect's `Tx.read_blob`)."""

        return await self._tx("read", lambda tx: tx.read_blob(key))

    async def has_blob(self, key: str) -> bool:
        """Whether blob `key` is there, its body unread (it was read whole to say so). The
        range from `key` to `key` + U+0001 holds `key` and keys that go on with a NUL."""

        async def go(tx: Tx) -> bool:
            rows = await tx.all("list_blobs", lo=key, hi=key + "\x01")
            return any(r[0] == key for r in rows)

        return await self._tx("read", go)

    async def list_blobs(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every blob whose key starts with `prefix`, by key (byte order)."""
        lo, hi = prefix_range(prefix)

        async def go(tx: Tx) -> list[tuple[str, int]]:
            rows = await (tx.all("list_all_blobs") if hi is None
                          else tx.all("list_blobs", lo=lo, hi=hi))  # fmt: skip
            return [(r[0], int(r[1])) for r in rows]

        return await self._tx("read", go)

    async def delete_blobs(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix`; how many."""
        lo, hi = prefix_range(prefix)
        if hi is None:
            return await self._execute("write", "delete_all_blobs")
        return await self._execute("write", "delete_blobs", lo=lo, hi=hi)

    async def delete_blob(self, key: str) -> bool:
        """Delete blob `key`; False if there was none."""

        return await self._execute("write", "delete_blob", key=key) == 1
