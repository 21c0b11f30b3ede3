"""The PostgreSQL adapter of the Store port: runs, steps, events, locks, heartbeats.

Plumbing (pool, one-statement verbs, notifications) is in `_pg_base`; waits
and the job queue live in `_pg_waits` and `_pg_queue`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import RunAlreadyRunningError, RunFinishedError, RunNotFoundError
from ._pg_base import (
    CLAIMABLE,
    CLOSED,
    FENCE,
    LOCK_COLS,
    NOW,
    RUN_COLS,
    STEP_COLS,
    Conn,
    event_params,
    fence_params,
    lock_row,
    run_row,
    step_row,
)
from ._pg_queue import PgQueueOps
from ._pg_schedules import PgScheduleOps
from ._pg_waits import PgWaitOps
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

__all__ = ["PostgresStore"]

# one statement: the fence and event number, the event, then the change itself
_EVENT_CTE = (
    "WITH r AS (UPDATE runs SET event_seq = event_seq + 1, updated_at = %(at)s "
    f"WHERE {FENCE} RETURNING event_seq), "
    "e AS (INSERT INTO events (run_id, seq, type, message, detail, at) "
    "SELECT %(wid)s, r.event_seq, %(etype)s, %(emsg)s, %(edetail)s::jsonb, %(at)s FROM r) "
)
_SYNC_OFF = ", q AS (SELECT set_config('synchronous_commit', 'off', true) AS s) "


class PostgresStore(PgWaitOps, PgQueueOps, PgScheduleOps):
    """Store on a PostgreSQL database (in its own schema)."""

    async def _fenced(self, sql: str, params: dict[str, Any], fence: Fence) -> Any:
        """Run one fenced statement; its row, or the fence's failure raised."""

        async def go(conn: Conn) -> Any:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            if row is None:
                raise await self._fence_failure(conn, fence)
            return row

        return await self._with(go)

    # -- runs ------------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        async def go(conn: Conn) -> tuple[RunRow, bool]:
            return await self._insert_run(conn, run, at)

        return await self._with(go, tx=True)

    async def get_run(self, workflow_id: str) -> RunRow | None:
        row = await self._one(f"SELECT {RUN_COLS} FROM runs WHERE id = %s", (workflow_id,))
        return None if row is None else run_row(row)

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        rows = await self._all(
            f"SELECT {RUN_COLS} FROM runs WHERE (%(st)s::text IS NULL OR status = %(st)s) "
            "ORDER BY created_at DESC, id LIMIT %(lim)s",
            {"st": None if status is None else status.value, "lim": limit},
        )
        return [run_row(r) for r in rows]

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
        expires = "NULL" if lease is None else f"{NOW} + make_interval(secs => %(lease)s)"
        if compensating:
            change = (
                "UPDATE runs SET owner = %(owner)s, owner_generation = owner_generation + 1, "
                f"owner_expires_at = {expires}, event_seq = event_seq + 1, updated_at = %(at)s "
                "WHERE id = %(wid)s AND status = 'cancelled' AND cancel_requested = 'compensate' "
                f"AND {CLAIMABLE} "
            )
        else:
            change = (
                "UPDATE runs SET owner = %(owner)s, owner_generation = owner_generation + 1, "
                f"owner_expires_at = {expires}, event_seq = event_seq + 1, status = 'running', "
                "started_at = COALESCE(started_at, %(at)s), finished_at = NULL, "
                f"updated_at = %(at)s WHERE id = %(wid)s AND status NOT IN {CLOSED} "
                f"AND {CLAIMABLE} "
            )
        sql = (
            f"WITH c AS ({change} RETURNING {RUN_COLS}, event_seq), "
            "e AS (INSERT INTO events (run_id, seq, type, message, detail, at) "
            "SELECT id, event_seq, %(etype)s, %(emsg)s, %(edetail)s::jsonb, %(at)s FROM c) "
            f"SELECT {RUN_COLS.replace('::text', '')} FROM c"
        )
        params = {
            "wid": workflow_id,
            "owner": owner,
            "at": at,
            "now": now,
            "lease": lease,
            "force": force,
            "dead": dead_owner,
            **event_params(event),
        }

        async def go(conn: Conn) -> RunRow:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    "SELECT status, owner, owner_expires_at FROM runs WHERE id = %s",
                    (workflow_id,),
                )
                found = await cur.fetchone()
                if found is None:
                    raise RunNotFoundError(workflow_id)
                if found[0] == "running":
                    raise RunAlreadyRunningError(workflow_id, found[1], found[2])
                raise RunFinishedError(workflow_id, found[0], "resume")
            return run_row(row)

        return await self._with(go)

    async def renew_owner(
        self, owner: str, workflow_ids: Sequence[str], *, lease: float, now: datetime | None
    ) -> int:
        async def go(conn: Conn) -> int:
            cur = await conn.execute(
                f"UPDATE runs SET owner_expires_at = {NOW} + make_interval(secs => %(lease)s) "
                "WHERE owner = %(owner)s AND status = 'running' AND id = ANY(%(ids)s)",
                {"now": now, "lease": lease, "owner": owner, "ids": list(workflow_ids)},
            )
            return int(cur.rowcount)

        return await self._with(go)

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        sql = (
            "WITH r AS (UPDATE runs SET event_seq = event_seq + 1, updated_at = %(at)s, "
            "status = 'pending', owner_expires_at = NULL WHERE id = %(wid)s AND "
            "owner_generation = %(gen)s AND status = 'running' RETURNING event_seq), "
            "e AS (INSERT INTO events (run_id, seq, type, message, detail, at) "
            "SELECT %(wid)s, r.event_seq, %(etype)s, %(emsg)s, %(edetail)s::jsonb, %(at)s "
            "FROM r), n AS (SELECT pg_notify(%(chan)s, %(note)s) FROM r) "
            "SELECT count(*) FROM r"
        )
        params = {
            **fence_params(fence),
            **event_params(event),
            "at": at,
            "chan": self.config.channel,
            "note": f"run:{fence.workflow_id}",
        }
        row = await self._one(sql, params)
        return bool(row and row[0])

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
        # one statement: the run row changes inside the fencing CTE (PostgreSQL applies
        # one update per row per statement), the event, the notification
        sql = (
            "WITH r AS (UPDATE runs SET event_seq = event_seq + 1, updated_at = %(at)s, "
            "status = %(st)s, output = %(out)s::jsonb, error = COALESCE(%(err)s::jsonb, "
            "error), finished_at = %(at)s, compute_seconds = compute_seconds + %(cs)s, "
            f"cancel_requested = NULL WHERE {FENCE} RETURNING event_seq, parent_id), "
            "e AS (INSERT INTO events (run_id, seq, type, message, detail, at) "
            "SELECT %(wid)s, r.event_seq, %(etype)s, %(emsg)s, %(edetail)s::jsonb, %(at)s "
            "FROM r), n AS (SELECT pg_notify(%(chan)s, %(note)s) FROM r) "
            "SELECT r.parent_id, (SELECT count(*) FROM n) FROM r"
        )
        params = {
            **fence_params(fence),
            **event_params(event),
            "at": at,
            "st": status.value,
            "out": output,
            "err": error,
            "cs": compute_seconds,
            "chan": self.config.channel,
            "note": f"run:{fence.workflow_id}",
        }
        row = await self._fenced(sql, params, fence)
        if row[0] is not None and status.terminal:
            # a parent may wait on this run: resolve its wait and wake it. Should this
            # process die between the two transactions, maintenance (fire_due) finds
            # the pending wait on an ended child and resolves it then.
            async def wake(conn: Conn) -> None:
                await self._child_ended(conn, fence.workflow_id, status.value, output, error, at)

            await self._with(wake, tx=True)

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        await self._fenced(
            "WITH r AS (UPDATE runs SET event_seq = event_seq + 1, updated_at = %(at)s, "
            f"state = %(state)s::jsonb WHERE {FENCE} RETURNING event_seq), "
            "e AS (INSERT INTO events (run_id, seq, type, message, detail, at) "
            "SELECT %(wid)s, r.event_seq, %(etype)s, %(emsg)s, %(edetail)s::jsonb, %(at)s "
            "FROM r) SELECT 1 FROM r",
            {**fence_params(fence), **event_params(event), "at": at, "state": state},
            fence,
        )

    # -- events ------------------------------------------------------------------------

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        if not events:
            return

        async def go(conn: Conn) -> None:
            await self._bump(conn, fence, events, at)

        await self._with(go, tx=True)

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        rows = await self._all(
            "SELECT run_id, seq, type, message, detail::text, at FROM events "
            "WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (workflow_id, after_seq, limit),
        )
        return [EventRow(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # -- steps -------------------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        rows = await self._all(
            f"SELECT {STEP_COLS} FROM steps WHERE run_id = %s ORDER BY started_at, step_key",
            (workflow_id,),
        )
        return [step_row(r) for r in rows]

    async def start_step(
        self,
        fence: Fence,
        key: str,
        *,
        idempotency_key: str | None,
        at: datetime,
        event: NewEvent,
    ) -> StepRow:
        row = await self._fenced(
            _EVENT_CTE
            + _SYNC_OFF
            + "INSERT INTO steps AS s (run_id, step_key, name, status, attempts, idempotency_key, "
            "started_at, updated_at) SELECT %(wid)s, %(key)s, %(key)s, 'running', 1, %(ikey)s, "
            "%(at)s, %(at)s FROM r, q ON CONFLICT (run_id, step_key) DO UPDATE SET "
            "status = 'running', attempts = CASE WHEN s.idempotency_key IS NOT DISTINCT FROM "
            "excluded.idempotency_key THEN s.attempts + 1 ELSE 1 END, result = CASE WHEN "
            "s.idempotency_key IS NOT DISTINCT FROM excluded.idempotency_key THEN s.result "
            "ELSE NULL END, idempotency_key = excluded.idempotency_key, completed_at = NULL, "
            "started_at = excluded.started_at, updated_at = excluded.updated_at "
            "RETURNING s.attempts, s.result::text, s.error::text",
            {
                **fence_params(fence),
                **event_params(event),
                "at": at,
                "key": key,
                "ikey": idempotency_key,
            },
            fence,
        )
        return started_step(fence.workflow_id, key, idempotency_key, row, at)

    async def complete_step(
        self, fence: Fence, key: str, *, result: str, at: datetime, event: NewEvent
    ) -> None:
        sync_off = self._sync_off  # durability=normal: completions skip the flush too
        await self._fenced(
            _EVENT_CTE
            + (_SYNC_OFF if sync_off else "")
            + "UPDATE steps SET status = 'completed', result = %(res)s::jsonb, error = NULL, "
            f"completed_at = %(at)s, updated_at = %(at)s FROM r{', q' if sync_off else ''} "
            "WHERE run_id = %(wid)s AND step_key = %(key)s RETURNING 1",
            {**fence_params(fence), **event_params(event), "at": at, "key": key, "res": result},
            fence,
        )

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
        sync_off = not final or self._sync_off
        await self._fenced(
            _EVENT_CTE
            + (_SYNC_OFF if sync_off else "")
            + "UPDATE steps SET status = 'failed', error = %(err)s::jsonb, updated_at = %(at)s "
            f"FROM r{', q' if sync_off else ''} WHERE run_id = %(wid)s AND step_key = %(key)s "
            "RETURNING 1",
            {**fence_params(fence), **event_params(event), "at": at, "key": key, "err": error},
            fence,
        )

    # -- locks ---------------------------------------------------------------------------

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
        async def go(conn: Conn) -> LockResult:
            # make sure a row exists to lock, then decide under the row lock
            params = {"scope": scope, "key": key, "holder": holder, "now": now, "ttl": ttl}
            await conn.execute(
                "INSERT INTO locks (scope, key, holder, generation, acquired_at, heartbeat_at, "
                f"expires_at, released_at) VALUES (%(scope)s, %(key)s, '', 0, {NOW}, {NOW}, "
                f"{NOW}, {NOW}) ON CONFLICT DO NOTHING",
                params,
            )
            cur = await conn.execute(
                f"SELECT {LOCK_COLS}, ({NOW}) FROM locks WHERE scope = %(scope)s "
                "AND key = %(key)s FOR UPDATE",
                params,
            )
            cur_row = await cur.fetchone()
            assert cur_row is not None
            current, server_now = lock_row(cur_row[:10]), cur_row[10]
            active = current.released_at is None and current.expires_at > server_now
            if active and current.holder != holder:
                return LockResult(LockOutcome.CONFLICT, current)
            if active:
                outcome, event = LockOutcome.RENEWED, on_renew
                cur = await conn.execute(
                    "UPDATE locks SET heartbeat_at = %(t)s, expires_at = %(t)s + "
                    "make_interval(secs => %(ttl)s), detail = COALESCE(%(detail)s::jsonb, detail) "
                    f"WHERE scope = %(scope)s AND key = %(key)s RETURNING {LOCK_COLS}",
                    {**params, "t": server_now, "detail": detail},
                )
            else:
                outcome, event = LockOutcome.ACQUIRED, on_acquire
                cur = await conn.execute(
                    "UPDATE locks SET holder = %(holder)s, generation = generation + 1, "
                    "run_id = %(run)s, detail = %(detail)s::jsonb, acquired_at = %(t)s, "
                    "heartbeat_at = %(t)s, expires_at = %(t)s + make_interval(secs => %(ttl)s), "
                    f"released_at = NULL WHERE scope = %(scope)s AND key = %(key)s "
                    f"RETURNING {LOCK_COLS}",
                    {
                        **params,
                        "t": server_now,
                        "detail": detail,
                        "run": fence.workflow_id if fence else None,
                    },
                )
            row = await cur.fetchone()
            assert row is not None
            if fence is not None and event is not None:
                await self._bump(conn, fence, [event], at)
            return LockResult(outcome, lock_row(row))

        return await self._with(go, tx=True)

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        row = await self._one(
            f"WITH t AS (SELECT {NOW} AS n) UPDATE locks SET heartbeat_at = t.n, "
            "expires_at = t.n + make_interval(secs => %(ttl)s) FROM t WHERE scope = %(scope)s "
            "AND key = %(key)s AND holder = %(holder)s AND released_at IS NULL "
            f"AND expires_at > t.n RETURNING {', '.join('locks.' + c.strip() for c in LOCK_COLS.split(','))}",
            {"scope": scope, "key": key, "holder": holder, "ttl": ttl, "now": now},
        )
        return None if row is None else lock_row(row)

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
        async def go(conn: Conn) -> LockResult | None:
            cur = await conn.execute(
                f"SELECT {LOCK_COLS}, ({NOW}) FROM locks WHERE scope = %(scope)s "
                "AND key = %(key)s FOR UPDATE",
                {"scope": scope, "key": key, "now": now},
            )
            found = await cur.fetchone()
            if found is None:
                return None
            current, server_now = lock_row(found[:10]), found[10]
            if current.released_at is not None or current.generation == 0:
                return None
            if holder is not None and current.holder != holder:
                if current.expires_at > server_now:
                    return LockResult(LockOutcome.CONFLICT, current)
                return None
            cur = await conn.execute(
                f"UPDATE locks SET released_at = %s WHERE scope = %s AND key = %s "
                f"RETURNING {LOCK_COLS}",
                (server_now, scope, key),
            )
            row = await cur.fetchone()
            assert row is not None
            if fence is not None and event is not None:
                await self._bump(conn, fence, [event], at)
            return LockResult(LockOutcome.ACQUIRED, lock_row(row))

        return await self._with(go, tx=True)

    async def get_lock(self, scope: str, key: str) -> LockRow | None:
        row = await self._one(
            f"SELECT {LOCK_COLS} FROM locks WHERE scope = %s AND key = %s AND generation > 0",
            (scope, key),
        )
        return None if row is None else lock_row(row)

    async def list_locks(self, scope: str, *, run_id: str | None = None) -> list[LockRow]:
        rows = await self._all(
            f"SELECT {LOCK_COLS} FROM locks WHERE scope = %(s)s AND generation > 0 "
            "AND (%(r)s::text IS NULL OR run_id = %(r)s) ORDER BY key",
            {"s": scope, "r": run_id},
        )
        return [lock_row(r) for r in rows]

    # -- heartbeats ------------------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None:
        await self._fenced(
            _EVENT_CTE
            + _SYNC_OFF
            + "INSERT INTO heartbeats (run_id, key, at, detail) SELECT %(wid)s, %(key)s, %(at)s, "
            "%(detail)s::jsonb FROM r, q ON CONFLICT (run_id, key) DO UPDATE SET at = excluded.at, "
            "detail = excluded.detail RETURNING 1",
            {**fence_params(fence), **event_params(event), "at": at, "key": key, "detail": detail},
            fence,
        )

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]:
        rows = await self._all(
            "SELECT run_id, key, at, detail::text FROM heartbeats WHERE run_id = %s ORDER BY key",
            (workflow_id,),
        )
        return [HeartbeatRow(r[0], r[1], r[2], r[3]) for r in rows]
