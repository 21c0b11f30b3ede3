"""The kernel: one dispatcher through which every state change of a run goes.

Each command is carried out by the store verb(s) that change the run and
write the events it causes in one transaction; the kernel adds validation,
idempotency keys and the in-process follow-ups (driving a woken run here).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast, get_args

from pydantic import TypeAdapter, ValidationError

from .._durations import check_seconds
from ..ai import Budget
from ..clock import Clock
from ..definition import WorkflowDef
from ..errors import (
    IdempotencyConflictError,
    InvalidArgumentError,
    RunAlreadyRunningError,
    RunCancelledError,
    StaleOwnerError,
    StoreError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
    WorkflowVersionError,
    explain_validation,
)
from ..serde import dump_json
from ..store import (
    EndReason,
    JobRow,
    JobStatus,
    NewJob,
    NewRun,
    QueueLimit,
    RunRow,
    RunStatus,
    Store,
)
from ._commands import (
    Command,
    CommandResult,
    CompensationsRetried,
    JobExecute,
    JobExecuted,
    LeaseReapStale,
    OutboxFlush,
    OutboxFlushed,
    OutboxReplayDead,
    Reaped,
    Replayed,
    RunAdoptOrphans,
    RunCancel,
    RunCancelled,
    RunCreate,
    RunCreated,
    RunReapStuck,
    RunRerunFrom,
    RunResume,
    RunResumed,
    RunRetryCompensations,
    TimersFire,
    Woken,
)
from ._outbox import OutboxPolicy, Taken, flush, flush_alone
from ._ports import RunHost, WorkflowRegistry
from ._sinks import EventSink, check_sinks

__all__ = ["Kernel"]

log = logging.getLogger("tether.kernel")

R = TypeVar("R")
NOT_OURS_DELAY = 5.0  # seconds before a job handed back for another worker is due again
KEY_WAIT_LOG_EVERY = 5.0  # seconds between two logs of a resume waiting for its key
_COMMAND: TypeAdapter[Any] = TypeAdapter(Command)
_COMMAND_TYPES = get_args(get_args(Command)[0])
_RESULTS: dict[str, type[CommandResult]] = {
    "run.create": RunCreated,
    "run.cancel": RunCancelled,
    "run.resume": RunResumed,
    "run.rerun_from": Woken,
    "run.retry_compensations": CompensationsRetried,
    "job.execute": JobExecuted,
    "timers.fire": Woken,
    "lease.reap_stale": Reaped,
    "run.reap_stuck": Reaped,
    "run.adopt_orphans": Reaped,
    "outbox.flush": OutboxFlushed,
    "outbox.replay_dead": Replayed,
}


# the request a command's idempotency key was first used for, kept beside its result
_REQUEST = "$request"


def _fingerprint(cmd: Command, *, canonical: bool = True) -> str:
    """What a command asks, key aside: the same key must come with the same request.
    Canonical (object keys sorted): a retry whose payload held the same object with its
    keys in another order (re-serialised by a client) was refused as another request."""
    if canonical:
        body = json.dumps(cmd.model_dump(mode="json", exclude={"idempotency_key"}), sort_keys=True)
    else:
        body = cmd.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


def _replayed(cmd: Command, key: str, asked: str, earlier: str) -> CommandResult:
    """The first result of `key`; `IdempotencyConflictError` if it answered another
    request (a result kept before requests were kept is taken as it is, and one kept
    with the fingerprint of an earlier release, keys in their given order, still holds)."""
    data = json.loads(earlier)
    first = data.pop(_REQUEST, None) if isinstance(data, dict) else None
    if first is not None and first not in (asked, _fingerprint(cmd, canonical=False)):
        workflow_id = getattr(cmd, "workflow_id", None) or ""
        raise IdempotencyConflictError(key, workflow_id, "request", command=cmd.type)
    return _RESULTS[cmd.type].model_validate(data)


def new_run_id(workflow_name: str) -> str:
    """A fresh run id for `workflow_name`."""
    return f"{workflow_name}-{uuid.uuid4().hex[:12]}"


class Kernel:
    """Dispatches commands against a store, a workflow registry and a run host.

    `sinks` receive published events (`outbox.flush`); `job_visibility` is
    the lease a worker holds on a claimed job, renewed every third of it.
    Events and signals that reach no waiting run are kept for
    `inbox_retention` seconds. `bridge` runs a coroutine to completion from
    sync code (the App's loop thread), for the sync `dispatch`.
    """

    check_sinks = staticmethod(check_sinks)  # for an App to refuse them before it opens a store

    def __init__(
        self,
        store: Store,
        clock: Clock,
        registry: WorkflowRegistry,
        host: RunHost,
        *,
        sinks: Sequence[EventSink] = (),
        outbox: OutboxPolicy | None = None,
        job_visibility: float = 30.0,
        inbox_retention: float = 7 * 24 * 3600.0,
        idempotency_stale_after: float = 300.0,
        bridge: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
    ) -> None:
        _check_ports(store, clock, registry, host)
        # checked here, each named: a str was a bare TypeError, and a NaN or infinite
        # one was kept, to fail the first signal (OverflowError) or the job's renewals
        job_visibility = check_seconds("job_visibility", job_visibility, positive=True)
        inbox_retention = check_seconds("inbox_retention", inbox_retention, positive=True)
        idempotency_stale_after = check_seconds(
            "idempotency_stale_after", idempotency_stale_after, positive=True
        )
        self.store = store
        self.clock = clock
        self.registry = registry
        self.host = host
        self.inbox_retention = inbox_retention
        self._bridge = bridge or asyncio.run
        self.sinks: list[EventSink] = check_sinks(sinks)
        self.outbox = OutboxPolicy() if outbox is None else outbox
        self.job_visibility = job_visibility
        self._stale_after = idempotency_stale_after
        self._store_failures: dict[int, int] = {}  # job id -> store errors in a row
        self._taken: Taken = {}  # the sinks that took an event a later one failed

    @property
    def outbox(self) -> OutboxPolicy:
        """How failed deliveries are retried (set another `OutboxPolicy` to change it)."""
        return self._outbox

    @outbox.setter
    def outbox(self, policy: OutboxPolicy) -> None:
        # checked here: a dict or a number was kept, and every pass of the outbox then
        # failed with an AttributeError, nothing delivered, nothing dead-lettered
        if not isinstance(policy, OutboxPolicy):
            raise InvalidArgumentError(
                f"the kernel's outbox must be a tether.kernel.OutboxPolicy, got {policy!r}; "
                "e.g. app.kernel.outbox = OutboxPolicy(max_attempts=5, backoff=2)"
            )
        self._outbox = policy

    # -- dispatch --------------------------------------------------------------------

    async def adispatch(self, command: Command | dict[str, Any]) -> CommandResult:
        """Carry out one command; replaying its idempotency key returns the first result."""
        if isinstance(command, dict):
            try:
                cmd = _COMMAND.validate_python(command)
            except ValidationError as exc:
                raise InvalidArgumentError(f"invalid command: {explain_validation(exc)}") from None
        elif isinstance(command, _COMMAND_TYPES):
            cmd = command
        else:
            raise InvalidArgumentError(
                f"invalid command {command!r}: pass a command of tether.kernel (such as "
                "RunCancel(workflow_id=...)) or a dict with its 'type' (e.g. 'run.cancel')"
            )
        key = cmd.idempotency_key
        if key is None or isinstance(cmd, RunCreate):
            # a run's idempotency key is unique on the run itself: callers that race
            # with one key all get that run (created=False for all but the first)
            return await self._handle(cmd)
        store, clock = self.store, self.clock
        asked = _fingerprint(cmd)
        earlier = await store.idempotency_begin(
            cmd.type, key, at=clock.now(), stale_after=self._stale_after
        )
        if earlier is not None:
            return _replayed(cmd, key, asked, earlier)
        try:
            result = await self._handle(cmd)
        except BaseException:
            await asyncio.shield(
                store.idempotency_finish(cmd.type, key, result=None, at=clock.now())
            )
            raise
        kept = {**result.model_dump(mode="json"), _REQUEST: asked}
        await store.idempotency_finish(cmd.type, key, result=json.dumps(kept), at=clock.now())
        return result

    def dispatch(self, command: Command | dict[str, Any]) -> CommandResult:
        """Sync facade of `adispatch`."""
        return cast(CommandResult, self._bridge(self.adispatch(command)))

    async def aclose(self) -> None:
        """Let the sinks' deliveries in flight finish (the threads of `CallableSink` and
        `WebhookSink`, for up to `EXIT_GRACE` seconds each) rather than cut them off as
        the process exits. A sink with no `aclose` has nothing to wait for."""
        for sink in self.sinks:
            close = getattr(sink, "aclose", None)
            if close is not None:
                await close()

    async def _handle(self, cmd: Command) -> CommandResult:
        handler = cast(
            Callable[[Any], Awaitable[CommandResult]],
            getattr(self, "_" + cmd.type.replace(".", "_")),
        )
        return await handler(cmd)

    # -- runs --------------------------------------------------------------------------

    async def _run_create(self, cmd: RunCreate) -> RunCreated:
        wid = new_run_id(cmd.workflow) if cmd.workflow_id is None else cmd.workflow_id
        defn = self.registry.get_workflow(cmd.workflow, wid)
        if cmd.input is not None and not defn.takes_input:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes no input; drop the input or add a parameter"
            )
        input_text = None
        if defn.takes_input and (cmd.input is not None or defn.input_required):
            input_text = defn.encode_input(cmd.input)  # a missing or wrong one creates nothing
        run = NewRun(
            workflow_id=wid,
            workflow_name=defn.name,
            workflow_version=defn.version,
            input=input_text,
            state=dump_json(cmd.initial_state, what="initial_state"),
            priority=cmd.priority,
            tags=cmd.tags,
            tenant=cmd.tenant,
            idempotency_key=cmd.idempotency_key,
            queue=cmd.queue,
            # checked as `App.submit` checks it: a misspelt limit was stored and ignored,
            # the run then spending with no cap
            budget=Budget.stored(cmd.budget),
        )
        if cmd.queue is None:
            row, created = await self.store.create_run(run, self.clock.now())
        else:
            job = NewJob(
                queue=cmd.queue,
                priority=cmd.priority,
                concurrency_key=cmd.concurrency_key,
                max_attempts=cmd.max_attempts,
                run_after=cmd.run_after,
            )
            row, created = await self.store.submit_run(run, job, self.clock.now())
        if not created:
            await self._check_asked_again(cmd, row, defn, input_text)
        if cmd.queue is None and (created or (_handed_back(row) and row.queue is None)):
            # started again, a run that waits to be driven (handed back by a process that
            # exited) continues here, as a `run` of its id does; a run just created by
            # another caller, never claimed yet, is that caller's to drive. A queued run's
            # job is back in its queue: its workers drive it, holding its concurrency key
            # (driven here in the background it would hold neither job nor key)
            self.host.spawn(row.workflow_id)
        return RunCreated(workflow_id=row.workflow_id, created=created)

    async def _check_asked_again(
        self, cmd: RunCreate, row: RunRow, defn: WorkflowDef, input_text: str | None
    ) -> None:
        """Refuse an existing run asked for again with another request: by its
        idempotency key, any other workflow, id, input, queue, concurrency key or
        attempts; by its id, another workflow or input, or a queued run submitted to
        another queue."""
        key = cmd.idempotency_key
        if key is None or row.idempotency_key != key:  # asked for again by its id
            defn.check_same_run(row, input_text)
            _check_same_id_queue(row, cmd)
            return
        _check_same_request(key, row, defn.name, cmd.workflow_id, input_text)
        _check_same_queue(key, row, cmd)
        if cmd.queue is not None:
            jobs = await self.store.list_jobs(workflow_id=row.workflow_id, limit=1)
            if jobs:  # the job its submit queued (none: pruned, nothing to compare)
                _check_same_job(key, row, jobs[0], cmd)

    async def _run_cancel(self, cmd: RunCancel) -> RunCancelled:
        cancelled = await self.store.cancel_run(
            cmd.workflow_id, reason=cmd.reason, compensate=cmd.compensate, at=self.clock.now()
        )
        # a parent waiting on the run was woken to see it cancelled (its children's
        # parents were cancelled with them)
        run = await self.store.get_run(cmd.workflow_id)
        parent = run.parent_id if run is not None else None
        woken = [parent] if parent is not None and await self._pending(parent) else []
        self.host.cancelled(cancelled)
        self.host.woken(woken + (cancelled if cmd.compensate else []))
        return RunCancelled(cancelled=cancelled)

    async def _pending(self, workflow_id: str) -> bool:
        run = await self.store.get_run(workflow_id)
        return run is not None and run.status is RunStatus.PENDING

    async def _run_resume(self, cmd: RunResume) -> RunResumed:
        at = self.clock.now()
        payload = (
            None if cmd.payload is None else dump_json(cmd.payload, what=f"{cmd.kind} payload")
        )
        expires = at + timedelta(seconds=self.inbox_retention)
        if cmd.kind == "event":
            woken = await self.store.send_event(cmd.name, payload, at=at, expires_at=expires)
            self.host.woken(woken)
            return RunResumed(woken=woken)
        if cmd.kind == "signal":
            if cmd.workflow_id is None:
                raise InvalidArgumentError("a signal needs the workflow_id of the run it is for")
            woken = await self.store.send_signal(
                cmd.workflow_id, cmd.name, payload, at=at, expires_at=expires
            )
            self.host.woken(woken)
            return RunResumed(woken=woken, workflow_id=cmd.workflow_id)
        run_id = await self.store.complete_token(cmd.name, payload, at=at)
        run = await self.store.get_run(run_id)
        woken = [run_id] if run is not None and run.status is RunStatus.PENDING else []
        self.host.woken(woken)
        return RunResumed(woken=woken, workflow_id=run_id)

    async def _run_rerun_from(self, cmd: RunRerunFrom) -> Woken:
        budget = _rerun_budget(cmd.budget)  # before anything changes
        await self.store.rerun_from(cmd.workflow_id, cmd.step, at=self.clock.now(), budget=budget)
        self.host.woken([cmd.workflow_id])
        return Woken(woken=[cmd.workflow_id])

    async def _run_retry_compensations(self, cmd: RunRetryCompensations) -> CompensationsRetried:
        retried = await self.store.retry_compensations(cmd.workflow_id, at=self.clock.now())
        self.host.woken([cmd.workflow_id])
        return CompensationsRetried(workflow_id=cmd.workflow_id, retried=retried)

    # -- jobs ----------------------------------------------------------------------------

    async def execute_job(self, job: JobRow, worker: str) -> JobExecuted:
        """`JobExecute` for a job `worker` has just claimed in this process: a run
        claimed with it (`JobRow.run`, see `run_claim`) is driven without a read or
        a claim of its own."""
        cmd = JobExecute(job_id=job.id, workflow_id=job.workflow_id, worker=worker)
        return await self._drive_job(cmd, job.run)

    async def _job_execute(self, cmd: JobExecute) -> JobExecuted:
        """`job.execute` dispatched from outside: only for a job its worker holds. An
        unchecked one drove the run of a job nobody claimed (or another worker held),
        answering 'completed' while the job stayed queued, or beside its holder.
        (`execute_job`, the worker's path, has just claimed the job: no read.)"""
        jobs = await self.store.list_jobs(workflow_id=cmd.workflow_id)
        job = next((j for j in jobs if j.id == cmd.job_id), None)
        if job is None or job.status is not JobStatus.CLAIMED or job.worker != cmd.worker:
            raise InvalidArgumentError(
                f"job.execute: job {cmd.job_id} of run {cmd.workflow_id!r} is not claimed "
                f"by worker {cmd.worker!r} ({_job_held(job)}); claim it first (a worker's "
                "claim of its queue) and execute it as the worker that holds it"
            )
        return await self._drive_job(cmd)

    async def _drive_job(self, cmd: JobExecute, run: RunRow | None = None) -> JobExecuted:
        """`_drive`, counting the job's store errors in a row only while they last: the
        count of a job that got past them was kept for the worker's life, one entry per
        job that ever met a blip (a long outage on a busy queue: thousands)."""
        try:
            result = await self._drive(cmd, run)
        except BaseException:
            self._store_failures.pop(cmd.job_id, None)  # the job is not retried from here
            raise
        if result.status != "store_error":
            self._store_failures.pop(cmd.job_id, None)
        return result

    async def _drive(self, cmd: JobExecute, run: RunRow | None) -> JobExecuted:
        """Drive the job's run under its lease (renewed meanwhile), then close the job.

        A run cancelled under the job ends it as a ghost: its late result was
        discarded at the step boundary. If the lease is lost (this worker
        stalled past it), the drive is cancelled: another worker owns the run.
        """
        done_renewing = asyncio.Event()
        renewer = asyncio.ensure_future(self._renew(cmd.job_id, cmd.worker, done_renewing))
        # never forced: a run another live process drives (a resume, an App's run) is
        # not taken from it mid-step; its job waits (`_run_busy`)
        drive = asyncio.ensure_future(
            self.host.run_until_rest(cmd.workflow_id, claimed=run, for_job=True)
        )
        status: RunStatus | None = None
        value: Any = None
        try:
            try:
                done, _ = await asyncio.wait({drive, renewer}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # the host gave the job up (shutdown): stop driving before it hands the
                # job back, or the run goes on here while another worker claims it
                drive.cancel()
                await asyncio.gather(drive, return_exceptions=True)
                raise
            if drive not in done:  # lease lost: stop writing, the run belongs to another
                drive.cancel()
                await asyncio.gather(drive, return_exceptions=True)
                return JobExecuted(status="lease_lost", error="the job's lease expired")
            try:
                status, value = drive.result()
            except RunAlreadyRunningError as exc:
                return await self._run_busy(cmd, exc)
            except (StaleOwnerError, RunCancelledError):
                pass
            except (WorkflowNotFoundError, WorkflowVersionError) as exc:
                return await self._not_ours(cmd, exc)
            except StoreError as exc:  # the database blinked: not the workflow's failure
                return await self._retry_later(cmd, exc)
            except Exception as exc:  # the run failed: recorded on the run, the job is done
                log.info("run %s failed: %r", cmd.workflow_id, exc)
        finally:
            done_renewing.set()
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        return await self._close_job(cmd, status, value)

    async def _close_job(
        self, cmd: JobExecute, status: RunStatus | None, value: Any
    ) -> JobExecuted:
        """Close the job of a drive that left its run at `status` (`value`: the drive's)."""
        if status is RunStatus.RUNNING:  # not driven here: this process is shutting down
            return await self._hand_back_job(cmd)
        if status is RunStatus.PENDING and isinstance(value, datetime):
            return await self._backing_off(cmd, value)
        ghost = False
        if status not in (RunStatus.COMPLETED, RunStatus.WAITING):  # rare: ask the store
            # None: the drive did not see how it ended (a cancel under the job ended it);
            # else it saw to that itself (a compensation of a run cancelled before)
            drove_to_end = status is not None
            run = await self.store.get_run(cmd.workflow_id)
            status = None if run is None else run.status
            ghost = not drove_to_end and _cancelled_under_job(run)
        await self.store.finish_job(
            cmd.job_id, cmd.worker, error=None, ghost=ghost, at=self.clock.now()
        )
        return JobExecuted(status="missing" if status is None else status.value, ghost=ghost)

    async def _run_busy(self, cmd: JobExecute, exc: RunAlreadyRunningError) -> JobExecuted:
        """The job's run is driven by another live process: its job goes back, its
        attempt not counted, to be claimed again once that claim may have lapsed (or
        sooner: the run may end or park meanwhile, and the job then just closes)."""
        now = self.clock.now()
        wait = 5.0 if exc.until is None else (exc.until - now).total_seconds()
        after = now + timedelta(seconds=min(5.0, max(0.5, wait)))
        log.info("run %s is driven by %s; its job waits", cmd.workflow_id, exc.owner)
        await self.store.release_job(cmd.job_id, cmd.worker, at=now, run_after=after)
        return JobExecuted(status="busy", error=str(exc))

    async def _hand_back_job(self, cmd: JobExecute) -> JobExecuted:
        """The process shuts down and left the job's run, driven by another live
        process, alone: its job goes back at once, its attempt not counted. Closed, it
        left the run without a job (its owner's crash then waited for the stuck-run
        chore, not the next worker's claim)."""
        await self.store.release_job(cmd.job_id, cmd.worker, at=self.clock.now())
        return JobExecuted(status="released", error="shutting down: the job went back")

    async def _backing_off(self, cmd: JobExecute, due: datetime) -> JobExecuted:
        """The run handed itself back to wait out a step's retry back-off: its job goes
        back, its attempt not counted, to be claimed when the next attempt is due, and
        the worker's slot serves other jobs meanwhile."""
        await self.store.release_job(cmd.job_id, cmd.worker, at=self.clock.now(), run_after=due)
        return JobExecuted(status="backing_off", error=None)

    async def _not_ours(self, cmd: JobExecute, exc: Exception) -> JobExecuted:
        """This process does not have the run's workflow (or a version that can resume
        it: an old deploy beside a new one). Not the run's failure: its job goes back,
        its attempt not counted, for a worker that has it, after `NOT_OURS_DELAY`
        seconds so that this one does not take it straight back."""
        now = self.clock.now()
        log.warning("run %s is not for this worker (%s); its job goes back to the queue",
                    cmd.workflow_id, exc)  # fmt: skip
        after = now + timedelta(seconds=NOT_OURS_DELAY)
        await self.store.release_job(cmd.job_id, cmd.worker, at=now, run_after=after)
        return JobExecuted(status="not_ours", error=str(exc))

    async def _retry_later(self, cmd: JobExecute, exc: StoreError) -> JobExecuted:
        """The run stays as it is (running, its claim lapsing); its job goes back to the
        queue after a back-off, so a worker drives it again once the database answers."""
        attempt = self._store_failures.get(cmd.job_id, 0) + 1
        self._store_failures[cmd.job_id] = attempt
        delay = min(60.0, 0.5 * 2 ** (attempt - 1))
        log.warning(
            "run %s: store error, its job is retried in %.1fs: %s", cmd.workflow_id, delay, exc
        )
        at = self.clock.now()
        try:
            await self.store.retry_job(
                cmd.job_id,
                cmd.worker,
                error=f"store error: {exc}",
                run_after=at + timedelta(seconds=delay),
                at=at,
            )
        except StoreError as again:  # still down: the job's lease will lapse and be reaped
            log.warning("could not put job %s back: %s", cmd.job_id, again)
        return JobExecuted(status="store_error", error=str(exc))

    @contextlib.asynccontextmanager
    async def holding_job(
        self, workflow_id: str, owner: str, limits: Mapping[str, QueueLimit] | None = None
    ) -> AsyncIterator[None]:
        """Hold a queued run's job, as `owner`, while this process drives the run itself
        (`app.resume`, `app.run` of a submitted run's id): claimed as a worker's claim
        would, it holds the run's concurrency key (no worker runs another job of that
        key meanwhile), counts against its queue's caps in `limits` (as a worker's
        claim it is) and no worker claims the job beside this drive. A key another
        claimed job holds, or a queue at its cap, is waited for (logged every
        `KEY_WAIT_LOG_EVERY` seconds, naming what holds it). A job another worker
        holds, or none, is left as it is: the drive's claim of the run decides. On
        exit the job closes as a worker's does."""
        job = await self._take_job(workflow_id, owner, limits)
        if job is None:
            yield
            return
        done = asyncio.Event()
        renewer = asyncio.ensure_future(self._renew(job.id, owner, done))
        try:
            yield
        finally:
            done.set()
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._let_job_go(job, owner)

    async def _take_job(
        self, workflow_id: str, owner: str, limits: Mapping[str, QueueLimit] | None
    ) -> JobRow | None:
        """The run's job once claimed for `owner` (its key and its queue's room waited
        for); None when the run has no queued job to claim."""
        loop = asyncio.get_running_loop()
        logged, pause = -KEY_WAIT_LOG_EVERY, 0.02
        while True:
            job = await self.store.claim_run_job(
                workflow_id, owner, visibility=self.job_visibility,
                now=self.clock.store_time(), at=self.clock.now(), limits=limits,
            )  # fmt: skip
            if job is None or job.status is not JobStatus.QUEUED:
                return job  # claimed now, for `owner`; or nothing to claim
            if loop.time() - logged >= KEY_WAIT_LOG_EVERY:
                logged = loop.time()
                await self._log_wait(job, limits or {})
            await asyncio.sleep(pause)  # a finished job notifies no one: look again
            pause = min(1.0, pause * 2)

    async def _log_wait(self, job: JobRow, limits: Mapping[str, QueueLimit]) -> None:
        """Say why the run of `job`, to be driven here, waits: its concurrency key is
        held (by which run), or else its queue is at its cap."""
        wid = job.workflow_id
        holder = None
        if job.concurrency_key is not None:
            holder = await self.store.key_holder(job.concurrency_key)
        if holder is not None or job.queue not in limits:
            log.info(
                "run %s waits for its concurrency key %r, held by %s; it is driven "
                "here once that job ends", wid, job.concurrency_key, _key_held_by(holder),
                extra={"workflow_id": wid, "concurrency_key": job.concurrency_key},
            )  # fmt: skip
            return
        cap = limits[job.queue]
        caps = [f"{cap.concurrency} jobs at once"] if cap.concurrency is not None else []
        caps += [f"{cap.rate_per_second:g} starts a second"] if cap.rate_per_second else []
        log.info(
            "run %s waits for room in its queue %r (capped at %s across all workers); it "
            "is driven here once the queue has room", wid, job.queue, " and ".join(caps),
            extra={"workflow_id": wid, "queue": job.queue},
        )  # fmt: skip

    async def _let_job_go(self, job: JobRow, owner: str) -> None:
        """Close the job held for a drive here, as a worker closes its job: a run left
        running (driven by another process, or cut short here) has its job back in the
        queue, its attempt not counted; else done, or queued again if it is runnable."""
        try:
            run = await self.store.get_run(job.workflow_id)
            if run is None:
                return  # deleted, with its jobs
            at = self.clock.now()
            if run.status is RunStatus.RUNNING:
                await self.store.release_job(job.id, owner, at=at)
            else:
                await self.store.finish_job(job.id, owner, error=None, ghost=False, at=at)
        except StoreError as exc:  # its lease lapses, and the job goes back then
            log.warning("could not close job %s of run %s: %s", job.id, job.workflow_id, exc)

    async def _renew(self, job_id: int, worker: str, done: asyncio.Event) -> None:
        """Renew the job's lease every third of it until `done` (or cancelled, or the
        lease is lost). A failed renewal is retried until the lease has really
        lapsed: only then does the drive stop (another worker may own the run).

        `done` is checked besides the cancellation because a cancellation that
        lands while a dropped PostgreSQL connection is being replaced can be
        swallowed below us; without the flag this loop would renew forever and
        the job would stay claimed after its run ended.
        """
        store, clock = self.store, self.clock
        loop = asyncio.get_running_loop()
        valid_until = loop.time() + self.job_visibility
        while not done.is_set():
            await asyncio.sleep(self.job_visibility / 3)
            if done.is_set():
                return
            while True:
                try:
                    ok = await store.renew_job(
                        job_id, worker, visibility=self.job_visibility, now=clock.store_time()
                    )
                    break
                except StoreError as exc:
                    left = valid_until - loop.time()
                    if left <= 0:
                        log.warning("job %s: lease lapsed while renewal failed: %s", job_id, exc)
                        return
                    log.info("job %s: renewal failed (%s); retrying", job_id, exc)
                    await asyncio.sleep(min(1.0, left / 2, self.job_visibility / 6))
            if not ok:
                return
            valid_until = loop.time() + self.job_visibility

    # -- maintenance ---------------------------------------------------------------------

    async def _timers_fire(self, cmd: TimersFire) -> Woken:
        woken = await self.store.fire_due(now=self.clock.store_time(), at=self.clock.now())
        self.host.woken(woken)
        return Woken(woken=woken)

    async def _lease_reap_stale(self, cmd: LeaseReapStale) -> Reaped:
        count = await self.store.reap_jobs(now=self.clock.store_time(), at=self.clock.now())
        return Reaped(count=count)

    async def _run_reap_stuck(self, cmd: RunReapStuck) -> Reaped:
        runs = await self.store.reap_stuck_runs(
            idle_for=cmd.idle_for, now=self.clock.store_time(), at=self.clock.now()
        )
        return Reaped(count=len(runs), runs=runs)

    async def _run_adopt_orphans(self, cmd: RunAdoptOrphans) -> Reaped:
        if not cmd.workflows:
            return Reaped(count=0)
        runs = await self.store.adopt_orphans(
            cmd.workflows,
            queue=cmd.queue,
            grace=cmd.grace,
            now=self.clock.store_time(),
            at=self.clock.now(),
        )
        return Reaped(count=len(runs), runs=runs)

    async def _outbox_flush(self, cmd: OutboxFlush) -> OutboxFlushed:
        """One batch, under the outbox lock (`flush_alone`): nothing while another
        process publishes."""
        if not self.sinks:  # nothing to publish to: the lock is left to an App that has sinks
            return OutboxFlushed(delivered=0, failed=0, dead=0)
        policy = self.outbox

        def deliver() -> Awaitable[tuple[int, int, int]]:
            return flush(
                self.store,
                self.sinks,
                self.clock,
                policy,
                max_events=cmd.max_events,
                taken=self._taken,
            )

        delivered, failed, dead = await flush_alone(self.store, self.clock, deliver)
        return OutboxFlushed(delivered=delivered, failed=failed, dead=dead)

    async def _outbox_replay_dead(self, cmd: OutboxReplayDead) -> Replayed:
        count = await self.store.outbox_replay_dead(limit=cmd.max_events, at=self.clock.now())
        return Replayed(count=count)


def _rerun_budget(text: str | None) -> str | None:
    """A rerun's new budget (JSON of `tether.ai.Budget` fields), checked as
    `App.rerun_from` checks its own, then kept as given. Text that was no JSON, or a
    misspelt limit, was stored unchecked, and the run's next AI call failed on it (or
    spent with no cap)."""
    if text is None:
        return None
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"run.rerun_from budget must be JSON of tether.ai.Budget fields, got {text!r} "
            f"({exc}); e.g. budget='{{\"max_usd\": 10}}'"
        ) from None
    Budget.of(fields)  # refused here if it is no budget
    return text


# what the kernel calls on each port (a few of each: enough to tell a wrong object)
_PORTS = (
    ("store", ("create_run", "cancel_run", "send_signal"), "tether.store.open_store(url)"),
    ("clock", ("now", "store_time"), "tether.SystemClock()"),
    ("registry", ("get_workflow",), "an object with get_workflow(name, workflow_id)"),
    (
        "host",
        ("spawn", "woken", "cancelled", "run_until_rest", "run_claim"),
        "a tether.kernel.RunHost",
    ),
)


def _check_ports(*ports: object) -> None:
    """Refuse a port that lacks what the kernel calls on it, naming what it needs: a
    store's url for the store, or an App's registry missing `get_workflow`, was kept
    and every command then failed with a bare AttributeError."""
    for port, (what, needs, example) in zip(ports, _PORTS, strict=True):
        missing = [name for name in needs if not callable(getattr(port, name, None))]
        if missing:
            raise InvalidArgumentError(
                f"Kernel {what} must have {', '.join(needs)}; {port!r} has no "
                f"{', '.join(missing)}: pass e.g. {example}"
            )


def _check_same_request(
    key: str, run: RunRow, workflow: str, workflow_id: str | None, input_text: str | None
) -> None:
    """Refuse the run `key` created, asked for again with another request: another
    workflow, another explicit workflow id, or any other input."""
    if run.workflow_name != workflow:
        raise IdempotencyConflictError(key, run.workflow_id, "workflow")
    if workflow_id is not None and workflow_id != run.workflow_id:
        raise IdempotencyConflictError(key, run.workflow_id, "workflow id")
    if _differ(run.input, input_text):
        raise IdempotencyConflictError(key, run.workflow_id)


def _check_same_queue(key: str, run: RunRow, cmd: RunCreate) -> None:
    """Refuse the run `key` created, asked for again on another queue (or driven here
    where it was queued, or queued where it was driven here): other workers than this
    caller asked for would serve it. Another priority is no other request (the same
    workers serve it, in a different order): the run keeps its own, and that is said."""
    if run.queue != cmd.queue:
        was = "not queued (started)" if run.queue is None else f"on queue {run.queue!r}"
        asks = "no queue" if cmd.queue is None else f"queue {cmd.queue!r}"
        differs = f"queue: it is {was}, this request asks for {asks}"
        raise IdempotencyConflictError(key, run.workflow_id, differs)
    if cmd.queue is not None and run.priority != cmd.priority:
        log.warning(
            "idempotency key %r: run %s is queued with priority %d; the priority %d asked "
            "now is not applied (the same key returns the run as it was submitted)",
            key, run.workflow_id, run.priority, cmd.priority,
            extra={"workflow_id": run.workflow_id},
        )  # fmt: skip


def _check_same_job(key: str, run: RunRow, job: JobRow, cmd: RunCreate) -> None:
    """Refuse the run `key` queued, asked for again with another concurrency key or
    number of attempts: its job keeps those it was queued with, so the caller's would
    not apply (two runs of one key could run at once; a run allowed fewer attempts
    would be tried more often)."""
    for field, was, asks in (
        ("concurrency_key", job.concurrency_key, cmd.concurrency_key),
        ("max_attempts", job.max_attempts, cmd.max_attempts),
    ):
        if was != asks:
            differs = f"{field}: it is queued with {was!r}, this request asks for {asks!r}"
            raise IdempotencyConflictError(key, run.workflow_id, differs)


def _check_same_id_queue(run: RunRow, cmd: RunCreate) -> None:
    """Refuse an existing queued run submitted again by its id to another queue: the
    workers of the queue asked for would never see it. (`start` of its id returns it,
    its workers drive it; so does a `submit` of a run started without a queue.)"""
    if cmd.queue is None or run.queue is None or run.queue == cmd.queue:
        return
    raise WorkflowIdConflictError(
        run.workflow_id,
        "queue",
        f"workflow id {run.workflow_id!r} already names a run on queue {run.queue!r}, "
        f"not on queue {cmd.queue!r} (its workers would never see it); choose another "
        f"workflow_id, or submit it to queue {run.queue!r}",
    )


def _differ(recorded: str | None, given: str | None) -> bool:
    """Two recorded inputs (JSON text) that hold different values."""
    if recorded is None or given is None:
        return recorded != given
    return bool(json.loads(recorded) != json.loads(given))


def _cancelled_under_job(run: RunRow | None) -> bool:
    """Whether a claimed job's run was cancelled under it (a ghost): a run's queued job
    is cancelled with the run, so a claimed job whose run ended by cancellation had it
    cancelled under it, unless that run's compensation is still due (the job goes
    back to the queue for it)."""
    return run is not None and run.end_reason is EndReason.CANCELLED and run.settled


def _handed_back(run: RunRow) -> bool:
    """Pending after an owner drove it: handed back (or woken), runnable by anyone."""
    return run.status is RunStatus.PENDING and run.generation >= 1


def _job_held(job: JobRow | None) -> str:
    """What a job is, for the error of a `job.execute` its worker does not hold."""
    if job is None:
        return "that run has no such job"
    if job.status is JobStatus.CLAIMED:
        return f"worker {job.worker!r} holds it"
    return f"it is {job.status.value}"


def _key_held_by(job: JobRow | None) -> str:
    """Who holds a concurrency key, for the log of a run waiting for it."""
    if job is None:
        return "a job being claimed"
    return f"run {job.workflow_id!r} (worker {job.worker!r}, lease until {job.locked_until})"
