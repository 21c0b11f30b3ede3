"""Verbs of the Store port, written once: runs, events, steps, locks, heartbeats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._base import StoreBase, Tx
from ._lifecycle import end_reason
from ._records import (
    EndReason,
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
from ._rows import Rows, started_step
from ._verbs_ai import write_attached

__all__ = ["RunVerbs", "finish_verb"]


class RunVerbs(StoreBase):
    """Runs, events, steps, locks and heartbeats."""

    # -- runs -------------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        return await self._tx("write", lambda tx: self._insert_run(tx, run, at))

    async def get_run(self, workflow_id: str) -> RunRow | None:
        return await self._get("get_run", Rows.run, id=workflow_id)

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        st = None if status is None else status.value
        return await self._list("list_runs", Rows.run, status=st, limit=limit)

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
        async def body(tx: Tx) -> RunRow:
            row = await tx.one(
                "claim_run_compensating" if compensating else "claim_run",
                owner=owner,
                now=tx.now(now),
                lease=lease,
                at=at,
                wid=workflow_id,
                force=force,
                dead=dead_owner,
            )
            if row is None:
                raise await self._claim_refusal(tx, workflow_id)
            claimed = tx.rows.run(row)
            fence = Fence(workflow_id, claimed.generation, compensating)
            await self._events(tx, fence, [event], at)
            return claimed

        return await self._tx("write", body)

    async def renew_owner(
        self, owner: str, workflow_ids: Sequence[str], *, lease: float, now: datetime | None
    ) -> int:
        async def body(tx: Tx) -> int:
            ids = tx.array(workflow_ids)
            return await tx.execute(
                "renew_owner", now=tx.now(now), lease=lease, owner=owner, ids=ids
            )

        return await self._tx("fast", body, single=True)

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        async def body(tx: Tx) -> bool:
            found = await tx.one("release_run_check", wid=fence.workflow_id, gen=fence.generation)
            if found is None or found[0] != "running":
                return False
            await self._events(tx, fence, [event], at)
            await tx.execute("release_run", wid=fence.workflow_id)
            await tx.notify(f"run:{fence.workflow_id}")
            return True

        return await self._tx("write", body)

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
        reason: EndReason | None = None,
    ) -> None:
        """One transaction: the end, its event, and the wake-up of a parent waiting on it."""
        ended = end_reason(finish_verb(fence), status, reason)

        async def body(tx: Tx) -> None:
            wid = fence.workflow_id
            await self._events(tx, fence, [event], at)
            await tx.execute(
                "finish_run",
                status=status.value,
                output=output,
                error=error,
                at=at,
                cs=compute_seconds,
                reason=None if ended is None else ended.value,
                wid=wid,
            )
            if status.terminal:
                await self._child_ended(tx, wid, status.value, output, error, at)
            await tx.notify(f"run:{wid}")

        await self._tx("write", body)

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        async def body(tx: Tx) -> None:
            await self._events(tx, fence, [event], at)
            await tx.execute("set_state", state=state, wid=fence.workflow_id)

        await self._tx("write", body)

    # -- events -----------------------------------------------------------------------

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        if events:
            await self._tx("write", lambda tx: self._events(tx, fence, events, at))

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        return await self._list(
            "list_events", _event, wid=workflow_id, after=after_seq, limit=limit
        )

    # -- steps ------------------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        return await self._list("load_steps", Rows.step, wid=workflow_id)

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        async def body(tx: Tx) -> StepRow:
            await self._events(tx, fence, [event], at)
            row = await tx.one(
                "start_step", wid=fence.workflow_id, key=key, ikey=idempotency_key, at=at
            )
            return started_step(fence.workflow_id, key, idempotency_key, row, at)

        return await self._tx("fast", body)

    async def complete_step(
        self,
        fence: Fence,
        key: str,
        *,
        result: str,
        at: datetime,
        event: NewEvent,
        rows: Sequence[object] = (),
    ) -> None:
        async def body(tx: Tx) -> None:
            await self._events(tx, fence, [event], at)
            await tx.execute("complete_step", result=result, at=at, wid=fence.workflow_id, key=key)
            if rows:
                await write_attached(self, tx, fence, key, rows, at)

        await self._tx("write", body)

    async def fail_step(
        self,
        fence: Fence,
        key: str,
        *,
        error: str,
        final: bool,
        at: datetime,
        event: NewEvent,
        rows: Sequence[object] = (),
    ) -> None:
        async def body(tx: Tx) -> None:
            await self._events(tx, fence, [event], at)
            await tx.execute("fail_step", error=error, at=at, wid=fence.workflow_id, key=key)
            if rows:
                await write_attached(self, tx, fence, key, rows, at)

        await self._tx("write" if final or rows else "fast", body)

    async def save_value(self, fence: Fence, key: str, value: str, at: datetime) -> None:
        async def body(tx: Tx) -> None:
            await self._events(tx, fence, [], at)
            await tx.execute("save_value", wid=fence.workflow_id, key=key, value=value, at=at)

        await self._tx("write", body)

    # -- heartbeats -------------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None:
        async def body(tx: Tx) -> None:
            await self._events(tx, fence, [event], at)
            await tx.execute(
                "record_heartbeat", wid=fence.workflow_id, key=key, at=at, detail=detail
            )

        await self._tx("fast", body)

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]:
        return await self._list("list_heartbeats", _heartbeat, wid=workflow_id)

    # -- locks ------------------------------------------------------------------------

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
        run = None if fence is None else fence.workflow_id
        p = {"scope": scope, "key": key, "holder": holder, "ttl": ttl, "detail": detail}

        async def body(tx: Tx) -> LockResult:
            cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
            if cur is None:  # nobody ever held it: insert (a racing inserter wins on PG)
                row = await tx.one("lock_insert", **p, run=run, now=tx.now(now))
                if row is None:
                    cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
                outcome, event = LockOutcome.ACQUIRED, on_acquire
            if cur is not None:
                current, t = tx.rows.lock(cur[:10]), cur[10]
                active = current.released_at is None and current.expires_at > tx.rows.t(t)
                if active and current.holder != holder:
                    return LockResult(LockOutcome.CONFLICT, current)
                if active:
                    outcome, event = LockOutcome.RENEWED, on_renew
                    row = await tx.one("lock_extend", **p, t=t)
                else:
                    outcome, event = LockOutcome.ACQUIRED, on_acquire
                    row = await tx.one("lock_take", **p, t=t, run=run)
            if fence is not None and event is not None:
                await self._events(tx, fence, [event], at)
            return LockResult(outcome, tx.rows.lock(row))

        return await self._tx("fast", body)

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        async def body(tx: Tx) -> LockRow | None:
            row = await tx.one(
                "renew_lock", scope=scope, key=key, holder=holder, ttl=ttl, now=tx.now(now)
            )
            return None if row is None else tx.rows.lock(row)

        return await self._tx("fast", body, single=True)

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
        async def body(tx: Tx) -> LockResult | None:
            cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
            if cur is None:
                return None
            current, t = tx.rows.lock(cur[:10]), cur[10]
            if current.released_at is not None or current.generation == 0:
                return None
            if holder is not None and current.holder != holder:
                if current.expires_at > tx.rows.t(t):
                    return LockResult(LockOutcome.CONFLICT, current)
                return None  # someone else's expired lock: nothing of ours to release
            row = await tx.one("lock_release", t=t, scope=scope, key=key)
            if fence is not None and event is not None:
                await self._events(tx, fence, [event], at)
            return LockResult(LockOutcome.ACQUIRED, tx.rows.lock(row))

        return await self._tx("fast", body)

    async def get_lock(self, scope: str, key: str) -> LockRow | None:
        return await self._get("get_lock", Rows.lock, scope=scope, key=key)

    async def list_locks(self, scope: str, *, run_id: str | None = None) -> list[LockRow]:
        return await self._list("list_locks", Rows.lock, scope=scope, run=run_id)


def finish_verb(fence: Fence) -> str:
    """The `_lifecycle` move `finish_run` makes through `fence`."""
    return "finish_run(compensating)" if fence.compensating else "finish_run"


def _event(rows: Rows, r: Any) -> EventRow:
    return EventRow(r[0], r[1], r[2], r[3], r[4], rows.t(r[5]))


def _heartbeat(rows: Rows, r: Any) -> HeartbeatRow:
    return HeartbeatRow(r[0], r[1], rows.t(r[2]), r[3])
