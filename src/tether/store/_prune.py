"""Retention: find finished runs old enough to go, and delete them with their rows.

Plain SQL, one function per dialect, called from thin methods at the end of
`QueueOps` (SQLite) and `PgQueueOps` (PostgreSQL). Only terminal runs are
ever deleted: the delete re-checks the status inside its own transaction, so
a run that was resumed (rerun) between listing and deleting is skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._records import RunStatus

if TYPE_CHECKING:
    from ._pg_base import Conn

__all__ = [
    "TERMINAL_STATUSES",
    "pg_delete_runs",
    "pg_prunable_runs",
    "sqlite_delete_runs",
    "sqlite_prunable_runs",
    "terminal_statuses",
]

TERMINAL_STATUSES = tuple(s.value for s in RunStatus if s.terminal)

# the rows that belong to a run, by the column naming it (inbox: signals kept for it)
_OWNED = (
    ("steps", "run_id"),
    ("events", "run_id"),  # the outbox lives in the events table
    ("heartbeats", "run_id"),
    ("waitpoints", "run_id"),
    ("jobs", "run_id"),
    ("locks", "run_id"),
    ("inbox", "target"),
)


def terminal_statuses(statuses: Sequence[RunStatus] | None) -> list[str]:
    """The statuses to prune: the terminal ones asked for (all terminal ones if None)."""
    if statuses is None:
        return list(TERMINAL_STATUSES)
    return [RunStatus(s).value for s in statuses if RunStatus(s).terminal]


def sqlite_prunable_runs(
    conn: sqlite3.Connection, finished_before: float, statuses: list[str], limit: int
) -> list[str]:
    if not statuses:
        return []
    marks = ", ".join("?" * len(statuses))
    rows = conn.execute(
        f"SELECT id FROM runs WHERE status IN ({marks}) "
        "AND COALESCE(finished_at, updated_at) < ? "
        "ORDER BY COALESCE(finished_at, updated_at), id LIMIT ?",
        (*statuses, finished_before, limit),
    ).fetchall()
    return [r[0] for r in rows]


def sqlite_delete_runs(conn: sqlite3.Connection, run_ids: list[str]) -> int:
    """Delete the terminal runs among `run_ids` (inside the caller's transaction)."""
    if not run_ids:
        return 0
    marks = ", ".join("?" * len(run_ids))
    done = ", ".join("?" * len(TERMINAL_STATUSES))
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT id FROM runs WHERE id IN ({marks}) AND status IN ({done})",
            (*run_ids, *TERMINAL_STATUSES),
        ).fetchall()
    ]
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    for table, column in _OWNED:
        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
    return conn.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids).rowcount


async def pg_prunable_runs(
    conn: Conn, finished_before: Any, statuses: list[str], limit: int
) -> list[str]:
    if not statuses:
        return []
    cur = await conn.execute(
        "SELECT id FROM runs WHERE status = ANY(%s) "
        "AND COALESCE(finished_at, updated_at) < %s "
        "ORDER BY COALESCE(finished_at, updated_at), id LIMIT %s",
        (statuses, finished_before, limit),
    )
    return [r[0] for r in await cur.fetchall()]


async def pg_delete_runs(conn: Conn, run_ids: list[str]) -> int:
    """Delete the terminal runs among `run_ids` (inside the caller's transaction)."""
    if not run_ids:
        return 0
    cur = await conn.execute(
        "SELECT id FROM runs WHERE id = ANY(%s) AND status = ANY(%s) FOR UPDATE",
        (run_ids, list(TERMINAL_STATUSES)),
    )
    ids = [r[0] for r in await cur.fetchall()]
    if not ids:
        return 0
    for table, column in _OWNED:
        await conn.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", (ids,))
    cur = await conn.execute("DELETE FROM runs WHERE id = ANY(%s)", (ids,))
    return cur.rowcount
