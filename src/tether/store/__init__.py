"""The Store port, its adapters, and `open_store` which picks one by URL.

Adapters are imported lazily so that a SQLite user never needs a PostgreSQL
driver installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import InvalidArgumentError
from ._port import Store
from ._records import (
    AICallRow,
    AISpend,
    AIUsageRow,
    ApiTokenRow,
    Claimed,
    EndReason,
    EventRow,
    Fence,
    HeartbeatRow,
    Histogram,
    IdempotentAnswer,
    JobRow,
    JobStatus,
    LockOutcome,
    LockResult,
    LockRow,
    NewAICall,
    NewEvent,
    NewJob,
    NewRun,
    NewWait,
    OutboxRow,
    QueueDepth,
    QueueLimit,
    RunClaim,
    RunFilter,
    RunHistory,
    RunRow,
    RunStatus,
    ScheduleRow,
    StepRow,
    StepStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
    kept_attempt,
    kept_detail,
    run_settled,
)
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
    "DEFAULT_URL",
    "ENV_VAR",
    "AICallRow",
    "AISpend",
    "AIUsageRow",
    "ApiTokenRow",
    "Claimed",
    "Durability",
    "EndReason",
    "EventRow",
    "Fence",
    "HeartbeatRow",
    "Histogram",
    "IdempotentAnswer",
    "JobRow",
    "JobStatus",
    "LockOutcome",
    "LockResult",
    "LockRow",
    "NewAICall",
    "NewEvent",
    "NewJob",
    "NewRun",
    "NewWait",
    "OutboxRow",
    "PgConfig",
    "QueueDepth",
    "QueueLimit",
    "RunClaim",
    "RunFilter",
    "RunHistory",
    "RunRow",
    "RunStatus",
    "ScheduleRow",
    "StepRow",
    "StepStatus",
    "Store",
    "WaitKind",
    "WaitRow",
    "WaitStatus",
    "check_url",
    "kept_attempt",
    "kept_detail",
    "open_store",
    "parse_pg_url",
    "parse_sqlite_url",
    "redact",
    "resolve_url",
    "run_settled",
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
