"""Verbs of the Store port, written once: job queue, outbox, idempotency, pruning.

A run submitted to a queue is driven by jobs. A job is claimed by one worker at
a time under a visibility lease the worker renews; an expired lease puts the
job back. Delivery is at least once; the run's owner fencing and its recorded
steps make it effectively once. Waking a queued run (a signal, a timer, ...)
enqueues its next job in the same transaction.

A claim is one transaction that selects ready jobs and flips them to claimed.
SQLite admits one writer, so claims cannot interleave; PostgreSQL locks the
rows (``FOR UPDATE SKIP LOCKED``), takes an advisory lock per concurrency key
and per capped queue, and a unique index admits one claimed job per key.

A job records its run's workflow (name, version), and a worker's claim names the
workflows it registered: it takes only their jobs, from an index, so a job of a
workflow it does not know is never claimed and handed back (which took its slots
and its queue's rate, and could keep it from its own jobs) but waits, untouched,
for a worker that knows it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from .._failure import ErrorRecord, decode_error, encode_record
from .._owners import local_owners_like, owner_is_dead
from ..errors import (
    IdempotencyInProgressError,
    InvalidArgumentError,
    RunNotFoundError,
    StoreError,
)
from ._base import StoreBase, Tx
from ._lifecycle import RERUNNABLE, TERMINAL, end_reason, moves
from ._records import (
    Claimed,
    EndReason,
    Fence,
    JobRow,
    NewEvent,
    NewJob,
    NewRun,
    OutboxRow,
    QueueLimit,
    RunClaim,
    RunRow,
    RunStatus,
)
from ._rows import Rows

__all__ = ["QueueVerbs"]

# a rerun that forgets nothing: no event of a run comes after it
_NOTHING = 1 << 62
_MAX_LIMIT = 2**63 - 1  # the largest LIMIT both databases take


def _at_most(limit: int) -> int:
    """`limit` as a LIMIT: "at most 10**20" means all of them, where it was a raw
    OverflowError (SQLite) or a bare "bigint out of range" (PostgreSQL)."""
    return min(limit, _MAX_LIMIT)


# every table that holds rows of a run, by the query that deletes them
_RUN_TABLES = (
    "delete_steps",
    "delete_events",
    "delete_waits",
    "delete_jobs",
    "delete_heartbeats",
    "delete_locks",
    "delete_inbox",
    "delete_idempotency_of",
)


async def _pick(
    tx: Tx,
    queues: Sequence[str],
    limit: int,
    limits: dict[str, QueueLimit],
    now: object,
    p: dict[str, Any],
) -> tuple[list[int], bool]:
    """Ids of up to `limit` ready jobs, best priority first across `queues` (the oldest
    first among equals, whatever order the queues were named in), within each queue's
    caps and one per concurrency key; of the workflows in `p` (`_workflow_params`).
    And whether it picked `limit` and ready jobs were left (`Claimed.more`)."""
    rooms: dict[str, int] = {}
    ready: list[tuple[int, int, str, str | None]] = []  # (-priority, id, queue, key)
    # a job as good as those picked left over (`Claimed.more`): from the candidates, up
    # to four times the room of each queue
    of: dict[str, Any] = {}
    if "wnames" in p:
        of = {"wnames": tx.array(p["wnames"]), "wversions": tx.array(p["wversions"])}
    # queues in one order for every claim: each capped one takes its lock, and two
    # workers of `-q a,b` and `-q b,a` deadlocked (PostgreSQL broke it after a second)
    for queue in sorted(queues):
        room = await _room(tx, queue, limit, limits.get(queue), now)
        if room > 0:
            rooms[queue] = room
            query = "ready_jobs_of" if of else "ready_jobs"
            rows = await tx.all(query, q=queue, now=now, room=room * 4, **of)
            ready += [(-priority, job_id, queue, key) for job_id, key, priority in rows]
    picked: list[int] = []
    keys: set[str] = set()
    for _, job_id, queue, key in sorted(ready):
        if len(picked) >= limit:
            break
        if rooms[queue] <= 0 or (key is not None and key in keys):
            continue  # the queue is full; or one claimed job per key, also within this claim
        if key is not None:
            keys.add(key)
        picked.append(job_id)
        rooms[queue] -= 1
    return picked, len(picked) >= limit and len(ready) > len(picked)


async def _room(tx: Tx, queue: str, room: int, cap: QueueLimit | None, now: object) -> int:
    """How many more jobs of `queue` this claim may take under its caps."""
    if cap is None or (cap.concurrency is None and cap.rate_per_second is None):
        return room
    await tx.one("queue_lock", q=queue)
    starts, window = _rate_window(cap.rate_per_second)
    counts = await tx.one("queue_counts", q=queue, now=now, window=window)
    if cap.concurrency is not None:
        room = min(room, cap.concurrency - counts[0])
    if cap.rate_per_second is not None:
        room = min(room, starts - counts[1])
    return room


def _rate_window(rate: float | None) -> tuple[int, float]:
    """A rate as (starts, per seconds): a whole number of starts over the shortest
    window of at least a second that holds it exactly (0.5/s: 1 per 2 s; 1.5/s: 2 per
    1.33 s; 20/s: 20 per 1 s)."""
    if rate is None:
        return 0, 1.0
    starts = math.ceil(rate)
    return starts, starts / rate


def _workflow_params(workflows: Sequence[tuple[str, str | None]] | None) -> dict[str, Any]:
    """The claim query parameters of `workflows` (none: a job of any workflow): their
    names and versions, and a null pair for the jobs an older tether queued without
    their workflow, which any worker claims, as it did."""
    if workflows is None:
        return {}
    pairs = [*dict.fromkeys((str(n), v) for n, v in workflows), (None, None)]
    return {"wnames": [n for n, _ in pairs], "wversions": [v for _, v in pairs]}


def _run_claim(runs: RunClaim | None) -> dict[str, Any]:
    """The claim query parameters of `runs` (owner NULL: claim no run)."""
    # a run another live process drives is not taken from it (its job waits)
    p: dict[str, Any] = {"force": False, "dead": None}
    if runs is None:
        return p | {"owner": None, "lease": 0.0, "etype": "", "names": [], "versions": []}
    return p | {
        "owner": runs.owner,
        "lease": runs.lease,
        "etype": runs.event,
        "names": [name for name, _ in runs.workflows],
        "versions": [version for _, version in runs.workflows],
    }


class QueueVerbs(StoreBase):
    """Job queue, outbox, idempotent commands and pruning."""

    async def submit_run(self, run: NewRun, job: NewJob, at: datetime) -> tuple[RunRow, bool]:
        """Create the run (as `create_run`) and, if created, queue its first job."""

        async def body(tx: Tx) -> tuple[RunRow, bool]:
            row, created = await self._insert_run(
                tx, _queued(run, job.queue), at, ckey=job.concurrency_key
            )
            if created:
                await tx.execute(
                    "insert_job",
                    id=row.workflow_id,
                    wname=row.workflow_name,
                    wversion=row.workflow_version,
                    queue=job.queue,
                    priority=job.priority,
                    max=job.max_attempts,
                    ckey=job.concurrency_key,
                    after=job.run_after or at,
                    at=at,
                )
                event = NewEvent("workflow.submitted", job.queue)
                await self._events(tx, Fence(row.workflow_id), [event], at)
                await tx.notify("jobs")
            return row, created

        return await self._tx("write", body)

    async def claim_jobs(
        self,
        worker: str,
        queues: Sequence[str],
        *,
        limit: int,
        visibility: float,
        limits: dict[str, QueueLimit],
        now: datetime | None,
        at: datetime,
        runs: RunClaim | None = None,
        workflows: Sequence[tuple[str, str | None]] | None = None,
    ) -> Claimed:
        """Claim up to `limit` ready jobs, best priority first.

        One atomic transition admits one runner: queued -> claimed with this
        worker and a lease until now + `visibility`. Never more than one
        claimed job per concurrency key, nor more than a queue's limits. With
        `runs`, each job's run is claimed too, in the same transaction, for
        `runs.owner` (`JobRow.run`; see `RunClaim`). With `workflows`, (name,
        version) pairs, only jobs of those workflows (and jobs queued by an older
        tether, which recorded none); without, jobs of any.
        """
        if limit < 1 or not queues:
            return Claimed()
        # "as many as there are" (a host's claim of 10**20) was a raw OverflowError on
        # SQLite and "bigint out of range" on PostgreSQL; a quarter of the largest LIMIT
        # leaves room for `_pick`'s candidates (four per free slot)
        limit = min(limit, _MAX_LIMIT // 4)
        queues = list(dict.fromkeys(queues))  # a queue named twice is read once
        if not await self._any_due(queues, now):
            return Claimed()
        p = {"worker": worker, "vis": visibility, "now": now, "at": at, **_run_claim(runs),
             **_workflow_params(workflows)}  # fmt: skip
        # the one-statement claim sees only uncapped queues: beside a capped one it would
        # take their jobs before a better one of the capped queue, so all go through `_pick`
        capped = any(q in limits for q in queues)
        jobs, keyed, more = await self._claim_at_once([] if capped else queues, limit, p)
        limit -= len(jobs)
        if limit < 1 or not (keyed or capped):
            return self._claimed(queues, jobs, more=more and limit < 1)

        async def body(tx: Tx) -> tuple[list[JobRow], bool]:
            picked, left = await _pick(tx, queues, limit, limits, tx.now(now), p)
            if not picked:
                return [], False
            rows = await tx.all(
                "claim_ids", worker=worker, now=tx.now(now), vis=visibility, at=at,
                ids=tx.array(picked)
            )  # fmt: skip
            claimed = sorted((tx.rows.job(r) for r in rows), key=lambda j: picked.index(j.id))
            if runs is not None:
                claimed = [await self._claim_job_run(tx, job, p) for job in claimed]
            return claimed, left

        try:
            taken, more = await self._tx("fast", body)
            jobs += taken
        except StoreError as exc:
            if not self._lost_race(exc):
                raise  # else: lost a race for a concurrency key; the next round claims again
            more = True
        return self._claimed(queues, jobs, more=more)

    async def _any_due(self, queues: list[str], now: datetime | None) -> bool:
        """Whether a claim of `queues` may find a job, asked only after one of them took
        nothing: a claim reads a queue in priority order, past each job delayed to later
        (a delayed submit, a retry's back-off), so with many delayed and none due each
        idle poll read them all. This looks at each queue's earliest due time instead (an
        index's first entry): a busy claimer pays nothing, an idle one a cheap read."""
        key = tuple(queues)
        if key not in self._idle_claims:
            return True

        async def body(tx: Tx) -> bool:
            return await tx.one("queues_due", qs=tx.array(queues), now=tx.now(now)) is not None

        return await self._tx("read", body)

    def _claimed(self, queues: list[str], jobs: list[JobRow], *, more: bool) -> Claimed:
        """`jobs`, once committed, their runs claimed with them noted (`_note_moved`);
        whether the claim of `queues` took nothing, noted for the next (`_any_due`)."""
        if jobs:
            self._idle_claims.discard(tuple(queues))
        elif len(self._idle_claims) < 1024:  # a claimer of ever new queue sets: not all kept
            self._idle_claims.add(tuple(queues))
        for job in jobs:
            if job.run is not None:
                self._note_moved(job.run.workflow_id, job.run.generation)
        return Claimed.of(jobs, more=more)

    async def _claim_job_run(self, tx: Tx, job: JobRow, p: dict[str, Any]) -> JobRow:
        """`job` with its run claimed in `tx` (as `RunClaim` says), if it may be."""
        row = await tx.one(
            "claim_job_run", wid=job.workflow_id, now=tx.now(p["now"]), owner=p["owner"],
            lease=p["lease"], at=p["at"], names=tx.array(p["names"]),
            versions=tx.array(p["versions"]), force=p["force"], dead=p["dead"]
        )  # fmt: skip
        if row is None:
            return job
        run = tx.rows.run(row)
        fence = Fence(run.workflow_id, run.generation)
        await self._events(tx, fence, [NewEvent(p["etype"])], p["at"])
        return replace(job, run=run)

    async def _claim_at_once(
        self, free: list[str], limit: int, p: dict[str, Any]
    ) -> tuple[list[JobRow], bool, bool]:
        """Claim ready jobs of the uncapped queues `free` in one statement, if the dialect
        can: (the jobs, whether keyed jobs wait for the general claim, whether it took
        `limit` and ready jobs were left). Here: none, True, False."""
        return [], True, False

    def _lost_race(self, exc: StoreError) -> bool:
        """Whether a claim failed only because a concurrent claim took a concurrency key
        first (never on SQLite, which admits one writer)."""
        return False

    async def renew_job(
        self, job_id: int, worker: str, *, visibility: float, now: datetime | None
    ) -> bool:
        """Extend the lease if `worker` still holds the job."""

        async def body(tx: Tx) -> bool:
            n = await tx.execute(
                "renew_job", now=tx.now(now), vis=visibility, id=job_id, worker=worker
            )
            return n == 1

        return await self._tx("fast", body, single=True)

    async def finish_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        """Close a job: done (or failed with `error`); back to the queue if its run was
        woken meanwhile. A `ghost` is a job whose run was cancelled under it.

        A job whose run this store ended (its function returned or raised) was closed
        with the run's end, in the same transaction: nothing is written again.
        """
        if error is None and not ghost and self._already_closed(job_id):
            return
        await self._close_job(job_id, worker, error=error, ghost=ghost, at=at)

    async def _close_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        """`finish_job`'s write (a dialect may make it one statement)."""

        async def body(tx: Tx) -> None:
            row = await tx.one("job_of_worker", id=job_id, worker=worker)
            if row is None:
                return  # the lease expired and the job moved on: nothing of ours to close
            run_id, run_status = row
            if error is None and run_status == "pending":
                status = "queued"  # woken while we drove it: drive it again
                await tx.notify("jobs")
            else:
                status = "done" if error is None else "failed"
            await tx.execute("finish_job", status=status, error=error, at=at, id=job_id)
            if ghost:
                await self._events(tx, Fence(run_id), [NewEvent("job.ghost", worker)], at)

        await self._tx("write", body)

    async def release_job(
        self, job_id: int, worker: str, *, at: datetime, run_after: datetime | None = None
    ) -> None:
        """Hand a claimed job back, its attempt not counted: at once (graceful
        shutdown), or from `run_after` (its run is driven by another live process)."""

        async def body(tx: Tx) -> None:
            after = at if run_after is None else run_after
            await tx.execute("release_job", at=at, after=after, id=job_id, worker=worker)
            await tx.notify("jobs")

        await self._tx("write", body)

    async def claim_run_job(
        self, workflow_id: str, worker: str, *, visibility: float, now: datetime | None,
        at: datetime, limits: Mapping[str, QueueLimit] | None = None,
    ) -> JobRow | None:  # fmt: skip
        """Claim the run's queued job for `worker`, a process about to drive the run
        itself (a resume), due or not, as a worker's claim would: never while another
        claimed job holds its concurrency key, nor beyond its queue's caps in `limits`
        (counted under the queue's lock, as `claim_jobs` counts them). The job claimed
        now; or the job, still queued, when its key is held (see `key_holder`) or its
        queue is full; or None when the run has no queued job (none, or one claimed
        already: a worker's, or another drive's)."""

        async def claim(tx: Tx) -> JobRow | None:
            if limits:  # the job's queue first: its caps decide whether it may be claimed
                row = await tx.one("run_queued_job", wid=workflow_id)
                if row is None:
                    return None
                job = tx.rows.job(row)
                if await _room(tx, job.queue, 1, limits.get(job.queue), tx.now(now)) < 1:
                    return job
            row = await tx.one(
                "claim_run_job", wid=workflow_id, worker=worker, now=tx.now(now),
                vis=visibility, at=at,
            )  # fmt: skip
            if row is None:
                row = await tx.one("run_queued_job", wid=workflow_id)
            return None if row is None else tx.rows.job(row)

        try:
            return await self._tx("write", claim)
        except StoreError as exc:
            if not self._lost_race(exc):
                raise  # else: a worker's claim took the key first: the job is still queued
        rows = await self._list("run_queued_job", Rows.job, wid=workflow_id)
        return rows[0] if rows else None

    async def key_holder(self, key: str) -> JobRow | None:
        """The claimed job that holds concurrency key `key`, if one does."""
        rows = await self._list("key_holder", Rows.job, key=key)
        return rows[0] if rows else None

    async def retry_job(
        self, job_id: int, worker: str, *, error: str, run_after: datetime, at: datetime
    ) -> None:
        """Put a claimed job back after an infrastructure failure (the database, not the
        workflow): queued again from `run_after`, its attempt not counted (the run's
        attempts are for its own failures and its workers' deaths).
        """

        p = {"error": error, "after": run_after, "at": at, "id": job_id, "worker": worker}
        await self._execute("write", "retry_job", single=True, **p)

    async def reap_jobs(self, *, now: datetime | None, at: datetime) -> int:
        """Return jobs with expired leases to the queue (or fail them past max attempts)."""

        async def body(tx: Tx) -> int:
            rows = await tx.all("reap_jobs", at=at, now=tx.now(now))
            for run_id, status, why in rows:
                await self._events(tx, Fence(run_id), [NewEvent("job.lease_expired")], at)
                if status == "failed":
                    await self._abandon(tx, run_id, why, at)
            if rows:
                await tx.notify("jobs")
            return len(rows)

        return await self._tx("write", body)

    async def _abandon(self, tx: Tx, run_id: str, why: str, at: datetime) -> None:
        """Fail the run of a job that used up its attempts: each worker that claimed it
        stopped renewing it (died), so it is not tried again, as submitted."""
        status = await tx.one("run_status_locked", wid=run_id)
        if status is None or status[0] not in moves("run", "reap_jobs").src:
            return  # it ended (or parked) meanwhile
        message = f"its job used up its attempts (max_attempts); the last: {why}"
        error = encode_record(ErrorRecord("JobAttemptsExhausted", message))
        reason = end_reason("reap_jobs", RunStatus.FAILED)
        event = NewEvent("workflow.failed", f"JobAttemptsExhausted: {message}")
        await self._events(tx, Fence(run_id), [event], at)
        await self._end_run(
            tx, run_id, RunStatus.FAILED, at, output=None, error=error, cs=0.0,
            reason=reason and reason.value
        )  # fmt: skip

    async def reap_stuck_runs(
        self, *, idle_for: float, now: datetime | None, at: datetime
    ) -> list[str]:
        """Queue a job for runs left running, idle for `idle_for` s, with no open job."""

        async def body(tx: Tx) -> list[str]:
            stuck = [r[0] for r in await tx.all("stuck_runs", now=tx.now(now), idle=idle_for)]
            for run_id in stuck:
                await self._enqueue_next(tx, run_id, at)
                await self._events(tx, Fence(run_id), [NewEvent("run.requeued", "stuck")], at)
            return stuck

        return await self._tx("write", body)

    async def orphaned_runs(
        self, workflows: Sequence[str], *, grace: float, now: datetime | None, limit: int = 100
    ) -> list[RunRow]:
        """Unqueued runs of `workflows` that nobody drives: running with a lapsed owner
        claim, or pending for more than `grace` seconds; and, claim or not, those whose
        owner is known dead (`_dead_owners`: nobody renews it, and waiting for its claim
        to lapse only keeps the run idle), cancelled ones with steps left running too.
        """

        async def body(tx: Tx) -> list[RunRow]:
            rows = await tx.all(
                "orphaned_runs", wfs=tx.array(workflows), now=tx.now(now), grace=grace,
                limit=limit, dead=await self._dead_owners(tx, workflows),
            )  # fmt: skip
            return [tx.rows.run(r) for r in rows]

        return await self._tx("read", body)

    async def _dead_owners(self, tx: Tx, workflows: Sequence[str]) -> Any:
        """The owners (an array parameter) of runs of `workflows` that would be orphaned
        were their owner dead, and that are: processes of this machine that have ended
        (`owner_is_dead`). Judged here, by this process, for the one transaction that
        takes their runs: the database cannot see this machine's processes. The taker
        then claims each run fenced on its dead owner (`claim_run`'s `dead_owner`)."""
        rows = await tx.all("orphan_owners", wfs=tx.array(workflows), like=local_owners_like())
        return tx.array([r[0] for r in rows if owner_is_dead(r[0])])

    async def adopt_orphans(
        self,
        workflows: Sequence[str],
        *,
        queue: str,
        grace: float,
        now: datetime | None,
        at: datetime,
        limit: int = 100,
    ) -> list[str]:
        """Put orphaned runs (as `orphaned_runs`, a dead owner's taken at once; not
        cancelled ones) on `queue` with a job each, in one transaction; the ids. Two
        adopters never take the same run.
        """

        async def body(tx: Tx) -> list[str]:
            rows = await tx.all(
                "orphans_to_adopt", wfs=tx.array(workflows), now=tx.now(now), grace=grace,
                limit=limit, dead=await self._dead_owners(tx, workflows),
            )  # fmt: skip
            for run_id, owner in rows:
                await tx.execute("set_queue", queue=queue, id=run_id)
                await self._enqueue_next(tx, run_id, at)
                event = NewEvent("run.adopted", f"by queue {queue}; owner was {owner}")
                await self._events(tx, Fence(run_id), [event], at)
            return [r[0] for r in rows]

        return await self._tx("write", body)

    async def list_jobs(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[JobRow]:
        return await self._list(
            "list_jobs", Rows.job, wid=workflow_id, status=status, limit=_at_most(limit)
        )

    async def queued_workflows(
        self, queues: Sequence[str]
    ) -> list[tuple[str, str | None, str | None]]:
        """The workflows that queued jobs of `queues` belong to: (queue, name, version),
        each once; name and version None for jobs an older tether queued. A workflow no
        worker of a queue registered is why its jobs wait there."""

        async def body(tx: Tx) -> list[tuple[str, str | None, str | None]]:
            rows = await tx.all("queued_workflows", qs=tx.array(list(queues)))
            return [(r[0], r[1], r[2]) for r in rows]

        return await self._tx("read", body)

    async def rerun_from(
        self, workflow_id: str, step: str, *, at: datetime, budget: str | None = None
    ) -> None:
        """Forget `step` and every step started after it, and the values recorded since
        (state updates, now(), uuid(): the state goes back to its last kept update);
        the run becomes runnable. `budget` (JSON) replaces the run's AI budget.

        `step` the wait for a child that failed (``child:<id>``): the child goes on
        from where it stopped, in the same transaction (its failed step, or the AI
        call its budget stopped, forgotten; what it did before kept, so no answered
        call is asked again), and the wait stays registered, pending, for the
        parent's replay to find that child again."""

        async def body(tx: Tx) -> None:
            await self._check_rerun(tx, workflow_id, step)
            child = await _failed_child(tx, workflow_id, step)
            if child is not None:
                await self._check_rerun(tx, child, None)
                point = await _stopped_at(tx, child)
                await self._rerun(tx, child, point, None, at)
            await self._rerun(tx, workflow_id, step, budget, at, keep_wait=child is not None)

        await self._tx("write", body)

    async def _check_rerun(self, tx: Tx, workflow_id: str, step: str | None) -> None:
        run = await tx.one("run_status_locked", wid=workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        if run[0] not in RERUNNABLE:
            raise InvalidArgumentError(
                f"run {workflow_id!r} is {run[0]}; rerun_from needs a run that is not "
                "executing (cancel it first, or wait for it to end or park)"
            )
        if step is not None and await _unknown(tx, workflow_id, step):
            keys = [tx.rows.step(r).key for r in await tx.all("load_steps", wid=workflow_id)]
            waits = [str(r[0]) for r in await tx.all("wait_keys", wid=workflow_id)]
            raise InvalidArgumentError(_no_step(workflow_id, step, keys, waits))

    async def _rerun(
        self, tx: Tx, workflow_id: str, step: str | None, budget: str | None, at: datetime,
        *, keep_wait: bool = False,
    ) -> None:  # fmt: skip
        """The rerun of one run from `step` (None: nothing forgotten, the run driven
        again over all it recorded); `keep_wait`: `step`, a wait, is kept, pending."""
        # "after it" in the run's own order (its events), not by clock: steps and
        # waits begun at the same instant keep their order
        first = _NOTHING
        if step is not None:
            first = (await tx.one("rerun_first", wid=workflow_id, key=step))[0]
        await tx.execute("rerun_steps", wid=workflow_id, first=first)
        await tx.execute("rerun_values", wid=workflow_id, first=first)
        await tx.execute("rerun_state", wid=workflow_id)
        await tx.execute("rerun_events_taken", wid=workflow_id, first=first + keep_wait, at=at)
        await tx.execute("rerun_waits", wid=workflow_id, first=first + keep_wait)
        if keep_wait:
            await tx.execute("rerun_wait_pending", wid=workflow_id, key=step)
        await tx.execute("rerun_reset", wid=workflow_id)
        if budget is not None:
            await tx.execute("set_budget", wid=workflow_id, budget=budget)
        await self._events(tx, Fence(workflow_id), [NewEvent("run.rerun_from", step)], at)
        await self._enqueue_next(tx, workflow_id, at)

    async def retry_compensations(self, workflow_id: str, *, at: datetime) -> list[str]:
        """Forget the compensations of a `compensation_failed` run that did not complete,
        and make the run runnable to try them again; the keys forgotten.

        Those that completed stay recorded, so the replay answers them from the record
        and never undoes a step twice. A run that failed goes back to pending (its
        replay meets its recorded failure again, then compensates); one cancelled goes
        back to cancelled with its compensation due, as ``cancel(compensate=True)``
        leaves it. A queued run gets a job for its workers."""

        async def body(tx: Tx) -> list[str]:
            found = await tx.one("run_status_locked", wid=workflow_id)
            if found is None:
                raise RunNotFoundError(workflow_id)
            if found[0] != RunStatus.COMPENSATION_FAILED.value:
                raise InvalidArgumentError(_not_compensation_failed(workflow_id, found[0]))
            rows = await tx.all("compensations_unfinished", wid=workflow_id)
            keys = sorted(str(r[0]) for r in rows)
            await tx.execute("compensations_forget", wid=workflow_id)
            if found[1] == EndReason.CANCELLED.value:
                await tx.execute("compensations_due", wid=workflow_id)
            else:  # its replay meets the recorded failure, then compensates
                await tx.execute("rerun_waits", wid=workflow_id, first=_NOTHING)
                await tx.execute("rerun_reset", wid=workflow_id)
            event = NewEvent("run.compensations_retried", ", ".join(keys) or None)
            await self._events(tx, Fence(workflow_id), [event], at)
            await self._enqueue_next(tx, workflow_id, at)
            await tx.notify(f"run:{workflow_id}")
            return keys

        return await self._tx("write", body)

    # -- outbox -----------------------------------------------------------------------

    async def outbox_pending(self, *, limit: int, now: datetime | None) -> list[OutboxRow]:
        """Undelivered events due for an attempt: the runs waiting longest first, each
        run's in seq order up to an event waiting for its retry (which blocks only its
        own run: skipped in the query, never filling the batch)."""

        async def body(tx: Tx) -> list[OutboxRow]:
            rows = await tx.all("outbox_pending", now=tx.now(now), limit=limit)
            return [tx.rows.outbox(r) for r in rows]

        return await self._tx("read", body)

    async def outbox_claim(
        self, *, limit: int, lease: float, now: datetime | None
    ) -> list[OutboxRow]:
        """The batch `outbox_pending` reads, claimed for `lease` seconds in the same
        statement (each row's `claimed_until`): until then no other claim takes these
        events nor their runs' later ones, so two publishers never deliver one event
        both, even one whose chore lock lapsed mid-batch (a stall past its lease).
        `outbox_mark` ends a claim: delivered, failed (its retry time), or released."""

        async def body(tx: Tx) -> list[OutboxRow]:
            rows = await tx.all("outbox_claim", now=tx.now(now), lease=lease, limit=limit)
            return [
                replace(
                    tx.rows.outbox(r[:7]),
                    claimed_until=tx.rows.t(r[7]),
                    run_created=tx.rows.ot(r[9]),
                )
                for r in sorted(rows, key=lambda r: (r[8], r[0], r[1]))
            ]

        return await self._tx("fast", body, single=True)

    async def outbox_mark(
        self,
        *,
        delivered: Sequence[tuple[str, int]],
        failed: Sequence[tuple[str, int, str, datetime | None]],
        at: datetime,
        released: Sequence[OutboxRow] = (),
    ) -> None:
        """Record deliveries; a failure carries its error and next attempt (None: dead).
        `released` (claimed rows not tried) go back at once, while still their claim."""

        async def body(tx: Tx) -> None:
            if delivered:  # a pass delivers up to hundreds: one statement, not one each
                wids = tx.array([run for run, _ in delivered])
                seqs = tx.array([seq for _, seq in delivered])
                await tx.execute("outbox_delivered", at=at, wids=wids, seqs=seqs)
            for run, seq, err, nxt in failed:  # rare: one each
                dead = at if nxt is None else None
                await tx.execute("outbox_failed", error=err, next=nxt, dead=dead, wid=run, seq=seq)
            for until in dict.fromkeys(r.claimed_until for r in released):  # one a claim
                rows = [r for r in released if r.claimed_until == until]
                wids = tx.array([r.workflow_id for r in rows])
                seqs = tx.array([r.seq for r in rows])
                await tx.execute("outbox_release", until=until, wids=wids, seqs=seqs)

        await self._tx("fast", body)

    async def outbox_replay_dead(self, *, limit: int, at: datetime) -> int:
        """Put dead-lettered events back for delivery; how many."""
        return await self._execute("write", "outbox_replay_dead", limit=limit)

    async def outbox_dead(self, *, limit: int) -> list[OutboxRow]:
        return await self._list("outbox_dead", Rows.outbox, limit=_at_most(limit))

    # -- idempotency ------------------------------------------------------------------

    async def idempotency_begin(
        self, command: str, key: str, *, at: datetime, stale_after: float
    ) -> str | None:
        """Reserve (command, key). None if reserved now; the stored result (JSON text)
        if it completed before; `IdempotencyInProgressError` if it is in flight (and not
        older than `stale_after` seconds, after which it is taken over).
        """

        async def body(tx: Tx) -> str | None:
            await tx.execute("idempotency_reserve", command=command, key=key, at=at)
            status, result, fresh = await tx.one(
                "idempotency_get", command=command, key=key, at=at, stale=stale_after
            )
            if status == "done":
                return str(result) if result is not None else "null"
            if status == "in_progress" and fresh:
                raise IdempotencyInProgressError(command, key)
            await tx.execute("idempotency_take", command=command, key=key, at=at)
            return None

        return await self._tx("write", body)

    async def idempotency_finish(
        self, command: str, key: str, *, result: str | None, at: datetime
    ) -> None:
        """Store the result, or (with None) release the reservation after a failure."""

        async def body(tx: Tx) -> int:
            if result is None:
                return await tx.execute("idempotency_drop", command=command, key=key)
            return await tx.execute(
                "idempotency_done", result=result, at=at, command=command, key=key
            )

        await self._tx("write", body, single=True)

    # -- pruning ----------------------------------------------------------------------

    async def prunable_runs(
        self,
        finished_before: datetime,
        statuses: Sequence[RunStatus] | None,
        limit: int,
        *,
        keep_undelivered: bool = False,
    ) -> list[str]:
        """Ids of terminal runs (of `statuses`, default every terminal one) that finished
        before `finished_before`, oldest first, at most `limit`. Non-terminal statuses
        in `statuses` are ignored. With `keep_undelivered`, not a run with an event the
        outbox has yet to deliver (neither published nor dead-lettered). Only the top
        of a family, each run of which ended before `finished_before`: `delete_runs`
        takes the runs below it with it, so a batch never cuts a family.
        """
        wanted = sorted(TERMINAL if statuses is None else {s.value for s in statuses} & TERMINAL)
        p = {"before": finished_before, "limit": limit, "keep": keep_undelivered}

        async def body(tx: Tx) -> list[str]:
            return [r[0] for r in await tx.all("prunable_runs", statuses=tx.array(wanted), **p)]

        return await self._tx("read", body)

    async def delete_runs(
        self,
        run_ids: Sequence[str],
        *,
        keep_undelivered: bool = False,
        finished_before: datetime | None = None,
    ) -> int:
        """Delete finished runs with everything of theirs, in one transaction; how many
        runs went (children included).

        With a run go its steps, events (and so its outbox rows), waitpoints, jobs,
        heartbeats, the locks it took, inbox signals sent to it, idempotency rows whose
        result names it, its AI calls (and the stored prompts and responses no other
        call names), and its child runs (recursively). A run that is not terminal,
        or has a child that is not, is skipped whole; so is one of which a run has
        an event yet to deliver, with `keep_undelivered`; unknown ids are ignored. A
        run below one that has not ended is refused (`InvalidArgumentError`, nothing
        deleted): that run's replay needs it.

        With `finished_before` (a prune's cutoff), the prune's family rule is checked
        again here, where it deletes: a family goes whole, from its top (a run below
        another is skipped), and every run of it must still have ended before the
        cutoff. Between `prunable_runs` and this a `rerun_from` may have
        opened a parent again (whose replay takes its children's outcomes from their
        rows) or rerun a child to a later end; their rows are locked (PostgreSQL) top
        down, as `rerun_from` locks them, so one that comes meanwhile waits, then finds
        the run gone.
        """

        async def body(tx: Tx) -> int:
            deleted = 0
            for run_id in dict.fromkeys(run_ids):
                family = await _family_to_delete(tx, run_id, finished_before)
                if family and keep_undelivered and await _undelivered(tx, family):
                    continue
                for rid in family or ():
                    await _forget_ai_calls(tx, rid)
                    for query in _RUN_TABLES:
                        await tx.execute(query, id=rid)
                    deleted += await tx.execute("delete_run", id=rid)
            return deleted

        return await self._tx("write", body)


async def _forget_ai_calls(tx: Tx, run_id: str) -> None:
    """Delete a run's AI calls, then each stored prompt or response no call names now
    (one body is stored once for every call that sent or got it)."""
    digests = {d for row in await tx.all("ai_blobs_of_run", id=run_id) for d in row if d}
    await tx.execute("delete_ai_calls", id=run_id)
    for digest in sorted(digests):
        await tx.execute("delete_unused_ai_blob", digest=digest)


async def _undelivered(tx: Tx, run_ids: list[str]) -> bool:
    """Whether one of these runs has an event the outbox has yet to deliver."""
    for rid in run_ids:
        if await tx.one("run_undelivered", id=rid) is not None:
            return True
    return False


async def _family_to_delete(tx: Tx, run_id: str, before: datetime | None) -> list[str] | None:
    """The run and its descendants, children first, if they may go: None unless each
    ended (before `before`, if given). A prune (`before`) takes a family whole, from
    its top: a run below another goes only with it. A run below one that has not ended
    is refused: that run's replay reads the runs it started (a detached child's again
    started anew, and ran again) and its budget counts their spend."""
    above: list[str] = []  # the runs above it whose rows are there
    row = await tx.one("run_parent", wid=run_id)
    while row is not None and row[0] is not None and row[0] not in above:
        parent = row[0]
        row = await tx.one("run_parent", wid=parent)
        if row is not None:  # (None: its row is gone, as `prunable_runs` finds it)
            above.append(parent)
    if before is not None and above:
        return None
    for rid in reversed(above):  # the topmost first, as `rerun_from` locks
        found = await tx.one("run_ended_locked", wid=rid, before=None)
        if found is not None and found[0] not in TERMINAL:
            raise InvalidArgumentError(_below_open_run(run_id, rid, found[0]))
    return await _finished_family(tx, run_id, before)


def _below_open_run(run_id: str, live: str, status: str) -> str:
    return (
        f"run {run_id!r} was started by run {live!r} (or by a run it started), which has "
        f"not ended ({status}): its replay reads the runs it started, so they stay while "
        f"it lives. Delete or prune run {live!r} once it ends (the runs it started go "
        "with it), or cancel it first"
    )


async def _ended(tx: Tx, run_id: str, before: datetime | None) -> bool:
    """Whether the run is terminal (and ended before `before`, if given); its row locked."""
    row = await tx.one("run_ended_locked", wid=run_id, before=before)
    return row is not None and row[0] in TERMINAL and (before is None or bool(row[1]))


async def _finished_family(tx: Tx, run_id: str, before: datetime | None) -> list[str] | None:
    """The run and its descendants, children first; None unless every one is terminal
    (and ended before `before`, if given)."""
    if not await _ended(tx, run_id, before):
        return None
    family: list[str] = []
    for child, status in await tx.all("run_children", id=run_id):
        if status not in TERMINAL:
            return None
        below = await _finished_family(tx, child, before)
        if below is None:
            return None
        family += below
    return [*family, run_id]


def _queued(run: NewRun, queue: str) -> NewRun:
    return replace(run, queue=queue)


async def _failed_child(tx: Tx, workflow_id: str, key: str) -> str | None:
    """The child `key` (``child:<id>``) waited for, if it is a child of this run that
    failed: a rerun from that wait takes it up where it stopped."""
    if not key.startswith("child:"):
        return None
    child = key.removeprefix("child:")
    row = await tx.one("get_run", id=child)
    if row is None:
        return None
    run = tx.rows.run(row)
    ok = run.parent_id == workflow_id and run.status is RunStatus.FAILED
    return child if ok else None


async def _stopped_at(tx: Tx, workflow_id: str) -> str | None:
    """Where a failed run stopped in its latest round: the AI call its budget stopped
    (recorded as answered, with the stop), or its last step that failed if that
    failure is what the run failed of (its error, or one that error was raised from).
    None where it failed outside any step (its code raised, perhaps after catching a
    step's failure), so nothing need be forgotten: going on from a failure the code
    caught would run the steps done after it again."""
    rows = await tx.all("list_events", wid=workflow_id, after=0, limit=None)
    events = [tx.rows.event(r) for r in rows]
    since = max((e.seq for e in events if e.type == "run.rerun_from"), default=0)
    last, budget = None, False  # the last stop, and whether a budget's
    for e in events:
        if e.seq <= since:
            continue
        if e.type == "step.failed" and e.message:
            last, budget = e.message, False
        if e.type == "budget.exceeded" and e.detail:
            step = json.loads(e.detail).get("step")
            if isinstance(step, str) and step:
                last, budget = step, True
    if last is None or budget:
        return last
    run = tx.rows.run(await tx.one("get_run", id=workflow_id))
    failed = tx.rows.step(await tx.one("get_step", wid=workflow_id, key=last))
    return last if _raised_of(decode_error(run.error), decode_error(failed.error)) else None


def _raised_of(error: ErrorRecord | None, cause: ErrorRecord | None) -> bool:
    """Whether `error` is `cause`, or was raised from it (by its type and message)."""
    while error is not None and cause is not None:
        if (error.type, error.message) == (cause.type, cause.message):
            return True
        error = error.cause
    return False


async def _unknown(tx: Tx, workflow_id: str, key: str) -> bool:
    """Neither a step nor a wait (a child, a signal, a sleep) the run recorded: a run
    whose first act was a child or a wait has no step to go on from before it."""
    if await tx.one("step_exists", wid=workflow_id, key=key) is not None:
        return False
    return await tx.one("wait_exists", wid=workflow_id, key=key) is None


def _no_step(workflow_id: str, step: str, keys: list[str], waits: list[str]) -> str:
    """`rerun_from` of a step the run did not record: the keys it did record under
    that name (``name@key``, ``name#2``, ``name[0]``, ``stage/name``), else all, and
    its waits' keys."""
    near = [k for k in keys if k.split("/")[-1].split("@")[0].split("#")[0].split("[")[0] == step]
    near += [k for k in sorted(waits) if step in (k.split("#")[0], k.split("#")[0].split(":")[-1])]
    if near:
        return f"run {workflow_id!r} has no step {step!r}; recorded under that name: {_keys(near)}"
    where = f"its steps: {_keys(keys) or 'none'}"
    where += f"; its waits: {_keys(sorted(waits))}" if waits else ""
    return f"run {workflow_id!r} has no step {step!r}; {where}"


def _keys(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "")


def _not_compensation_failed(workflow_id: str, status: str) -> str:
    """Why `retry_compensations` refuses a run of `status`, and what to do instead."""
    if status == RunStatus.COMPENSATED.value:
        return f"run {workflow_id!r} is compensated: every compensation it had ran"
    if status in TERMINAL:
        return (
            f"run {workflow_id!r} is {status}; only a compensation_failed run has "
            "compensations to retry (rerun_from retries a failed or completed run)"
        )
    return (
        f"run {workflow_id!r} is {status}: it has not ended, and a run's compensations "
        "run as it ends; retry them once it is compensation_failed"
    )
