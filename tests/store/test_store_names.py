"""The store's public names are pinned: `tether.store` gathers its private modules'
`__all__`, so a name added to (or dropped from) one of them shows here."""

from __future__ import annotations

import tether.store

# fmt: off
EXPECTED = frozenset({
    "AICallRow", "AISpend", "AIUsageRow", "ApiTokenRow", "Claimed", "DEFAULT_URL",
    "Durability", "ENV_VAR", "EndReason", "EventRow", "Fence", "HeartbeatRow",
    "Histogram", "IdempotentAnswer", "JobRow", "JobStatus", "LockOutcome", "LockResult",
    "LockRow", "NewAICall", "NewEvent", "NewJob", "NewRun", "NewWait", "OutboxRow",
    "PgConfig", "QueueDepth", "QueueLimit", "RunClaim", "RunFilter", "RunHistory",
    "RunRow", "RunStatus", "ScheduleRow", "StepRow", "StepStatus", "Store", "WaitKind",
    "WaitRow", "WaitStatus", "check_url", "kept_attempt", "kept_detail", "open_store",
    "parse_pg_url", "parse_sqlite_url", "redact", "resolve_url", "run_settled",
})
# fmt: on


def test_the_store_exports_exactly_its_pinned_names() -> None:
    assert set(tether.store.__all__) == EXPECTED
    assert len(tether.store.__all__) == len(EXPECTED)  # none listed twice


def test_every_exported_name_is_bound_in_the_store() -> None:
    missing = [name for name in tether.store.__all__ if not hasattr(tether.store, name)]
    assert missing == []


def test_the_record_types_are_the_store_modules_own() -> None:
    from tether.store import _records

    for name in _records.__all__:
        assert getattr(tether.store, name) is getattr(_records, name)
