"""The blob store port: bytes under a key, outside the run's record.

Stage outputs above a size threshold and artifacts live here; the record
keeps only their key. Keys are ``/``-separated paths of plain segments
(letters, digits, ``.``, ``_``, ``-``, ``:``, ``@``, ``#``, ``[``, ``]``);
a store may map them onto a file system, so ``..`` and empty segments are
refused everywhere, not only where they would escape a directory.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from ..errors import InvalidArgumentError

__all__ = ["BlobStore", "check_data", "check_folder", "check_key"]

_SEGMENT = re.compile(r"[A-Za-z0-9._:@#%\[\]=+-]{1,200}")


def check_key(key: object, *, prefix: bool = False) -> str:
    """`key` if it is a valid blob key (or, with `prefix`, a key prefix ending in ``/``)."""
    if not isinstance(key, str):
        raise InvalidArgumentError(f"a blob key is a str, got {type(key).__name__} {key!r}")
    parts = key.removesuffix("/").split("/") if prefix else key.split("/")
    if prefix and key == "":
        return key
    bad = [
        p
        for p in parts
        if p in ("", ".", "..") or p.startswith(".tmp-") or not _SEGMENT.fullmatch(p)
    ]
    if bad or len(key) > 1000:
        raise InvalidArgumentError(
            f"blob key {key!r} is not a plain path: use '/'-separated segments of letters, "
            "digits and . _ - : @ # % [ ] = + (no empty, '.' or '..' segment, none starting "
            "'.tmp-', which a file store keeps for its writes), at most 1000 characters; "
            "e.g. 'report.json' or 'pages/3.txt'"
        )
    return key


def check_folder(prefix: object) -> str:
    """`prefix` if it is one `delete_prefix` takes: a folder of keys (ending in ``/``),
    or ``""`` for all. ``runs/r1`` also matched ``runs/r10/...``: deleting one run's
    files took another's."""
    prefix = check_key(prefix, prefix=True)
    if prefix and not prefix.endswith("/"):
        raise InvalidArgumentError(
            f"delete_prefix({prefix!r}) would also delete the keys of every folder whose "
            f"name starts {prefix.rpartition('/')[2]!r}: name a folder, ending in '/' "
            f"(delete_prefix({prefix + '/'!r})), or delete one key with delete()"
        )
    return prefix


def check_data(data: object) -> bytes:
    """`data` as bytes, or a `TypeError` saying blobs hold bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
    return bytes(data)


@runtime_checkable
class BlobStore(Protocol):
    """Where artifacts and large outputs live. Each call is durable when it returns.

    Writing a key that exists replaces it. Deleting is only ever done after
    the transaction that stopped referring to the blob committed.
    """

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        ...

    async def has(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Delete `key`; False if it was not there."""
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """The keys starting with `prefix`, sorted."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with `prefix` (a path ending in ``/``); how many."""
        ...
