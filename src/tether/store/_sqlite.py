"""The SQLite adapter of the Store port: runs, steps, events, locks, heartbeats.

The plumbing (one connection, inline transactions, durability per
transaction) is described in `_sqlite_base`; waits and the job queue live in
`_sqlite_waits` and `_sqlite_queue`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import RunAlreadyRunningError, RunFinishedError, RunNotFoundError
from ._records import (
    EventRow,
    Fence,
    HeartbeatRow,
    LockOutcome,
    LockResult,
    LockRow,
    NewEvent,
    NewRun,
    RunRow,
    RunStatus,
    StepRow,
)
from ._rows import started_step
from ._sqlite_base import (
    _CLAIMABLE,
    _CLOSED,
    _LOCK_COLS,
    _RUN_COLS,
    _STEP_COLS,
    _dt,
    _lock,
    _odt,
    _run,
    _step,
    _ts,
)
from ._sqlite_queue import QueueOps
from ._sqlite_schedules import ScheduleOps
from ._sqlite_waits import WaitOps

__all__ = ["SQLiteStore"]


class SQLiteStore(WaitOps, QueueOps, ScheduleOps):
    """Store on a SQLite file (or ``:memory:``)."""

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> tuple[RunRow, bool]:
            return self._write(conn, self._full, lambda: self._insert_run(conn, run, ts))

        return await self._call(go)

    async def get_run(self, workflow_id: str) -> RunRow | None:
        def go(conn: sqlite3.Connection) -> RunRow | None:
            row = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (workflow_id,)
            ).fetchone()
            return None if row is None else _run(row)

        return await self._call(go)

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        def go(conn: sqlite3.Connection) -> list[RunRow]:
            if status is None:
                rows = conn.execute(
                    f"SELECT {_RUN_COLS} FROM runs ORDER BY created_at DESC, id LIMIT ?", (limit,)
                )
            else:
                rows = conn.execute(
                    f"SELECT {_RUN_COLS} FROM runs WHERE status = ? "
                    "ORDER BY created_at DESC, id LIMIT ?",
                    (status.value, limit),
                )
            return [_run(r) for r in rows]

        return await self._call(go)

    async def claim_run(
        self,
        workflow_id: str,
        owner: str,
        at: datetime,
        event: NewEvent,
        *,
        compensating: bool = False,
        lease: float | None = None,
        force: bool = False,
        now: datetime | None = None,
        dead_owner: str | None = None,
    ) -> RunRow:
        ts = _ts(at)
        now_ts = time.time() if now is None else _ts(now)
        expires = None if lease is None else now_ts + lease
        if compensating:
            sql = (
                "UPDATE runs SET owner = ?, owner_generation = owner_generation + 1, "
                "owner_expires_at = ?, updated_at = ? WHERE id = ? AND status = 'cancelled' "
                f"AND cancel_requested = 'compensate' AND {_CLAIMABLE} RETURNING {_RUN_COLS}"
            )
        else:
            sql = (
                "UPDATE runs SET owner = ?, owner_generation = owner_generation + 1, "
                "owner_expires_at = ?, status = 'running', started_at = COALESCE(started_at, ?), "
                f"finished_at = NULL, updated_at = ? WHERE id = ? AND status NOT IN {_CLOSED} "
                f"AND {_CLAIMABLE} RETURNING {_RUN_COLS}"
            )
        check = (force, owner, now_ts, dead_owner)
        params: tuple[Any, ...] = (
            (owner, expires, ts, workflow_id, *check)
            if compensating
            else (owner, expires, ts, ts, workflow_id, *check)
        )

        def go(conn: sqlite3.Connection) -> RunRow:
            def tx() -> RunRow:
                row = conn.execute(sql, params).fetchone()
                if row is None:
                    found = conn.execute(
                        "SELECT status, owner, owner_expires_at FROM runs WHERE id = ?",
                        (workflow_id,),
                    ).fetchone()
                    if found is None:
                        raise RunNotFoundError(workflow_id)
                    if found[0] == "running":
                        raise RunAlreadyRunningError(workflow_id, found[1], _odt(found[2]))
                    raise RunFinishedError(workflow_id, found[0], "resume")
                claimed = _run(row)
                self._events(
                    conn, Fence(workflow_id, claimed.generation, compensating), [event], ts
                )
                return claimed

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def renew_owner(
        self, owner: str, workflow_ids: Sequence[str], *, lease: float, now: datetime | None
    ) -> int:
        now_ts = time.time() if now is None else _ts(now)

        marks = ", ".join("?" for _ in workflow_ids) or "NULL"

        def go(conn: sqlite3.Connection) -> int:
            def tx() -> int:
                cur = conn.execute(
                    "UPDATE runs SET owner_expires_at = ? WHERE owner = ? AND status = 'running' "
                    f"AND id IN ({marks})",
                    (now_ts + lease, owner, *workflow_ids),
                )
                return cur.rowcount

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> bool:
            def tx() -> bool:
                found = conn.execute(
                    "SELECT status FROM runs WHERE id = ? AND owner_generation = ?",
                    (fence.workflow_id, fence.generation),
                ).fetchone()
                if found is None or found[0] != "running":
                    return False
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE runs SET status = 'pending', owner_expires_at = NULL WHERE id = ?",
                    (fence.workflow_id,),
                )
                return True

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def finish_run(
        self,
        fence: Fence,
        status: RunStatus,
        *,
        output: str | None,
        error: str | None,
        at: datetime,
        event: NewEvent,
        compute_seconds: float = 0.0,
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE runs SET status = ?, output = ?, error = COALESCE(?, error), "
                    "finished_at = ?, compute_seconds = compute_seconds + ?, "
                    "cancel_requested = NULL WHERE id = ?",
                    (status.value, output, error, ts, compute_seconds, fence.workflow_id),
                )
                if status.terminal:
                    self._child_ended(conn, fence.workflow_id, status, output, error, ts)

            self._write(conn, self._full, tx)

        await self._call(go)

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute("UPDATE runs SET state = ? WHERE id = ?", (state, fence.workflow_id))

            self._write(conn, self._full, tx)

        await self._call(go)

    # -- events ------------------------------------------------------------------------------

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        if not events:
            return
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            self._write(conn, self._full, lambda: self._events(conn, fence, events, ts))

        await self._call(go)

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        def go(conn: sqlite3.Connection) -> list[EventRow]:
            rows = conn.execute(
                "SELECT run_id, seq, type, message, detail, at FROM events "
                "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (workflow_id, after_seq, -1 if limit is None else limit),
            )
            return [EventRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5])) for r in rows]

        return await self._call(go)

    # -- steps -------------------------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        def go(conn: sqlite3.Connection) -> list[StepRow]:
            rows = conn.execute(
                f"SELECT {_STEP_COLS} FROM steps WHERE run_id = ? ORDER BY started_at, step_key",
                (workflow_id,),
            )
            return [_step(r) for r in rows]

        return await self._call(go)

    async def start_step(
        self,
        fence: Fence,
        key: str,
        *,
        idempotency_key: str | None,
        at: datetime,
        event: NewEvent,
    ) -> StepRow:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> StepRow:
            def tx() -> StepRow:
                self._events(conn, fence, [event], ts)
                row = conn.execute(
                    "INSERT INTO steps (run_id, step_key, name, status, attempts, idempotency_key, "
                    "started_at, updated_at) VALUES (?, ?, ?, 'running', 1, ?, ?, ?) "
                    "ON CONFLICT (run_id, step_key) DO UPDATE SET status = 'running', "
                    "attempts = CASE WHEN steps.idempotency_key IS excluded.idempotency_key "
                    "  THEN steps.attempts + 1 ELSE 1 END, "
                    "result = CASE WHEN steps.idempotency_key IS excluded.idempotency_key "
                    "  THEN steps.result ELSE NULL END, "
                    "idempotency_key = excluded.idempotency_key, completed_at = NULL, "
                    "started_at = excluded.started_at, updated_at = excluded.updated_at "
                    "RETURNING attempts, result, error",
                    (fence.workflow_id, key, key, idempotency_key, ts, ts),
                ).fetchone()
                return started_step(fence.workflow_id, key, idempotency_key, row, _dt(ts))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def complete_step(
        self, fence: Fence, key: str, *, result: str, at: datetime, event: NewEvent
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE steps SET status = 'completed', result = ?, error = NULL, "
                    "completed_at = ?, updated_at = ? WHERE run_id = ? AND step_key = ?",
                    (result, ts, ts, fence.workflow_id, key),
                )

            self._write(conn, self._full, tx)

        await self._call(go)

    async def fail_step(
        self,
        fence: Fence,
        key: str,
        *,
        error: str,
        final: bool,
        at: datetime,
        event: NewEvent,
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE steps SET status = 'failed', error = ?, updated_at = ? "
                    "WHERE run_id = ? AND step_key = ?",
                    (error, ts, fence.workflow_id, key),
                )

            self._write(conn, self._full if final else "NORMAL", tx)

        await self._call(go)

    # -- locks ---------------------------------------------------------------------------------

    async def acquire_lock(
        self,
        scope: str,
        key: str,
        holder: str,
        *,
        ttl: float,
        now: datetime | None,
        fence: Fence | None = None,
        detail: str | None = None,
        on_acquire: NewEvent | None = None,
        on_renew: NewEvent | None = None,
        at: datetime,
    ) -> LockResult:
        at_ts = _ts(at)

        def go(conn: sqlite3.Connection) -> LockResult:
            def tx() -> LockResult:
                now_ts = time.time() if now is None else _ts(now)
                cur = conn.execute(
                    f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
                ).fetchone()
                active = cur is not None and cur[9] is None and cur[8] > now_ts
                if active and cur[2] != holder:
                    return LockResult(LockOutcome.CONFLICT, _lock(cur))
                run_id = fence.workflow_id if fence else None
                if active:
                    outcome, event = LockOutcome.RENEWED, on_renew
                    row = conn.execute(
                        "UPDATE locks SET heartbeat_at = ?, expires_at = ?, "
                        "detail = COALESCE(?, detail) "
                        f"WHERE scope = ? AND key = ? RETURNING {_LOCK_COLS}",
                        (now_ts, now_ts + ttl, detail, scope, key),
                    ).fetchone()
                else:
                    outcome, event = LockOutcome.ACQUIRED, on_acquire
                    row = conn.execute(
                        "INSERT INTO locks (scope, key, holder, generation, run_id, detail, "
                        "acquired_at, heartbeat_at, expires_at, released_at) "
                        "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, NULL) "
                        "ON CONFLICT (scope, key) DO UPDATE SET holder = excluded.holder, "
                        "generation = locks.generation + 1, run_id = excluded.run_id, "
                        "detail = excluded.detail, acquired_at = excluded.acquired_at, "
                        "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, "
                        f"released_at = NULL RETURNING {_LOCK_COLS}",
                        (scope, key, holder, run_id, detail, now_ts, now_ts, now_ts + ttl),
                    ).fetchone()
                if fence is not None and event is not None:
                    self._events(conn, fence, [event], at_ts)
                return LockResult(outcome, _lock(row))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        def go(conn: sqlite3.Connection) -> LockRow | None:
            def tx() -> LockRow | None:
                now_ts = time.time() if now is None else _ts(now)
                row = conn.execute(
                    "UPDATE locks SET heartbeat_at = ?, expires_at = ? "
                    "WHERE scope = ? AND key = ? AND holder = ? AND released_at IS NULL "
                    f"AND expires_at > ? RETURNING {_LOCK_COLS}",
                    (now_ts, now_ts + ttl, scope, key, holder, now_ts),
                ).fetchone()
                return None if row is None else _lock(row)

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def release_lock(
        self,
        scope: str,
        key: str,
        holder: str | None,
        *,
        now: datetime | None,
        fence: Fence | None = None,
        event: NewEvent | None = None,
        at: datetime,
    ) -> LockResult | None:
        at_ts = _ts(at)

        def go(conn: sqlite3.Connection) -> LockResult | None:
            def tx() -> LockResult | None:
                now_ts = time.time() if now is None else _ts(now)
                cur = conn.execute(
                    f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
                ).fetchone()
                if cur is None or cur[9] is not None:
                    return None
                if holder is not None and cur[2] != holder:
                    if cur[8] > now_ts:
                        return LockResult(LockOutcome.CONFLICT, _lock(cur))
                    return None  # someone else's expired lock: nothing of ours to release
                row = conn.execute(
                    f"UPDATE locks SET released_at = ? WHERE scope = ? AND key = ? "
                    f"RETURNING {_LOCK_COLS}",
                    (now_ts, scope, key),
                ).fetchone()
                if fence is not None and event is not None:
                    self._events(conn, fence, [event], at_ts)
                return LockResult(LockOutcome.ACQUIRED, _lock(row))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def get_lock(self, scope: str, key: str) -> LockRow | None:
        def go(conn: sqlite3.Connection) -> LockRow | None:
            row = conn.execute(
                f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            return None if row is None else _lock(row)

        return await self._call(go)

    async def list_locks(self, scope: str, *, run_id: str | None = None) -> list[LockRow]:
        def go(conn: sqlite3.Connection) -> list[LockRow]:
            rows = conn.execute(
                f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND (? IS NULL OR run_id = ?) "
                "ORDER BY key",
                (scope, run_id, run_id),
            )
            return [_lock(r) for r in rows]

        return await self._call(go)

    # -- heartbeats ----------------------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "INSERT INTO heartbeats (run_id, key, at, detail) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id, key) DO UPDATE SET at = excluded.at, "
                    "detail = excluded.detail",
                    (fence.workflow_id, key, ts, detail),
                )

            self._write(conn, "NORMAL", tx)

        await self._call(go)

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]:
        def go(conn: sqlite3.Connection) -> list[HeartbeatRow]:
            rows = conn.execute(
                "SELECT run_id, key, at, detail FROM heartbeats WHERE run_id = ? ORDER BY key",
                (workflow_id,),
            )
            return [HeartbeatRow(r[0], r[1], _dt(r[2]), r[3]) for r in rows]

        return await self._call(go)
