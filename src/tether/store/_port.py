"""The Store port: the domain verbs the engine needs from a database.

Every mutating verb is one transaction that writes the change *and* the
events it causes, or nothing. Verbs that write for a run take a `Fence`; when
its generation is set, the write lands only if the run's owner generation
still equals it, else `StaleOwnerError` is raised and nothing is written.

Times: `at` stamps records and events (the engine's clock). `now` judges lock
expiry; `None` means the store's own clock (the database server's, on
PostgreSQL), so machines with skewed clocks agree on who holds a lock.

Driver errors never cross this port: adapters raise `StoreError` and its
subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ._records import (
    AICallRow,
    AISpend,
    AIUsageRow,
    ApiTokenRow,
    EndReason,
    EventRow,
    Fence,
    HeartbeatRow,
    Histogram,
    IdempotentAnswer,
    JobRow,
    LockResult,
    LockRow,
    NewEvent,
    NewJob,
    NewRun,
    NewWait,
    OutboxRow,
    QueueDepth,
    QueueLimit,
    RunFilter,
    RunRow,
    RunStatus,
    ScheduleRow,
    StepRow,
    WaitRow,
)

__all__ = ["Store"]


class Store(Protocol):
    """A durable home for runs, steps, events, locks and heartbeats."""

    url: str

    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""
        ...

    async def close(self) -> None: ...

    # -- runs ------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        """Insert the run unless one with its id (or its idempotency key) exists.

        Returns (row, created); the row is the existing run when not created,
        so two callers racing with one idempotency key get the same run.
        """
        ...

    async def get_run(self, workflow_id: str) -> RunRow | None: ...

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        """Newest first."""
        ...

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
        `renew_owner` extends it (without, anyone may take the run over). A run that another owner holds with a live claim is refused
        with `RunAlreadyRunningError`; a lapsed claim, or one held by
        `dead_owner` (an owner known to be dead), is taken over. With `force`
        the run is taken whoever holds it (a worker's job lease already
        guarantees it is the only one).
        A cancelled (or compensated) run cannot be claimed: `RunFinishedError`.
        With `compensating`, only a run cancelled with compensation pending can
        be, and it stays cancelled while its compensations run.
        """
        ...

    async def renew_owner(
        self, owner: str, workflow_ids: Sequence[str], *, lease: float, now: datetime | None
    ) -> int:
        """Extend `owner`'s claims on those of `workflow_ids` it still holds; how many."""
        ...

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        """Hand a running run back (clean exit): status pending, no live claim, `event`
        written; runnable at once by anyone. False if the run is no longer this
        owner's or no longer running."""
        ...

    async def orphaned_runs(
        self, workflows: Sequence[str], *, grace: float, now: datetime | None, limit: int = 100
    ) -> list[RunRow]:
        """Unqueued runs of `workflows` that nobody drives: running with a lapsed owner
        claim, or pending for more than `grace` seconds."""
        ...

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
        """Put orphaned runs (as `orphaned_runs`) on `queue` with a job each, in one
        transaction; the ids. Two adopters never take the same run."""
        ...

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

        Records the run's `EndReason`: `reason`, or the one `_lifecycle.END_REASONS`
        gives first for this move (a compensating fence ends a cancelled run)."""
        ...

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None: ...

    # -- events ----------------------------------------------------------------

    async def append_events(
        self, fence: Fence, events: Sequence[NewEvent], at: datetime
    ) -> None: ...

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        """Events of one run in `seq` order."""
        ...

    # -- steps -----------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]: ...

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        """Count one more attempt and mark the step running.

        If the recorded idempotency key differs, the step starts over (attempts
        reset, result dropped). Only has to survive a process crash, so an
        adapter may commit it without waiting for the disk.
        """
        ...

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
        """Record the step's result. Fully durable before it returns.

        `rows` are what the attempt attached (`NewAICall`, `NewEvent`), written in
        the same transaction; AI calls are keyed (run, step, attempt, position), so
        a completion written twice (a replay after a lost connection) adds none.
        """
        ...

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
        for `complete_step` (a failed call still used tokens, and is logged)."""
        ...

    # -- locks (mutexes and leases) ------------------------------------------

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
        """Acquire if free, released or expired; renew if `holder` holds it.

        Otherwise return outcome CONFLICT with the current holder's row and
        write nothing. The matching event is written with the change.
        """
        ...

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        """Push the expiry out if `holder` still holds it; None if it lost the lock."""
        ...

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
        ...

    async def get_lock(self, scope: str, key: str) -> LockRow | None: ...

    async def list_locks(self, scope: str, *, run_id: str | None = None) -> list[LockRow]:
        """Locks of `scope` (taken by run `run_id` only, if given), by key."""
        ...

    # -- change notifications ------------------------------------------------------

    async def wait_for_change(self, channel: str, timeout: float) -> bool:
        """Wait (at most `timeout` s) for a write that concerns `channel`.

        Channels: ``"jobs"`` (work became available) and ``"run:<id>"`` (the
        run ended or parked). True when woken by such a write; False on
        timeout. PostgreSQL wakes at once (LISTEN/NOTIFY); SQLite polls, so a
        caller re-reads what it waits for either way.
        """
        ...

    # -- heartbeats --------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None: ...

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]: ...

    # -- parked runs: waitpoints, inbox, cancellation ----------------------------
    #
    # A run that waits registers a waitpoint and parks (status waiting). Whatever
    # resolves a waitpoint (an event, a signal, a token, a due timer, a child
    # run ending) makes its run runnable again (waiting -> pending) in the same
    # transaction. Events and signals that find no waiter are kept in an inbox
    # until they expire, so one that arrives just before its wait registers
    # is not lost.

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        """Record the waitpoint unless the run already has one under `wait.key`.

        A pending waitpoint is resolved at once if what it waits for is already
        there: an unconsumed signal in the inbox, an inbox event sent since the
        run was created that no other wait of the run took, a child run that
        ended. Returns the waitpoint as it stands.
        """
        ...

    async def list_waits(self, workflow_id: str) -> list[WaitRow]: ...

    async def park_run(
        self, fence: Fence, keys: Sequence[str], *, compute_seconds: float, at: datetime
    ) -> bool:
        """Park the run (status waiting) unless one of the waitpoints `keys` resolved.

        Returns False, and leaves the run running, when one already resolved:
        the caller resumes at once instead of sleeping on a wake-up that came.
        """
        ...

    async def send_event(
        self, type: str, payload: str | None, *, at: datetime, expires_at: datetime
    ) -> list[str]:
        """Resolve every pending event wait it matches; keep it in the inbox. Woken run ids."""
        ...

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        at: datetime,
        expires_at: datetime,
    ) -> list[str]:
        """Resolve the run's oldest pending wait for `name`, or keep it in the inbox."""
        ...

    async def complete_token(self, token_id: str, payload: str | None, *, at: datetime) -> str:
        """Resolve the token's waitpoint; the run id. Completing it twice is an error."""
        ...

    async def fire_due(self, *, now: datetime | None, at: datetime) -> list[str]:
        """Resolve due timers, time out waits past their timeout, drop expired inbox items."""
        ...

    async def cancel_run(
        self, workflow_id: str, *, reason: str | None, compensate: bool, at: datetime
    ) -> list[str]:
        """Cancel the run, its pending waits, and (recursively) the children it waits on.

        One transaction. Returns the cancelled run ids, the run first. A run
        already terminal raises `RunFinishedError`.
        """
        ...

    async def save_value(self, fence: Fence, key: str, value: str, at: datetime) -> None:
        """Record a completed step that had no side effect (a recorded now(), uuid(), ...)."""
        ...

    # -- the job queue ------------------------------------------------------------
    #
    # A run submitted to a queue is driven by jobs. A job is claimed by one
    # worker at a time under a visibility lease the worker renews; an expired
    # lease puts the job back. Delivery is at least once; the run's owner
    # fencing and its recorded steps make it effectively once. Waking a queued
    # run (a signal, a timer, ...) enqueues its next job in the same transaction.

    async def submit_run(self, run: NewRun, job: NewJob, at: datetime) -> tuple[RunRow, bool]:
        """Create the run (as `create_run`) and, if created, queue its first job."""
        ...

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
    ) -> list[JobRow]:
        """Claim up to `limit` ready jobs, best priority first.

        One atomic transition admits one runner: queued -> claimed with this
        worker and a lease until now + `visibility`. Never more than one
        claimed job per concurrency key, nor more than a queue's limits.
        """
        ...

    async def renew_job(
        self, job_id: int, worker: str, *, visibility: float, now: datetime | None
    ) -> bool:
        """Extend the lease if `worker` still holds the job."""
        ...

    async def finish_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        """Close a job: done (or failed with `error`); back to the queue if its run was
        woken meanwhile. A `ghost` is a job whose run was cancelled under it."""
        ...

    async def release_job(self, job_id: int, worker: str, *, at: datetime) -> None:
        """Hand a claimed job back at once (graceful shutdown)."""
        ...

    async def retry_job(
        self, job_id: int, worker: str, *, error: str, run_after: datetime, at: datetime
    ) -> None:
        """Put a claimed job back after an infrastructure failure (the database, not the
        workflow): queued again from `run_after`, its attempt counted, or failed once
        its attempts are used up."""
        ...

    async def reap_jobs(self, *, now: datetime | None, at: datetime) -> int:
        """Return jobs with expired leases to the queue (or fail them past max attempts)."""
        ...

    async def reap_stuck_runs(
        self, *, idle_for: float, now: datetime | None, at: datetime
    ) -> list[str]:
        """Queue a job for runs left running, idle for `idle_for` s, with no open job."""
        ...

    async def list_jobs(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[JobRow]: ...

    async def rerun_from(self, workflow_id: str, step: str, *, at: datetime) -> None:
        """Forget `step` and every step started after it; the run becomes runnable."""
        ...

    # -- the outbox -----------------------------------------------------------------

    async def outbox_pending(self, *, limit: int, now: datetime | None) -> list[OutboxRow]:
        """Undelivered events due for an attempt, in order within each run."""
        ...

    async def outbox_mark(
        self,
        *,
        delivered: Sequence[tuple[str, int]],
        failed: Sequence[tuple[str, int, str, datetime | None]],
        at: datetime,
    ) -> None:
        """Record deliveries; a failure carries its error and next attempt (None: dead)."""
        ...

    async def outbox_replay_dead(self, *, limit: int, at: datetime) -> int:
        """Put dead-lettered events back for delivery; how many."""
        ...

    async def outbox_dead(self, *, limit: int) -> list[OutboxRow]: ...

    # -- idempotent commands ------------------------------------------------------------

    async def idempotency_begin(
        self, command: str, key: str, *, at: datetime, stale_after: float
    ) -> str | None:
        """Reserve (command, key). None if reserved now; the stored result (JSON text)
        if it completed before; `IdempotencyInProgressError` if it is in flight (and not
        older than `stale_after` seconds, after which it is taken over)."""
        ...

    async def idempotency_finish(
        self, command: str, key: str, *, result: str | None, at: datetime
    ) -> None:
        """Store the result, or (with None) release the reservation after a failure."""
        ...

    # -- schedules ----------------------------------------------------------------------

    async def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        """Insert a schedule, or update its definition (workflow, cron, timezone, queue,
        missed-tick policy) keeping whether it is paused and how far it has fired."""
        ...

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by name."""
        ...

    async def pause_schedule(self, name: str, paused: bool, at: datetime) -> ScheduleRow | None:
        """Pause or resume; resuming moves `fired_until` to `at`, so the ticks that fell
        in the pause are not started. None if there is no such schedule."""
        ...

    async def advance_schedule(self, name: str, fired_until: datetime, at: datetime) -> bool:
        """Record that every tick up to `fired_until` is started (compare-and-set: False
        if the schedule already fired that far, or is paused)."""
        ...

    # -- blobs (the database blob store) --------------------------------------------------

    async def put_blob(self, key: str, body: bytes, at: datetime) -> None:
        """Write blob `key` (replacing one of the same key), in its own transaction."""
        ...

    async def get_blob(self, key: str) -> bytes | None:
        """The body of blob `key`, or None."""
        ...

    async def list_blobs(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every blob whose key starts with `prefix`, by key."""
        ...

    async def delete_blobs(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix`; how many."""
        ...

    async def delete_blob(self, key: str) -> bool:
        """Delete blob `key`; False if there was none."""
        ...

    # -- metrics (``/metrics``, ``tether top``) ---------------------------------------------

    async def run_counts(self) -> list[tuple[str, str, int]]:
        """(workflow, status, runs) for every pair that has runs."""
        ...

    async def latency_histogram(self, which: str) -> Histogram:
        """``step_seconds`` (a completed step, started to completed), ``job_wait_seconds``
        (a claimed job, due to claimed) or ``job_run_seconds`` (a done job, claimed to
        done), over every row recorded."""
        ...

    async def queue_depths(self) -> list[QueueDepth]:
        """Per queue: jobs waiting, jobs claimed, when the oldest waiting one was due."""
        ...

    # -- pruning ----------------------------------------------------------------------

    async def prunable_runs(
        self, finished_before: datetime, statuses: Sequence[RunStatus] | None, limit: int
    ) -> list[str]:
        """Ids of terminal runs (of `statuses`, default every terminal one) that finished
        before `finished_before`, oldest first, at most `limit`. Non-terminal statuses
        in `statuses` are ignored."""
        ...

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete finished runs with everything of theirs, in one transaction; how many
        runs went (children included).

        With a run go its steps, events (and so its outbox rows), waitpoints, jobs,
        heartbeats, the locks it took, inbox signals sent to it, idempotency rows whose
        result names it, and its child runs (recursively). A run that is not terminal,
        or has a child that is not, is skipped whole; unknown ids are ignored.
        """
        ...

    # -- the AI call log ----------------------------------------------------------------

    async def child_runs(self, workflow_id: str) -> list[str]:
        """Ids of the runs started as children of this one, oldest first."""
        ...

    async def ai_spend(self, workflow_id: str, budget_key: str | None) -> AISpend:
        """What the call log holds for the run (`budget_key` None) or for every run that
        spent under `budget_key`; and whether the run recorded a budget warning."""
        ...

    async def list_ai_calls(self, workflow_ids: Sequence[str]) -> list[AICallRow]:
        """The AI calls of these runs, oldest first, with their prompts and responses."""
        ...

    async def ai_usage(
        self,
        *,
        workflow_ids: Sequence[str] | None = None,
        workflow: str | None = None,
        tag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | None = None,
    ) -> list[AIUsageRow]:
        """Totals of the calls matching the filters: one row, or one per group
        (``model``, ``workflow``, ``day``, ``run``). Sums over the log, never counters."""
        ...

    # -- the HTTP API (tether serve) ------------------------------------------------------

    async def list_runs_page(
        self, where: RunFilter, *, limit: int, after: tuple[str, datetime] | None = None
    ) -> list[RunRow]:
        """Runs that match `where`, newest first (ties by id), after the run `after`
        names (its id, and its creation time should it be deleted meanwhile)."""
        ...

    async def count_runs_by_status(self, where: RunFilter) -> dict[RunStatus, int]:
        """How many runs match `where` (its status aside), per status that has any."""
        ...

    async def jobs_by_queue(self) -> list[tuple[str, str, int]]:
        """(queue, job status, jobs) for every queue and status that has jobs."""
        ...

    async def create_api_token(self, row: ApiTokenRow) -> None: ...

    async def list_api_tokens(self) -> list[ApiTokenRow]:
        """Every token, revoked ones included, oldest first."""
        ...

    async def count_api_tokens(self) -> int:
        """Tokens not revoked."""
        ...

    async def find_api_token(self, token_hash: str, *, at: datetime) -> ApiTokenRow | None:
        """The live token with this hash (its last use noted, at most once a minute)."""
        ...

    async def revoke_api_token(self, id_or_name: str, *, at: datetime) -> int:
        """Revoke the live token(s) with this id or name; how many."""
        ...

    async def idempotent_begin(
        self, key: str, request_hash: str, *, at: datetime, keep: float, stale_after: float
    ) -> IdempotentAnswer | None:
        """Reserve an Idempotency-Key: None if reserved now (also when the request that
        reserved it has been in flight for over `stale_after` seconds), else what it
        stands for. Keys are forgotten `keep` seconds after their first use."""
        ...

    async def idempotent_finish(self, key: str, status: int | None, response: str | None) -> None:
        """Keep the answer to the key's request, or (`status` None) release the key."""
        ...

    async def remember_signature(
        self, hook: str, signature: str, *, expires_at: datetime, at: datetime
    ) -> bool:
        """Note a webhook signature until `expires_at`; False if it was seen already
        (a replay). Signatures past their expiry are forgotten here too."""
        ...

    async def forget_signature(self, hook: str, signature: str) -> None:
        """Forget a signature whose request could not be carried out (it may be sent again)."""
        ...
