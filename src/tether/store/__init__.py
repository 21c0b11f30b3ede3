"""The Store port, its adapters, and `open_store` which picks one by URL.

Adapters are imported lazily so that a SQLite user never needs a PostgreSQL
driver installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import InvalidArgumentError
from . import _records
from ._port import Store
from ._records import *  # noqa: F403 (every record type: its __all__ is ours)
from ._url import (
    DEFAULT_URL,
    ENV_VAR,
    Durability,
    PgConfig,
    check_url,
    parse_pg_url,
    parse_sqlite_url,
    redact,
    resolve_url,
)

__all__ = [
    *_records.__all__,
    "DEFAULT_URL",
    "ENV_VAR",
    "Durability",
    "PgConfig",
    "Store",
    "check_url",
    "open_store",
    "parse_pg_url",
    "parse_sqlite_url",
    "redact",
    "resolve_url",
]


def open_store(url: str | None = None, *, durability: str | Durability | None = None) -> Store:
    """The store for `url` (else $TETHER_DATABASE_URL, else ``sqlite:///.tether/tether.db``).

    The store connects lazily, on first use.
    """
    resolved = resolve_url(url)
    scheme = urlsplit(resolved).scheme
    if scheme == "sqlite":
        from ._sqlite import SQLiteStore

        return SQLiteStore(resolved, durability=durability)
    if scheme in ("postgresql", "postgres"):
        try:
            from ._postgres import PostgresStore
        except ImportError as exc:  # the optional driver is missing
            raise InvalidArgumentError(
                f"{scheme}:// URLs need the PostgreSQL driver: pip install 'tether[postgres]' ({exc})"
            ) from exc
        store: Store = PostgresStore(resolved, durability=durability)
        return store
    # redacted: a URL of another form (SQLAlchemy's postgresql+psycopg://) carried a
    # password, and this message showed it in clear
    raise InvalidArgumentError(
        f"unsupported database URL {redact(resolved)!r}: use sqlite:///path.db, "
        "sqlite:///:memory: or postgresql://user@host:port/db"
    )
