"""Verbs of the Store port, written once: runs, events, steps, locks, heartbeats."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._base import Mode, StoreBase, Tx, fenced_params
from ._lifecycle import TERMINAL, end_reason
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
    RunHistory,
    RunRow,
    RunStatus,
    StepRow,
    kept_attempt,
)
from ._rows import Rows, started_step
from ._verbs_ai import usage_row, write_attached

__all__ = ["HeldCompletion", "RunVerbs", "finish_verb"]


@dataclass(frozen=True, slots=True)
class HeldCompletion:
    """A step's completion waiting for the store's next write (`_deferred`): a
    transaction body, and the facts a dialect needs to fold it into the next
    statement (PostgreSQL: with the next step's start marker)."""

    store: RunVerbs
    name: str  # the query (its variant)
    fence: Fence
    key: str
    result: str
    event: NewEvent
    at: datetime
    rows: Sequence[object]

    async def __call__(self, tx: Tx) -> Any:
        body = self.store._fenced_body(
            self.name, self.fence, self.event, self.at, self.rows, key=self.key, result=self.result
        )
        return await body(tx)


class RunVerbs(StoreBase):
    """Runs, events, steps, locks and heartbeats."""

    # whether a completion with attached rows (AI calls) may be held (`_may_hold`)
    holds_rows = True

    # -- runs -------------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        """Insert the run unless one with its id (or its idempotency key) exists.

        Returns (row, created); the row is the existing run when not created,
        so two callers racing with one idempotency key get the same run.
        """
        return await self._tx("write", lambda tx: self._insert_run(tx, run, at))

    async def get_run(self, workflow_id: str) -> RunRow | None:
        return await self._get("get_run", Rows.run, id=workflow_id)

    async def newest_generations(self, bases: Sequence[str]) -> dict[str, RunRow]:
        """The newest run of each name of `bases` that has one, by name, in one query:
        a name's runs are ``<base>`` (the first) and ``<base>:<n>`` (the n-th), and the
        highest surviving `n` is the newest, whichever earlier ones were deleted (the
        agents dispatcher's issue runs, read for a backlog of thousands at each tick)."""

        async def body(tx: Tx) -> dict[str, RunRow]:
            rows = await tx.all("newest_generations", bases=tx.array(list(dict.fromkeys(bases))))
            return {str(r[0]): tx.rows.run(r[1:]) for r in rows}

        return await self._tx("read", body)

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        """Newest first."""
        st = None if status is None else status.value
        return await self._list("list_runs", Rows.run, status=st, limit=limit)

    async def run_history(
        self, workflow_id: str, *, lease_scopes: tuple[str, str]
    ) -> RunHistory | None:
        """The run's row and what is recorded of it, read at once (on PostgreSQL in one
        round trip, not seven): steps, events, heartbeats, AI usage per model, and the
        leases it holds, of `lease_scopes` = (the scope shared by runs, in which the
        run's own are picked out by its id; the run's private scope). None if no run."""
        shared, private = lease_scopes
        wid = workflow_id

        async def body(tx: Tx) -> RunHistory | None:
            run, steps, events, beats, held, kept, usage = await tx.many(
                [
                    ("get_run", {"id": wid}),
                    ("load_steps", {"wid": wid}),
                    ("list_events", {"wid": wid, "after": 0, "limit": None}),
                    ("list_heartbeats", {"wid": wid}),
                    ("list_locks", {"scope": shared, "run": wid}),
                    ("list_locks", {"scope": private, "run": None}),
                    ("ai_usage_of_run", {"wid": wid}),
                ]
            )
            if not run:
                return None
            r = tx.rows
            return RunHistory(
                r.run(run[0]),
                [r.step(x) for x in steps],
                [r.event(x) for x in events],
                [r.heartbeat(x) for x in beats],
                [r.lock(x) for x in (*held, *kept)],
                [usage_row(x[0], x[1:]) for x in usage],
            )

        return await self._tx("read", body)

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
        """Take ownership: generation + 1, status running. Fences out any older owner.

        With `lease` (seconds), the claim lapses at `now` + lease unless
        `renew_owner` extends it (without, anyone may take the run over). A run
        that another owner holds with a live claim is refused with
        `RunAlreadyRunningError`; a lapsed claim, or one held by
        `dead_owner` (an owner known to be dead), is taken over. With `force`
        the run is taken whoever holds it (a worker's job lease already
        guarantees it is the only one).
        A cancelled (or compensated) run cannot be claimed: `RunFinishedError`.
        With `compensating`, only a run cancelled with compensation pending can
        be, and it stays cancelled while its compensations run.
        """
        name = "claim_run_compensating" if compensating else "claim_run"
        p = {"wid": workflow_id, "owner": owner, "lease": lease, "force": force, "at": at}
        return await self._claim(name, event, now, compensating, dead=dead_owner, **p)

    async def _claim(
        self, name: str, event: NewEvent, now: datetime | None, compensating: bool, **p: Any
    ) -> RunRow:
        """Run claim query `name`, then write `event` under the new owner's fence."""

        async def body(tx: Tx) -> RunRow:
            row = await tx.one(name, now=tx.now(now), **p)
            if row is None:
                raise await self._claim_refusal(tx, p["wid"], compensating)
            claimed = tx.rows.run(row)
            fence = Fence(claimed.workflow_id, claimed.generation, compensating)
            await self._events(tx, fence, [event], p["at"])
            return claimed

        run = await self._tx("write", body)
        self._note_moved(run.workflow_id, run.generation)
        return run

    async def renew_owner(
        self, owner: str, workflow_ids: Sequence[str], *, lease: float, now: datetime | None
    ) -> dict[str, RunStatus]:
        """Extend `owner`'s claims on those of `workflow_ids` it still holds (running,
        or compensating a cancel), with the status of each: one missing was ended or
        taken over meanwhile, one cancelled is to be compensated."""

        async def body(tx: Tx) -> dict[str, RunStatus]:
            ids = tx.array(workflow_ids)
            rows = await tx.all("renew_owner", now=tx.now(now), lease=lease, owner=owner, ids=ids)
            return {str(wid): RunStatus(status) for wid, status in rows}

        return await self._tx("fast", body, single=True)

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        """Hand a running run back (clean exit): status pending, no live claim, `event`
        written; runnable at once by anyone. False if the run is no longer this
        owner's or no longer running.
        """

        async def body(tx: Tx) -> bool:
            found = await tx.one("release_run_check", wid=fence.workflow_id, gen=fence.generation)
            if found is None or found[0] != "running":
                return False
            await self._events(tx, fence, [event], at)
            await tx.execute("release_run", wid=fence.workflow_id)
            await tx.notify(f"run:{fence.workflow_id}")
            return True

        return await self._tx("write", body)

    async def release_claim(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        """Give up the claim on a run whose compensation a clean exit interrupted: its
        status stays (cancelled, compensation pending) and the next process that
        drives it, or adopts it as an orphan, compensates what is left."""

        async def body(tx: Tx) -> bool:
            await self._events(tx, fence, [event], at)
            await tx.execute("release_claim", wid=fence.workflow_id, gen=fence.generation)
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
        """End the run; add `compute_seconds` of execution; wake a parent waiting on it.

        One transaction: the end, its event, and the wake-up of a parent waiting on it
        (unless `_finish_at_once` could end it in one statement). Records the run's
        `EndReason`: `reason`, or the one `_lifecycle.END_REASONS` gives first for this
        move (a compensating fence ends a cancelled run).
        """
        ended = end_reason(finish_verb(fence), status, reason)
        p = {"output": output, "error": error, "cs": compute_seconds,
             "reason": None if ended is None else ended.value}  # fmt: skip
        # a run that ended by its own function takes its claimed job with it
        close_job = not fence.compensating and status in (RunStatus.COMPLETED, RunStatus.FAILED)
        if await self._finish_at_once(fence, status, event, at, closejob=close_job, **p):
            return

        async def body(tx: Tx) -> list[Any]:
            wid = fence.workflow_id
            await self._events(tx, fence, [event], at)
            await self._end_run(tx, wid, status, at, **p)
            return await tx.all("close_job_of_run", wid=wid, at=at) if close_job else []

        self._closed_with_run(await self._tx("write", body))  # once committed

    async def _finish_at_once(
        self, fence: Fence, status: RunStatus, event: NewEvent, at: datetime, **p: Any
    ) -> bool:
        """End the run in one statement if the dialect can (no: False, `finish_run`'s
        transaction does it), closing its claimed job too if `closejob`."""
        return False

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        await self._fenced_write("write", "set_state", fence, event, at, state=state)

    async def mark_failing(
        self, fence: Fence, *, error: str, reason: EndReason, at: datetime, event: NewEvent
    ) -> None:
        """Record that the running run's function failed (its error and `EndReason`)
        before its compensations run: from here on it is ending, so `cancel_run`
        refuses it rather than compensating it a second time."""
        await self._fenced_write(
            "write", "mark_failing", fence, event, at, error=error, reason=reason.value
        )

    async def _fenced_write(
        self,
        mode: Mode,
        name: str,
        fence: Fence,
        event: NewEvent,
        at: datetime,
        rows: Sequence[object] = (),
        **p: Any,
    ) -> Any:
        """Write `event` under `fence` and run query `name` (with ``wid`` and ``at``), and
        the `rows` a step attached, in one transaction; the query's first row.

        Where the dialect's query checks the fence and writes the event itself
        (`fenced_queries`), that is one statement, without BEGIN/COMMIT unless
        `rows` are written too."""
        body = self._fenced_body(self._variant(name, mode), fence, event, at, rows, **p)
        return await self._tx(mode, body, single=self.fenced_queries and not rows)

    async def _may_hold(self, fence: Fence, rows: Sequence[object]) -> bool:
        """Whether a completion may wait for the next write. It is held unread (a read
        would cost what holding saves), unless this store itself has since cancelled
        the run or given it to a newer owner: then it is written, and refused, at once,
        so a cancel or takeover from this process is learnt as the step ends. One from
        another process is learnt at the run's next write, which the completion rides
        on and is dropped with (as if the cancel had come a moment later)."""
        if rows and not self.holds_rows:
            return False
        moved = self._moved.get(fence.workflow_id, 0)
        if moved is None:  # cancelled here
            return fence.compensating
        return fence.generation is None or fence.generation >= moved

    def _fold(self, fence: Fence, key: str | None = None) -> HeldCompletion | None:
        """Take the held completion if it is exactly one, of the run `fence` writes
        for, and another step than `key` (one statement may change a row once), so
        the caller's write carries it under one fence check; else leave what is held."""
        assert self.deferred is not None
        held = self.deferred.take()
        done = held[0] if len(held) == 1 and not self.deferred.writing else None
        if (
            isinstance(done, HeldCompletion)
            and (done.fence is fence or done.fence == fence)
            and done.key != key
            and self._foldable(done)
        ):  # fmt: skip
            return done
        self.deferred.give_back(held)
        return None

    def _foldable(self, done: HeldCompletion) -> bool:
        """Whether the dialect's carrying write can take `done` (`_fold`)."""
        return True

    def _fenced_body(
        self,
        name: str,
        fence: Fence,
        event: NewEvent,
        at: datetime,
        rows: Sequence[object] = (),
        **p: Any,
    ) -> Callable[[Tx], Awaitable[Any]]:
        """The transaction body of `_fenced_write`."""

        async def body(tx: Tx) -> Any:
            if self.fenced_queries:
                row = await tx.one(name, **fenced_params(fence, event), at=at, **p)
                if row is None:
                    raise await self._fence_failure(tx, fence)
            else:
                await self._events(tx, fence, [event], at)
                row = await tx.one(name, wid=fence.workflow_id, at=at, **p)
            if rows:
                await write_attached(self, tx, fence, p["key"], rows, at)
            return row

        return body

    # -- events -----------------------------------------------------------------------

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        if events:
            await self._tx("write", lambda tx: self._events(tx, fence, events, at))

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        """Events of one run in `seq` order."""
        return await self._list(
            "list_events", Rows.event, wid=workflow_id, after=after_seq, limit=limit
        )

    async def latest_events(self, workflow_ids: Sequence[str]) -> dict[str, EventRow]:
        """The newest event of each run of `workflow_ids` that has one, by run: where
        each of a list of runs stands, without reading their histories."""

        async def body(tx: Tx) -> dict[str, EventRow]:
            rows = await tx.all("latest_events", wids=tx.array(list(workflow_ids)))
            return {e.workflow_id: e for e in (tx.rows.event(r) for r in rows)}

        return await self._tx("read", body)

    async def last_event(self, workflow_id: str, type: str) -> EventRow | None:
        """The run's latest event of `type`, or None: read backwards along the run's
        events from its last, so a type written often costs a row or a few, not the
        history (a remote run's count of invocations, in the latest one's detail)."""
        return await self._get("last_event", Rows.event, wid=workflow_id, type=type)

    # -- steps ------------------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        return await self._list("load_steps", Rows.step, wid=workflow_id)

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        """Count one more attempt and mark the step running.

        If the recorded idempotency key differs, the step starts over (attempts
        reset, result dropped). Only has to survive a process crash, so an
        adapter may commit it without waiting for the disk.
        """
        row = await self._fenced_write(
            "fast", "start_step", fence, event, at, key=key, ikey=idempotency_key
        )
        return started_step(fence.workflow_id, key, idempotency_key, row, at)

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
        """Record the step's result, durably: before it returns or, where the store
        holds completions (`deferred`, SQLite), in its next transaction, made this
        turn of the event loop if no other comes (see `_deferred`).

        `rows` are what the attempt attached (`NewAICall`, `NewEvent`), written in
        the same transaction; AI calls are keyed (run, step, attempt, position), so
        a completion written twice (a replay after a lost connection) adds none.
        """
        if self.deferred is not None and await self._may_hold(fence, rows):
            name = self._variant("complete_step", "write")
            self.deferred.add(HeldCompletion(self, name, fence, key, result, event, at, rows))
            return
        await self._fenced_write(
            "write", "complete_step", fence, event, at, rows, key=key, result=result
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
        rows: Sequence[object] = (),
    ) -> None:
        """Record a failed attempt; `final` marks the step failed for good. `rows` as
        for `complete_step` (a failed call still used tokens, and is logged).
        """
        mode: Mode = "write" if final or rows else "fast"
        await self._fenced_write(mode, "fail_step", fence, event, at, rows, key=key, error=error)

    async def save_value(
        self,
        fence: Fence,
        key: str,
        value: str,
        at: datetime,
        *,
        state: str | None = None,
        events: Sequence[NewEvent] = (),
    ) -> int:
        """Record a completed step that had no side effect (a recorded now(), uuid(), ...),
        with the run's new `state` and `events` if given: a state update or a custom
        event that the run's code makes once, however often a resume runs that code.
        The run's event number after it, kept as the value's `seq` (its write's place
        in the run, which a replay of `for_each` items cannot tell from their order)."""

        async def body(tx: Tx) -> int:
            seq = await self._events(tx, fence, list(events), at)
            wid = fence.workflow_id
            await tx.execute("save_value", wid=wid, key=key, value=value, at=at, seq=seq)
            if state is not None:
                await tx.execute("write_state", wid=wid, state=state, at=at)
            return seq

        return await self._tx("write", body)

    # -- heartbeats -------------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None:
        await self._fenced_write(
            "fast", "record_heartbeat", fence, event, at, key=key, detail=detail
        )

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]:
        return await self._list("list_heartbeats", Rows.heartbeat, wid=workflow_id)

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
        take_from: str | None = None,
        on_take: NewEvent | None = None,
        at: datetime,
    ) -> LockResult:
        """Acquire if free, released or expired; renew if `holder` holds it.

        Otherwise return outcome CONFLICT with the current holder's row and
        write nothing. The matching event is written with the change. Under a `fence`
        the change is refused (`StaleOwnerError`) once the run has a newer owner, with
        an event or without one: a renewal with none (a mutex's acquire retried after
        its reply was lost) kept an old owner's hold alive beside the new owner's.

        `take_from`: a holder (a dead earlier owner of the fence's run) whose hold,
        active or not, passes to `holder` in this change (`on_take` written before
        `on_acquire`). A release then an acquire let a waiter in between take the key
        from the run going on in its block.
        """
        run = None if fence is None else fence.workflow_id
        p = {"scope": scope, "key": key, "holder": holder, "ttl": ttl, "detail": detail}

        async def body(tx: Tx) -> LockResult:
            cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
            events = [on_acquire]
            if cur is None:  # nobody ever held it: insert (a racing inserter wins on PG)
                row = await tx.one("lock_insert", **p, run=run, now=tx.now(now))
                if row is None:
                    cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
                outcome = LockOutcome.ACQUIRED
            if cur is not None:
                current, t, active = _current(tx.rows, cur)
                taken = _takes(current, take_from, run)
                if active and current.holder != holder and not taken:
                    return LockResult(LockOutcome.CONFLICT, current)
                if active and not taken:
                    outcome, events = LockOutcome.RENEWED, [on_renew]
                    row = await tx.one("lock_extend", **p, t=t)
                else:
                    outcome, events = LockOutcome.ACQUIRED, [on_take if taken else None, *events]
                    row = await tx.one("lock_take", **p, t=t, run=run)
            if fence is not None:  # in this transaction: a refused fence undoes the change
                await self._events(tx, fence, [e for e in events if e is not None], at)
            return LockResult(outcome, tx.rows.lock(row))

        return await self._tx("fast", body)

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        """Push the expiry out if `holder` still holds it; None if it lost the lock."""

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
        """Release if held by `holder` (any holder when None).

        Returns None when there is nothing to release, CONFLICT (and writes
        nothing) when another holder holds it, else the released row.
        """

        async def body(tx: Tx) -> LockResult | None:
            cur = await tx.one("lock_current", scope=scope, key=key, now=tx.now(now))
            if cur is None:
                return None
            current, t, active = _current(tx.rows, cur)
            if current.released_at is not None or current.generation == 0:
                return None
            if holder is not None and current.holder != holder:
                if active:
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
        """Locks of `scope` (taken by run `run_id` only, if given), by key."""
        return await self._list("list_locks", Rows.lock, scope=scope, run=run_id)

    async def forget_silent_locks(
        self, scope: str, *, silent_for: float, now: datetime | None
    ) -> int:
        """Delete the locks of `scope` no longer held (released or lapsed) whose holder
        has given no sign (a renewal, the release) for over `silent_for` seconds; the
        number deleted. Each process that drives runs announces itself under a lock of
        its own, so a deployment that restarts its workers kept one row per process
        ever started. Never deleted: a lock taken by a run (a mutex its parked run
        keeps, which lapses but is held), nor one whose holder still owns a running run
        under a live claim."""
        return await self._tx(
            "write",
            lambda tx: tx.execute(
                "forget_silent_locks", scope=scope, silent=silent_for, now=tx.now(now)
            ),
            single=True,
        )


def _takes(current: LockRow, take_from: str | None, run: str | None) -> bool:
    """Whether `current`, unreleased, is the hold of `take_from` taken by its own run."""
    return (
        take_from is not None
        and current.holder == take_from
        and current.released_at is None
        and current.run_id == run
    )


def _current(rows: Rows, cur: Sequence[Any]) -> tuple[LockRow, Any, bool]:
    """A `lock_current` row: the lock, the database's time, and whether it is held:
    not released, and not expired, or, if its run parked inside the block and keeps
    it (`kept_detail`), while that run lives in the attempt that kept it."""
    lock, t, status, attempt = rows.lock(cur[:10]), cur[10], cur[11], cur[12]
    if lock.released_at is not None:
        return lock, t, False
    kept = kept_attempt(lock.detail)
    if kept is not None:
        return lock, t, kept == attempt and status not in TERMINAL
    return lock, t, lock.expires_at > rows.t(t)


def finish_verb(fence: Fence) -> str:
    """The `_lifecycle` move `finish_run` makes through `fence`."""
    return "finish_run(compensating)" if fence.compensating else "finish_run"
