"""The PostgreSQL adapter, part two: waitpoints, the inbox, cancellation.

Each verb is one transaction. Waits of one run are serialised by locking the
run's row first, so a resolution racing a registration sees one or the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..errors import InvalidArgumentError, RunFinishedError, RunNotFoundError, TokenNotFoundError
from ._match import matches
from ._pg_base import NOW, TERMINAL, WAIT_COLS, Conn, PgBase, wait_row
from ._records import Fence, NewEvent, NewWait, RunStatus, WaitKind, WaitRow, WaitStatus

__all__ = ["PgWaitOps"]


class PgWaitOps(PgBase):
    """Waitpoint verbs of `PostgresStore`."""

    async def _lock_run(self, conn: Conn, workflow_id: str) -> str:
        cur = await conn.execute("SELECT status FROM runs WHERE id = %s FOR UPDATE", (workflow_id,))
        row = await cur.fetchone()
        if row is None:
            raise RunNotFoundError(workflow_id)
        return str(row[0])

    async def _try_resolve(self, conn: Conn, w: WaitRow, at: datetime) -> WaitRow:
        payload: str | None = None
        inbox_id: int | None = None
        if w.kind is WaitKind.SIGNAL:
            cur = await conn.execute(
                "SELECT id, payload::text FROM inbox WHERE kind = 'signal' AND name = %s "
                "AND target = %s AND consumed_by IS NULL AND expires_at > %s ORDER BY id LIMIT 1 "
                "FOR UPDATE SKIP LOCKED",
                (w.name, w.workflow_id, at),
            )
            hit = await cur.fetchone()
            if hit is None:
                return w
            inbox_id, payload = hit
            await conn.execute("UPDATE inbox SET consumed_by = %s WHERE id = %s", (w.id, inbox_id))
        elif w.kind is WaitKind.EVENT:
            cur = await conn.execute(
                "SELECT i.id, i.payload::text FROM inbox i, runs r WHERE r.id = %s "
                "AND i.kind = 'event' AND i.name = %s AND i.created_at >= r.created_at "
                "AND i.expires_at > %s AND i.id NOT IN (SELECT inbox_id FROM waitpoints "
                "WHERE run_id = %s AND inbox_id IS NOT NULL) ORDER BY i.id",
                (w.workflow_id, w.name, at, w.workflow_id),
            )
            for iid, body in await cur.fetchall():
                if matches(w.match, body):
                    inbox_id, payload = iid, body
                    break
            else:
                return w
        elif w.kind is WaitKind.RUN:
            cur = await conn.execute(
                "SELECT status, jsonb_build_object('status', status, 'output', output, "
                "'error', error)::text FROM runs WHERE id = %s",
                (w.name,),
            )
            child = await cur.fetchone()
            if child is None or not RunStatus(child[0]).terminal:
                return w
            payload = child[1]
        else:
            return w
        cur = await conn.execute(
            "UPDATE waitpoints SET status = 'resolved', payload = %s::jsonb, inbox_id = %s, "
            f"resolved_at = %s WHERE id = %s RETURNING {WAIT_COLS}",
            (payload, inbox_id, at, w.id),
        )
        row = await cur.fetchone()
        assert row is not None
        return wait_row(row)

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        async def go(conn: Conn) -> WaitRow:
            await self._lock_run(conn, fence.workflow_id)
            cur = await conn.execute(
                f"SELECT {WAIT_COLS} FROM waitpoints WHERE run_id = %s AND wait_key = %s",
                (fence.workflow_id, wait.key),
            )
            found = await cur.fetchone()
            if found is not None:
                existing = wait_row(found)
                if existing.status is WaitStatus.PENDING:
                    if existing.due_at is None and wait.due_at is not None:
                        # a timeout given at the wait (a token made without one)
                        await conn.execute(
                            "UPDATE waitpoints SET due_at = %s WHERE id = %s",
                            (wait.due_at, existing.id),
                        )
                        existing = replace(existing, due_at=wait.due_at)
                    return await self._try_resolve(conn, existing, at)
                return existing
            await self._bump(conn, fence, [NewEvent("wait.registered", wait.key)], at)
            cur = await conn.execute(
                "INSERT INTO waitpoints (id, run_id, wait_key, kind, name, match, status, due_at, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s::jsonb, 'pending', %s, %s) "
                f"RETURNING {WAIT_COLS}",
                (
                    wait.wait_id or uuid.uuid4().hex,
                    fence.workflow_id,
                    wait.key,
                    wait.kind.value,
                    wait.name,
                    wait.match,
                    wait.due_at,
                    at,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            return await self._try_resolve(conn, wait_row(row), at)

        return await self._with(go, tx=True)

    async def list_waits(self, workflow_id: str) -> list[WaitRow]:
        rows = await self._all(
            f"SELECT {WAIT_COLS} FROM waitpoints WHERE run_id = %s ORDER BY created_at, wait_key",
            (workflow_id,),
        )
        return [wait_row(r) for r in rows]

    async def park_run(
        self, fence: Fence, keys: Sequence[str], *, compute_seconds: float, at: datetime
    ) -> bool:
        async def go(conn: Conn) -> bool:
            await self._lock_run(conn, fence.workflow_id)
            cur = await conn.execute(
                "SELECT 1 FROM waitpoints WHERE run_id = %s AND wait_key = ANY(%s) "
                "AND status != 'pending' LIMIT 1",
                (fence.workflow_id, list(keys)),
            )
            if await cur.fetchone() is not None:
                return False
            await self._bump(conn, fence, [NewEvent("workflow.waiting", ", ".join(keys))], at)
            await conn.execute(
                "UPDATE runs SET status = 'waiting', compute_seconds = compute_seconds + %s "
                "WHERE id = %s",
                (compute_seconds, fence.workflow_id),
            )
            await self._notify(conn, f"run:{fence.workflow_id}")
            return True

        return await self._with(go, tx=True)

    async def send_event(
        self, type: str, payload: str | None, *, at: datetime, expires_at: datetime
    ) -> list[str]:
        async def go(conn: Conn) -> list[str]:
            cur = await conn.execute(
                "INSERT INTO inbox (kind, name, payload, created_at, expires_at) "
                "VALUES ('event', %s, %s::jsonb, %s, %s) RETURNING id",
                (type, payload, at, expires_at),
            )
            row = await cur.fetchone()
            assert row is not None
            inbox_id = row[0]
            cur = await conn.execute(
                "SELECT id, run_id, wait_key, match::text FROM waitpoints WHERE kind = 'event' "
                "AND name = %s AND status = 'pending' ORDER BY created_at FOR UPDATE",
                (type,),
            )
            resolved: list[tuple[str, str, str]] = []
            seen: set[str] = set()
            for wid, run_id, key, match in await cur.fetchall():
                if run_id in seen or not matches(match, payload):
                    continue  # one event resolves at most one wait per run
                seen.add(run_id)
                await conn.execute(
                    "UPDATE waitpoints SET status = 'resolved', payload = %s::jsonb, "
                    "inbox_id = %s, resolved_at = %s WHERE id = %s",
                    (payload, inbox_id, at, wid),
                )
                resolved.append((run_id, key, "resolved"))
            return await self._wake(conn, resolved, at)

        return await self._with(go, tx=True)

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        at: datetime,
        expires_at: datetime,
    ) -> list[str]:
        async def go(conn: Conn) -> list[str]:
            status = await self._lock_run(conn, workflow_id)
            if RunStatus(status).terminal:
                raise RunFinishedError(workflow_id, status, f"signal {name!r} to")
            cur = await conn.execute(
                "SELECT id, wait_key FROM waitpoints WHERE run_id = %s AND kind = 'signal' "
                "AND name = %s AND status = 'pending' ORDER BY created_at LIMIT 1",
                (workflow_id, name),
            )
            wait = await cur.fetchone()
            if wait is None:
                await conn.execute(
                    "INSERT INTO inbox (kind, target, name, payload, created_at, expires_at) "
                    "VALUES ('signal', %s, %s, %s::jsonb, %s, %s)",
                    (workflow_id, name, payload, at, expires_at),
                )
                await self._bump(conn, Fence(workflow_id), [NewEvent("signal.kept", name)], at)
                return []
            await conn.execute(
                "UPDATE waitpoints SET status = 'resolved', payload = %s::jsonb, resolved_at = %s "
                "WHERE id = %s",
                (payload, at, wait[0]),
            )
            return await self._wake(conn, [(workflow_id, wait[1], "resolved")], at)

        return await self._with(go, tx=True)

    async def complete_token(self, token_id: str, payload: str | None, *, at: datetime) -> str:
        async def go(conn: Conn) -> str:
            cur = await conn.execute(
                "SELECT run_id, wait_key, status FROM waitpoints WHERE id = %s AND kind = 'token' "
                "FOR UPDATE",
                (token_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise TokenNotFoundError(token_id)
            if row[2] != "pending":
                raise InvalidArgumentError(
                    f"token {token_id!r} was already {row[2].replace('_', ' ')}; "
                    "a token completes once"
                )
            await conn.execute(
                "UPDATE waitpoints SET status = 'resolved', payload = %s::jsonb, resolved_at = %s "
                "WHERE id = %s",
                (payload, at, token_id),
            )
            await self._wake(conn, [(row[0], row[1], "resolved")], at)
            return str(row[0])

        return await self._with(go, tx=True)

    async def fire_due(self, *, now: datetime | None, at: datetime) -> list[str]:
        async def go(conn: Conn) -> list[str]:
            cur = await conn.execute(
                "UPDATE waitpoints SET status = CASE kind WHEN 'timer' THEN 'resolved' "
                "ELSE 'timed_out' END, resolved_at = %(at)s WHERE status = 'pending' "
                f"AND due_at IS NOT NULL AND due_at <= {NOW} RETURNING run_id, wait_key, status",
                {"at": at, "now": now},
            )
            waits = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
            # waits on a child that ended but whose end did not reach them (its process
            # died between finishing and waking the parent)
            cur = await conn.execute(
                "SELECT w.name, c.status, c.output::text, c.error::text FROM waitpoints w "
                "JOIN runs c ON c.id = w.name WHERE w.kind = 'run' AND w.status = 'pending' "
                f"AND c.status IN {TERMINAL}"
            )
            woken = [
                rid
                for name, st, out, err in await cur.fetchall()
                for rid in await self._child_ended(conn, name, st, out, err, at)
            ]
            await conn.execute(f"DELETE FROM inbox WHERE expires_at <= {NOW}", {"now": now})
            return woken + await self._wake(conn, waits, at)

        return await self._with(go, tx=True)

    async def cancel_run(
        self, workflow_id: str, *, reason: str | None, compensate: bool, at: datetime
    ) -> list[str]:
        error = json.dumps(
            {"type": "Cancelled", "message": reason or "cancelled", "traceback": None}
        )

        async def go(conn: Conn) -> list[str]:
            status = await self._lock_run(conn, workflow_id)
            if RunStatus(status).terminal:
                raise RunFinishedError(workflow_id, status, "cancel")
            cancelled: list[str] = []
            todo = [workflow_id]
            while todo:
                rid = todo.pop(0)
                cur = await conn.execute(
                    "UPDATE runs SET status = 'cancelled', error = %s::jsonb, finished_at = %s, "
                    f"cancel_requested = %s WHERE id = %s AND status NOT IN {TERMINAL} RETURNING id",
                    (error, at, "compensate" if compensate else None, rid),
                )
                if await cur.fetchone() is None:
                    continue
                cancelled.append(rid)
                await conn.execute(
                    "UPDATE jobs SET status = 'cancelled', updated_at = %s "
                    "WHERE run_id = %s AND status = 'queued'",
                    (at, rid),
                )
                await self._bump(conn, Fence(rid), [NewEvent("workflow.cancelled", reason)], at)
                cur = await conn.execute(
                    "UPDATE waitpoints SET status = 'cancelled', resolved_at = %s "
                    "WHERE run_id = %s AND status = 'pending' RETURNING kind, name",
                    (at, rid),
                )
                todo.extend(name for kind, name in await cur.fetchall() if kind == "run")
                # a parent waiting on this run is woken to see it cancelled
                await self._child_ended(conn, rid, "cancelled", None, error, at)
                await self._notify(conn, f"run:{rid}")
            return cancelled

        return await self._with(go, tx=True)

    async def save_value(self, fence: Fence, key: str, value: str, at: datetime) -> None:
        async def go(conn: Conn) -> None:
            await self._bump(conn, fence, [], at)
            await conn.execute(
                "INSERT INTO steps (run_id, step_key, name, status, attempts, result, started_at, "
                "completed_at, updated_at) VALUES (%s, %s, %s, 'completed', 1, %s::jsonb, %s, %s, "
                "%s) ON CONFLICT (run_id, step_key) DO NOTHING",
                (fence.workflow_id, key, key, value, at, at, at),
            )

        await self._with(go, tx=True)
