"""`MemoryBlobStore`: blobs in a dict, for tests."""

from __future__ import annotations

from ._port import check_data, check_folder, check_key

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore:
    """Blobs in memory (lost with the process): for tests of code using artifacts."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes) -> None:
        self.data[check_key(key)] = check_data(data)

    async def get(self, key: str) -> bytes | None:
        return self.data.get(check_key(key))

    async def has(self, key: str) -> bool:
        return check_key(key) in self.data

    async def delete(self, key: str) -> bool:
        return self.data.pop(check_key(key), None) is not None

    async def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, prefix=True)
        return sorted(k for k in self.data if k.startswith(prefix))

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list(check_folder(prefix))
        for k in keys:
            del self.data[k]
        return len(keys)
