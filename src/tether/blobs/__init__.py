"""Blob stores: where artifacts and large stage outputs live (`BlobStore` and adapters).

The default follows the run store: files beside a SQLite database
(``.tether/blobs``), the database itself on PostgreSQL.
"""

from ._database import DatabaseBlobStore
from ._default import default_blobs
from ._files import FileBlobStore
from ._memory import MemoryBlobStore
from ._port import BlobStore, check_key

__all__ = [
    "BlobStore",
    "DatabaseBlobStore",
    "FileBlobStore",
    "MemoryBlobStore",
    "check_key",
    "default_blobs",
]
