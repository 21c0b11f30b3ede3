"""The SQLite adapter, part two: waitpoints, the inbox, cancellation."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..errors import (
    InvalidArgumentError,
    RunFinishedError,
    RunNotFoundError,
    TokenNotFoundError,
)
from ._match import matches
from ._records import (
    Fence,
    NewEvent,
    NewWait,
    RunStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
)
from ._sqlite_base import (
    _TERMINAL,
    _WAIT_COLS,
    SQLiteBase,
    _outcome,
    _ts,
    _wait,
)

__all__ = ["WaitOps"]


class WaitOps(SQLiteBase):
    """Waitpoint verbs of `SQLiteStore`."""

    def _try_resolve(self, conn: sqlite3.Connection, w: WaitRow, at: float) -> WaitRow:
        """Resolve a fresh pending waitpoint from what already arrived, if anything did."""
        payload: str | None = None
        inbox_id: int | None = None
        if w.kind is WaitKind.SIGNAL:
            hit = conn.execute(
                "SELECT id, payload FROM inbox WHERE kind = 'signal' AND name = ? AND target = ? "
                "AND consumed_by IS NULL AND expires_at > ? ORDER BY id LIMIT 1",
                (w.name, w.workflow_id, at),
            ).fetchone()
            if hit is None:
                return w
            inbox_id, payload = hit
            conn.execute("UPDATE inbox SET consumed_by = ? WHERE id = ?", (w.id, inbox_id))
        elif w.kind is WaitKind.EVENT:
            created = conn.execute(
                "SELECT created_at FROM runs WHERE id = ?", (w.workflow_id,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT id, payload FROM inbox WHERE kind = 'event' AND name = ? "
                "AND created_at >= ? AND expires_at > ? AND id NOT IN "
                "(SELECT inbox_id FROM waitpoints WHERE run_id = ? AND inbox_id IS NOT NULL) "
                "ORDER BY id",
                (w.name, created, at, w.workflow_id),
            )
            for iid, body in rows:
                if matches(w.match, body):
                    inbox_id, payload = iid, body
                    break
            else:
                return w
        elif w.kind is WaitKind.RUN:
            child = conn.execute(
                "SELECT status, output, error FROM runs WHERE id = ?", (w.name,)
            ).fetchone()
            if child is None or not RunStatus(child[0]).terminal:
                return w
            payload = _outcome(child[0], child[1], child[2])
        else:
            return w
        row = conn.execute(
            "UPDATE waitpoints SET status = 'resolved', payload = ?, inbox_id = ?, "
            f"resolved_at = ? WHERE id = ? RETURNING {_WAIT_COLS}",
            (payload, inbox_id, at, w.id),
        ).fetchone()
        return _wait(row)

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> WaitRow:
            def tx() -> WaitRow:
                found = conn.execute(
                    f"SELECT {_WAIT_COLS} FROM waitpoints WHERE run_id = ? AND wait_key = ?",
                    (fence.workflow_id, wait.key),
                ).fetchone()
                if found is not None:
                    existing = _wait(found)
                    if existing.status is WaitStatus.PENDING:
                        if existing.due_at is None and wait.due_at is not None:
                            # a timeout given at the wait (a token made without one)
                            conn.execute(
                                "UPDATE waitpoints SET due_at = ? WHERE id = ?",
                                (_ts(wait.due_at), existing.id),
                            )
                            existing = replace(existing, due_at=wait.due_at)
                        return self._try_resolve(conn, existing, ts)
                    return existing
                self._events(conn, fence, [NewEvent("wait.registered", wait.key)], ts)
                row = conn.execute(
                    "INSERT INTO waitpoints (id, run_id, wait_key, kind, name, match, status, "
                    "due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
                    f"RETURNING {_WAIT_COLS}",
                    (
                        wait.wait_id or uuid.uuid4().hex,
                        fence.workflow_id,
                        wait.key,
                        wait.kind.value,
                        wait.name,
                        wait.match,
                        None if wait.due_at is None else _ts(wait.due_at),
                        ts,
                    ),
                ).fetchone()
                return self._try_resolve(conn, _wait(row), ts)

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def list_waits(self, workflow_id: str) -> list[WaitRow]:
        def go(conn: sqlite3.Connection) -> list[WaitRow]:
            rows = conn.execute(
                f"SELECT {_WAIT_COLS} FROM waitpoints WHERE run_id = ? ORDER BY created_at, wait_key",
                (workflow_id,),
            )
            return [_wait(r) for r in rows]

        return await self._call(go)

    async def park_run(
        self, fence: Fence, keys: Sequence[str], *, compute_seconds: float, at: datetime
    ) -> bool:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> bool:
            def tx() -> bool:
                marks = ",".join("?" * len(keys))
                ready = conn.execute(
                    f"SELECT 1 FROM waitpoints WHERE run_id = ? AND wait_key IN ({marks}) "
                    "AND status != 'pending' LIMIT 1",
                    (fence.workflow_id, *keys),
                ).fetchone()
                if ready is not None:
                    return False
                self._events(conn, fence, [NewEvent("workflow.waiting", ", ".join(keys))], ts)
                conn.execute(
                    "UPDATE runs SET status = 'waiting', compute_seconds = compute_seconds + ? "
                    "WHERE id = ?",
                    (compute_seconds, fence.workflow_id),
                )
                return True

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def send_event(
        self, type: str, payload: str | None, *, at: datetime, expires_at: datetime
    ) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                inbox_id = conn.execute(
                    "INSERT INTO inbox (kind, name, payload, created_at, expires_at) "
                    "VALUES ('event', ?, ?, ?, ?) RETURNING id",
                    (type, payload, ts, _ts(expires_at)),
                ).fetchone()[0]
                pending = conn.execute(
                    "SELECT id, run_id, wait_key, match FROM waitpoints "
                    "WHERE kind = 'event' AND name = ? AND status = 'pending' ORDER BY created_at",
                    (type,),
                ).fetchall()
                resolved: list[tuple[str, str, str]] = []
                seen_runs: set[str] = set()
                for wid, run_id, key, match in pending:
                    if run_id in seen_runs or not matches(match, payload):
                        continue  # one event resolves at most one wait per run
                    seen_runs.add(run_id)
                    conn.execute(
                        "UPDATE waitpoints SET status = 'resolved', payload = ?, inbox_id = ?, "
                        "resolved_at = ? WHERE id = ?",
                        (payload, inbox_id, ts, wid),
                    )
                    resolved.append((run_id, key, "resolved"))
                return self._wake(conn, resolved, ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        at: datetime,
        expires_at: datetime,
    ) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                run = conn.execute(
                    "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                ).fetchone()
                if run is None:
                    raise RunNotFoundError(workflow_id)
                if RunStatus(run[0]).terminal:
                    raise RunFinishedError(workflow_id, run[0], f"signal {name!r} to")
                wait = conn.execute(
                    "SELECT id, wait_key FROM waitpoints WHERE run_id = ? AND kind = 'signal' "
                    "AND name = ? AND status = 'pending' ORDER BY created_at LIMIT 1",
                    (workflow_id, name),
                ).fetchone()
                if wait is None:
                    conn.execute(
                        "INSERT INTO inbox (kind, target, name, payload, created_at, expires_at) "
                        "VALUES ('signal', ?, ?, ?, ?, ?)",
                        (workflow_id, name, payload, ts, _ts(expires_at)),
                    )
                    self._events(conn, Fence(workflow_id), [NewEvent("signal.kept", name)], ts)
                    return []
                conn.execute(
                    "UPDATE waitpoints SET status = 'resolved', payload = ?, resolved_at = ? "
                    "WHERE id = ?",
                    (payload, ts, wait[0]),
                )
                return self._wake(conn, [(workflow_id, wait[1], "resolved")], ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def complete_token(self, token_id: str, payload: str | None, *, at: datetime) -> str:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> str:
            def tx() -> str:
                row = conn.execute(
                    "SELECT run_id, wait_key, status FROM waitpoints WHERE id = ? AND kind = 'token'",
                    (token_id,),
                ).fetchone()
                if row is None:
                    raise TokenNotFoundError(token_id)
                if row[2] != "pending":
                    raise InvalidArgumentError(
                        f"token {token_id!r} was already {row[2].replace('_', ' ')}; "
                        "a token completes once"
                    )
                conn.execute(
                    "UPDATE waitpoints SET status = 'resolved', payload = ?, resolved_at = ? "
                    "WHERE id = ?",
                    (payload, ts, token_id),
                )
                self._wake(conn, [(row[0], row[1], "resolved")], ts)
                return str(row[0])

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def fire_due(self, *, now: datetime | None, at: datetime) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                now_ts = time.time() if now is None else _ts(now)
                rows = conn.execute(
                    "UPDATE waitpoints SET status = CASE kind WHEN 'timer' THEN 'resolved' "
                    "ELSE 'timed_out' END, resolved_at = ? "
                    "WHERE status = 'pending' AND due_at IS NOT NULL AND due_at <= ? "
                    "RETURNING run_id, wait_key, status",
                    (ts, now_ts),
                ).fetchall()
                conn.execute("DELETE FROM inbox WHERE expires_at <= ?", (now_ts,))
                return self._wake(conn, [(r[0], r[1], r[2]) for r in rows], ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def cancel_run(
        self, workflow_id: str, *, reason: str | None, compensate: bool, at: datetime
    ) -> list[str]:
        ts = _ts(at)
        error = json.dumps(
            {"type": "Cancelled", "message": reason or "cancelled", "traceback": None}
        )

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                run = conn.execute(
                    "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                ).fetchone()
                if run is None:
                    raise RunNotFoundError(workflow_id)
                if RunStatus(run[0]).terminal:
                    raise RunFinishedError(workflow_id, run[0], "cancel")
                cancelled: list[str] = []
                todo = [workflow_id]
                while todo:
                    rid = todo.pop(0)
                    row = conn.execute(
                        "UPDATE runs SET status = 'cancelled', error = ?, finished_at = ?, "
                        "cancel_requested = ? "
                        f"WHERE id = ? AND status NOT IN {_TERMINAL} RETURNING id",
                        (error, ts, "compensate" if compensate else None, rid),
                    ).fetchone()
                    if row is None:
                        continue
                    cancelled.append(rid)
                    conn.execute(
                        "UPDATE jobs SET status = 'cancelled', updated_at = ? "
                        "WHERE run_id = ? AND status = 'queued'",
                        (ts, rid),
                    )
                    self._events(conn, Fence(rid), [NewEvent("workflow.cancelled", reason)], ts)
                    children = conn.execute(
                        "UPDATE waitpoints SET status = 'cancelled', resolved_at = ? "
                        "WHERE run_id = ? AND status = 'pending' RETURNING kind, name",
                        (ts, rid),
                    ).fetchall()
                    todo.extend(name for kind, name in children if kind == "run")
                    # a parent waiting on this run is woken to see it cancelled
                    self._child_ended(conn, rid, RunStatus.CANCELLED, None, error, ts)
                return cancelled

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def save_value(self, fence: Fence, key: str, value: str, at: datetime) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._bump(conn, fence, 0, ts)
                conn.execute(
                    "INSERT INTO steps (run_id, step_key, name, status, attempts, result, "
                    "started_at, completed_at, updated_at) "
                    "VALUES (?, ?, ?, 'completed', 1, ?, ?, ?, ?) "
                    "ON CONFLICT (run_id, step_key) DO NOTHING",
                    (fence.workflow_id, key, key, value, ts, ts, ts),
                )

            self._write(conn, self._full, tx)

        await self._call(go)
