"""Verbs of the Store port, written once: waitpoints, the inbox, cancellation.

A run that waits registers a waitpoint and parks (status waiting). Whatever
resolves a waitpoint (an event, a signal, a token, a due timer, a child run
ending) makes its run runnable again (waiting -> pending) in the same
transaction. Events and signals that find no waiter are kept in an inbox until
they expire, so one that arrives just before its wait registers is not lost.

Waits of one run are serialised by locking the run first (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already admits one writer), so a
resolution racing a registration sees one or the other. Every verb that writes
a run's waits holds the run's row first, whoever it is for (a timer firing, an
event, a token, a child ending), and several runs are locked in the order of
their ids: a verb that took a wait and then waited for its run deadlocked with
one that took the run and then waited for the wait (PostgreSQL undid one of
them after a second). A child comes before its parent: a child's end holds the
child and then wakes the parent, so a cancel locks the children it reaches
(deepest first) before the run it cancels. An event is sent to no run in
particular: sending it and registering a wait for its type take a lock on the
type first (an advisory lock on PostgreSQL), else a wait registered while the
event is sent would miss it and be missed by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .._failure import ErrorRecord, encode_record
from ..errors import (
    InvalidArgumentError,
    RunFinishedError,
    RunNotFoundError,
    TokenCompletedError,
    TokenNotFoundError,
)
from ._base import StoreBase, Tx, outcome
from ._lifecycle import end_reason
from ._match import matches
from ._records import Fence, NewEvent, NewWait, RunStatus, WaitKind, WaitRow, WaitStatus
from ._rows import Rows

__all__ = ["WaitVerbs"]


_COMPENSATING = "it is running its compensations and ends when they have run"


async def _lock_run(tx: Tx, workflow_id: str) -> str:
    """Lock the run's row; its status. `RunNotFoundError` if there is none."""
    row = await tx.one("run_status_locked", wid=workflow_id)
    if row is None:
        raise RunNotFoundError(workflow_id)
    return str(row[0])


async def _lock_runs(tx: Tx, ids: Sequence[str]) -> None:
    """Lock these runs' rows, in one order, before writing their waits."""
    if ids:
        await tx.all("runs_lock", ids=tx.array(ids))


async def _token_unclaimed(tx: Tx, token_id: str, workflow_id: str) -> None:
    """Refuse a wait for a token the run did not make (called once the run's own wait
    for it was not found): the id already names another waitpoint, which completing it
    would resolve instead. Said plainly, not as the unique-key violation of the insert."""
    row = await tx.one("wait_owner", id=token_id)
    if row is not None:
        raise InvalidArgumentError(
            f"token {token_id!r} was not made by run {workflow_id!r}: it names a wait of "
            f"run {row[0]!r}. A run waits only for the tokens it made with "
            "wf.create_token(); make one in this run and hand out its id"
        )


async def _arrived(tx: Tx, w: WaitRow, at: datetime) -> tuple[str | None, int | None] | None:
    """What already arrived for a fresh pending wait: (payload, inbox id), or None."""
    if w.kind is WaitKind.SIGNAL:
        hit = await tx.one("inbox_signal", name=w.name, wid=w.workflow_id, at=at)
        if hit is None:
            return None
        await tx.execute("inbox_consume", wait=w.id, id=hit[0])
        return hit[1], hit[0]
    if w.kind is WaitKind.EVENT:
        for iid, body in await tx.all("inbox_events_for", wid=w.workflow_id, name=w.name, at=at):
            if matches(w.match, body):
                return body, iid
        return None
    if w.kind is WaitKind.RUN:
        child = await tx.one("child_outcome", id=w.name)
        if child is None or not RunStatus(child[0]).terminal:
            return None
        return outcome(child[0], child[1], child[2]), None
    return None


def _overdue(w: WaitRow, at: datetime) -> bool:
    """Whether `w` waits for a signal or an event past its timeout: one sent since came
    late (`send_signal` kept it for a later wait), and `fire_due` times `w` out. A child's
    end is not sent late: it resolves the wait as the child ends, whenever."""
    late = w.kind in (WaitKind.SIGNAL, WaitKind.EVENT)
    return late and w.due_at is not None and w.due_at <= at


class WaitVerbs(StoreBase):
    """Waitpoints, the inbox and cancellation."""

    async def _try_resolve(self, tx: Tx, w: WaitRow, at: datetime) -> WaitRow:
        found = await _arrived(tx, w, at)
        if found is None:
            return w
        row = await tx.one("wait_resolve", payload=found[0], inbox=found[1], at=at, id=w.id)
        return tx.rows.wait(row)

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        """Record the waitpoint unless the run already has one under `wait.key`.

        A pending waitpoint is resolved at once if what it waits for is already
        there: an unconsumed signal in the inbox, an inbox event sent since the
        run was created that no other wait of the run took (one a rerun forgot
        included: the rerun asks again), a child run that ended. Returns the
        waitpoint as it stands.
        """

        async def body(tx: Tx) -> WaitRow:
            if wait.kind is WaitKind.EVENT:  # first, as send_event takes it (no deadlock)
                await tx.one("event_lock", name=wait.name)
            status = await _lock_run(tx, fence.workflow_id)
            row = await self._wait_row(tx, fence, wait, at)
            if status == RunStatus.WAITING.value and row.status is not WaitStatus.PENDING:
                # a branch of the run's code that went on after a sibling's wait parked
                # the run has its answer, which nothing else wakes the run for: its
                # code had moved on without it, so the run is replayed to take it
                await self._wake(tx, [(fence.workflow_id, row.key, row.status.value)], at)
            return row

        return await self._tx("fast", body)

    async def _wait_row(self, tx: Tx, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        """The run's waitpoint `wait.key` (registered now if it has none), resolved
        if what it waits for is there; the run is locked."""
        found = await tx.one("wait_get", wid=fence.workflow_id, key=wait.key)
        if found is not None:
            existing = tx.rows.wait(found)
            if existing.status is not WaitStatus.PENDING:
                return existing
            if existing.due_at is None and wait.due_at is not None:
                # a timeout given at the wait (a token made without one)
                await tx.execute("wait_set_due", due=wait.due_at, id=existing.id)
                existing = replace(existing, due_at=wait.due_at)
            if _overdue(existing, at):
                return existing  # past its timeout: what came since is not for it (`fire_due`)
            return await self._try_resolve(tx, existing, at)
        if wait.wait_id is not None:
            await _token_unclaimed(tx, wait.wait_id, fence.workflow_id)
        await self._events(tx, fence, [NewEvent("wait.registered", wait.key)], at)
        row = await tx.one(
            "wait_insert",
            id=wait.wait_id or uuid.uuid4().hex,
            wid=fence.workflow_id,
            key=wait.key,
            kind=wait.kind.value,
            name=wait.name,
            match=wait.match,
            due=wait.due_at,
            at=at,
            seq=wait.order,
        )
        return await self._try_resolve(tx, tx.rows.wait(row), at)

    async def list_waits(self, workflow_id: str) -> list[WaitRow]:
        return await self._list("list_waits", Rows.wait, wid=workflow_id)

    async def next_due(self) -> datetime | None:
        """When the earliest pending timer or wait timeout comes due (None: none is set),
        read from the index `fire_due` uses; what lets a test skip time to it."""

        async def body(tx: Tx) -> datetime | None:
            return tx.rows.ot((await tx.one("next_due"))[0])

        return await self._tx("read", body)

    async def park_run(
        self, fence: Fence, keys: Sequence[str], *, compute_seconds: float, at: datetime
    ) -> bool:
        """Park the run (status waiting) unless one of the waitpoints `keys` resolved.

        Returns False, and leaves the run running, when one already resolved:
        the caller resumes at once instead of sleeping on a wake-up that came.
        """

        async def body(tx: Tx) -> bool:
            await _lock_run(tx, fence.workflow_id)
            ready = await tx.one("waits_resolved", wid=fence.workflow_id, keys=tx.array(keys))
            if ready is not None:
                return False
            await self._events(tx, fence, [NewEvent("workflow.waiting", ", ".join(keys))], at)
            await tx.execute("park_run", cs=compute_seconds, wid=fence.workflow_id)
            await tx.notify(f"run:{fence.workflow_id}")
            return True

        return await self._tx("write", body)

    async def send_event(
        self, type: str, payload: str | None, *, at: datetime, expires_at: datetime
    ) -> list[str]:
        """Resolve every pending event wait it matches; keep it in the inbox. Woken run ids.
        A wait whose timeout has passed is left to time out, as in `send_signal`."""

        async def body(tx: Tx) -> list[str]:
            # a wait for it registered meanwhile either finds it in the inbox or is found
            await tx.one("event_lock", name=type)
            await _lock_runs(tx, [r[0] for r in await tx.all("event_wait_runs", name=type)])
            row = await tx.one(
                "inbox_add_event", name=type, payload=payload, at=at, expires=expires_at
            )
            resolved: list[tuple[str, str, str]] = []
            seen: set[str] = set()
            for wid, run_id, key, match in await tx.all("waits_for_event", name=type, at=at):
                if run_id in seen or not matches(match, payload):
                    continue  # one event resolves at most one wait per run
                seen.add(run_id)
                await tx.execute("wait_resolve", payload=payload, inbox=row[0], at=at, id=wid)
                resolved.append((run_id, key, "resolved"))
            return await self._wake(tx, resolved, at)

        return await self._tx("write", body)

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        at: datetime,
        expires_at: datetime,
    ) -> list[str]:
        """Resolve the run's oldest pending wait for `name`, or keep it in the inbox.

        A wait whose timeout has passed is not resolved, though `fire_due` has not timed
        it out yet: the signal came late, and is kept (for a later wait of the name) as
        it would have been had the timeout been fired first. A late signal was the
        wait's answer or not by whether a worker's tick came between."""

        async def body(tx: Tx) -> list[str]:
            status = await _lock_run(tx, workflow_id)
            if RunStatus(status).terminal:
                raise RunFinishedError(workflow_id, status, f"signal {name!r} to")
            wait = await tx.one("wait_for_signal", wid=workflow_id, name=name, at=at)
            if wait is None:
                await tx.execute(
                    "inbox_add_signal",
                    wid=workflow_id,
                    name=name,
                    payload=payload,
                    at=at,
                    expires=expires_at,
                )
                await self._events(tx, Fence(workflow_id), [NewEvent("signal.kept", name)], at)
                return []
            await tx.execute("wait_resolve", payload=payload, inbox=None, at=at, id=wait[0])
            return await self._wake(tx, [(workflow_id, wait[1], "resolved")], at)

        return await self._tx("write", body)

    async def complete_token(self, token_id: str, payload: str | None, *, at: datetime) -> str:
        """Resolve the token's waitpoint; the run id. Completing it twice raises
        `TokenCompletedError` (a conflict with what is recorded, saying what that is)."""

        async def body(tx: Tx) -> str:
            row = await tx.one("token_get", id=token_id)
            if row is None:
                raise TokenNotFoundError(token_id)
            status = await _lock_run(tx, row[0])
            row = await tx.one("token_get", id=token_id)  # as it stands under the run's lock
            if row is None:  # (its run was deleted meanwhile)
                raise TokenNotFoundError(token_id)
            if row[2] == "cancelled" and RunStatus(status).terminal:
                # closed with its run's end (or cancel): say so
                raise RunFinishedError(row[0], status, f"complete token {token_id!r} of")
            if row[2] != "pending":
                w = tx.rows.wait(await tx.one("wait_get", wid=row[0], key=row[1]))
                raise TokenCompletedError(
                    w.id, w.workflow_id, w.status.value, w.resolved_at, w.payload
                )
            await tx.execute("wait_resolve", payload=payload, inbox=None, at=at, id=token_id)
            await self._wake(tx, [(row[0], row[1], "resolved")], at)
            return str(row[0])

        return await self._tx("write", body)

    async def fire_due(self, *, now: datetime | None, at: datetime) -> list[str]:
        """Resolve due timers, time out waits past their timeout, drop expired inbox items.

        Also resolves waits on children that ended without reaching them: `finish_run`
        wakes a parent in its own transaction, so this only repairs databases written by
        an older tether (whose PostgreSQL store woke the parent in a second one).
        """

        async def body(tx: Tx) -> list[str]:
            due = [r[0] for r in await tx.all("waits_due_runs", now=tx.now(now))]
            rows: list[Any] = []
            if due:
                await _lock_runs(tx, due)
                rows = await tx.all("waits_due", at=at, now=tx.now(now), ids=tx.array(due))
            woken: list[str] = []
            for name, st, out, err in await tx.all("waits_on_ended_children"):
                woken += await self._child_ended(tx, name, st, out, err, at)
            await tx.execute("inbox_expire", now=tx.now(now))
            return woken + await self._wake(tx, [(r[0], r[1], r[2]) for r in rows], at)

        return await self._tx("write", body)

    async def cancel_run(
        self, workflow_id: str, *, reason: str | None, compensate: bool, at: datetime
    ) -> list[str]:
        """Cancel the run, its pending waits, and (recursively) the children it waits on.

        One transaction. Returns the cancelled run ids, the run first. A run
        already terminal raises `RunFinishedError`, as does one whose function
        failed and whose compensations are running (`mark_failing`): it is
        ending, and a cancel would run them a second time. Such a child of a
        cancelled run is left to end on its own. With `compensate`, a queued
        run gets a job for its compensation (unless a worker holds its job: that
        worker compensates it), as a woken queued run gets one: workers drive it.
        """
        error = encode_record(ErrorRecord.cancelled(reason))
        mode = "compensate" if compensate else None
        why = str(end_reason("cancel_run", RunStatus.CANCELLED))

        async def body(tx: Tx) -> list[str]:
            await tx.all("cancel_tree_lock", wid=workflow_id)  # the children first
            found = await tx.one("run_status_locked", wid=workflow_id)
            if found is None:
                raise RunNotFoundError(workflow_id)
            if RunStatus(found[0]).terminal:
                raise RunFinishedError(workflow_id, found[0], "cancel")
            if found[1] is not None:  # its function failed; its compensations are running
                raise RunFinishedError(workflow_id, found[1], "cancel", _COMPENSATING)
            cancelled: list[str] = []
            todo = [workflow_id]
            while todo:
                rid = todo.pop(0)
                row = await tx.one("cancel_one", error=error, at=at, mode=mode, reason=why, id=rid)
                if row is None:
                    continue
                cancelled.append(rid)
                await tx.execute("jobs_cancel_queued", at=at, id=rid)
                if compensate and row[1] is not None:
                    await self._enqueue_next(tx, rid, at)
                await self._events(tx, Fence(rid), [NewEvent("workflow.cancelled", reason)], at)
                children = await tx.all("waits_cancel", at=at, id=rid)
                todo.extend(name for kind, name in children if kind == "run")
                # a parent waiting on this run is woken to see it cancelled
                await self._child_ended(tx, rid, "cancelled", None, error, at)
                await tx.notify(f"run:{rid}")
            return cancelled

        cancelled = await self._tx("write", body)
        for wid in cancelled:  # a step of theirs ending here is refused as it ends
            self._note_moved(wid, None)
        return cancelled
