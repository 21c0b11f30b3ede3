"""Driving a run: claim it, execute its function, then complete, fail, park or compensate.

One `Runner` per App. It is also the `Host` that workflows use to start and
drive child runs in this process, and it keeps the runs this process is
driving so that one run is never driven twice at once here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ._attach import in_step
from ._compensation import compensate, completed_at_once, completion_ranks
from ._control import HandBack, StepExited, Suspend
from ._failure import decode_error, encode_error, error_text, revive_error
from ._interceptors import RunCall, run_intercepted, with_listeners
from ._iso_time import iso_z
from ._owners import forget_owner, owner_is_dead
from ._results import recorded_as, recorded_result
from ._run_state import STEP_RULE, RunState
from ._runtime import EventHook, Runtime
from ._waits import MISSING
from ._workflow import Workflow, load_history, load_record
from .clock import SystemClock
from .definition import RunResult, WorkflowDef
from .errors import (
    InvalidArgumentError,
    NewerRunError,
    RunAlreadyRunningError,
    RunCancelledError,
    RunFinishedError,
    RunNotFoundError,
    StoreError,
    TetherError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
    WorkflowVersionError,
    explain_validation,
)
from .record import RunRecord
from .serde import dump_json, load_json, return_type_of
from .store import (
    EndReason,
    Fence,
    NewEvent,
    NewJob,
    NewRun,
    RunClaim,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WaitRow,
    WaitStatus,
)

__all__ = ["Runner"]

log = logging.getLogger("tether")

PROCESS_SCOPE = "process"  # locks announcing a live process and the workflows it drives
# real seconds between looks at a run waiting inline for its timer, for an answer that
# another process gave (one given here ends the wait at once)
ANSWERED_EVERY = 0.25

_SUSPENDED = object()
_CANCELLED = object()
_HANDED_BACK = object()
_UNKNOWN: Any = object()

# ended or cancelled: the workflow function runs no more (a compensating replay aside)
_ENDED = (RunStatus.CANCELLED, RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
_FAILURES = (EndReason.FAILED, EndReason.TIMED_OUT)  # its function raised, or ran too long

# what cut short the steps a cancelled run left running (`_close_cancelled_steps`)
_DISCARDED = " (a result it returns since is discarded)"
_BY_CANCEL = "by the cancel" + _DISCARDED
_BY_ANOTHER = "by the process that drove it, which no longer does" + _DISCARDED
_BY_DEAD = "by the process that drove it, which has ended"
# how often the runs with an async step running here are checked for a cancel from
# another process (their claims renewed), at the most
CANCEL_CHECK = 1.0

# the runners driving the run the code calling this belongs to (a child run driven inline
# by another App's step nests): `App.close` tells a step of its own from another App's
_DRIVING: contextvars.ContextVar[tuple[Runner, ...]] = contextvars.ContextVar(
    "tether_driving", default=()
)
# whether that code is (or was started by) an `on_event` listener the drive called
_HEARING: contextvars.ContextVar[bool] = contextvars.ContextVar("tether_hearing", default=False)


class Runner:
    def __init__(
        self,
        runtime: Runtime,
        lookup: Callable[[str, str | None], WorkflowDef],
        *,
        inline_wait: float,
        resume_woken: bool,
        owner_lease: float = 30.0,
        workflows: Callable[[], list[str]] = list,
        on_keep_alive: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._rt = runtime
        self._on_keep_alive = on_keep_alive  # more for each keep-alive turn (orphans)
        self._workflows = workflows
        self._store = runtime.store
        self._clock = runtime.clock
        self._lookup = lookup
        self.inline_wait = inline_wait
        self.resume_woken = resume_woken
        self._active: dict[str, asyncio.Event] = {}
        self._states: dict[str, RunState] = {}  # the drives of `_active`, once opened
        self._undoing: set[str] = set()  # cancelled runs compensated here now
        # children created here for their parent to await, by id: the parent, until its
        # wait for the child is registered (a cancel landing before that misses them)
        self._unwaited: dict[str, str] = {}
        self._rewake: set[str] = set()  # woken while being driven here: drive again after
        self._background: set[asyncio.Task[Any]] = set()
        self.owner_lease = owner_lease
        self._drives: set[asyncio.Task[Any]] = set()  # tasks driving a run here now
        self._cut: set[asyncio.Task[Any]] = set()  # those `shutdown` cancelled (grace over)
        self._renewer: asyncio.Task[None] | None = None
        self._announced = False  # whether this process has announced itself once
        self.queues: tuple[str, ...] = ()  # the job queues it serves (a worker), announced
        # it takes up runs of its workflows that another process woke or left (orphans):
        # an App with recover_orphans, or host chores (`tether serve`); a worker does too
        self.adopts = False

    # -- the Host port used by workflows --------------------------------------------

    async def create_child(
        self, defn: WorkflowDef, input: Any, workflow_id: str, parent_id: str, *,
        detached: bool, budget: str | None = None,
    ) -> None:  # fmt: skip
        # a child of a queued run is queued too, so workers (not this process) resume it
        parent = await self._store.get_run(parent_id)
        if not detached and parent is not None and parent.status.terminal:
            # its parent was cancelled (or a compensating replay runs its code): no wait
            # of the parent's will take the child, nor its parent's cancel reach it, and
            # it sat pending for good (or ran, for nobody, once recovered as an orphan)
            raise RunCancelledError(parent_id)
        queue = parent.queue if parent is not None else None
        if queue is None:  # driven here: a function never declared is driven as given
            self._bind_child(defn, workflow_id)
        text = None if input is MISSING else defn.encode_input(input, child=True)
        run = NewRun(
            workflow_id=workflow_id,
            workflow_name=defn.name,
            workflow_version=defn.version,
            input=text,
            state="null",
            parent_id=parent_id,
            queue=queue,
            budget=budget,  # its own AI budget, if given (its parent's covers it too)
        )
        if detached and queue is not None:
            row, created = await self._store.submit_run(run, NewJob(queue=queue), self._clock.now())
        else:
            row, created = await self._store.create_run(run, self._clock.now())
        if not created:  # its id given: it must be this child, not a run of its own
            defn.check_same_run(row, text)
            if row.parent_id != parent_id:
                raise InvalidArgumentError(
                    f"workflow id {workflow_id!r} already names a run that is not a child of "
                    f"run {parent_id!r}; choose another workflow_id for the child"
                )
        elif detached and queue is None:
            self.spawn(workflow_id)
        if not detached:  # until its parent's wait for it is registered (`drive_child`)
            self._unwaited[workflow_id] = parent_id

    def _bind_child(self, defn: WorkflowDef, workflow_id: str) -> None:
        """Drive the child with the callable the parent passed when no workflow of its
        name is registered here (as `app.run` does a function never declared): the
        parent passes it again on every replay, wherever that runs."""
        try:
            self._lookup(defn.name, workflow_id)
        except WorkflowNotFoundError:
            self._rt.run_defs[workflow_id] = defn

    async def drive_child(self, workflow_id: str) -> None:
        self._unwaited.pop(workflow_id, None)  # its parent waits for it: a cancel reaches it
        try:
            await self.drive(workflow_id)
        except Exception as exc:  # recorded on the child; the parent reads it from there
            log.debug("child run %s ended with %r", workflow_id, exc)

    # -- background driving -------------------------------------------------------------

    def spawn(self, workflow_id: str) -> None:
        """Drive a run in the background of this process (a woken or detached run)."""
        self.ensure_alive()
        self._track(self._drive_quietly(workflow_id))

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        # a context of its own: a drive started from a run's code (a detached child, a
        # run woken from a step) is no part of it (its step, its item, the mutexes held)
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def woken(self, run_ids: list[str]) -> None:
        for rid in run_ids:
            if rid in self._active:  # waiting inline for its timer: answered, it goes on
                self._rt.waker.notify(_answered(rid))
        if not self.resume_woken:
            return
        for rid in run_ids:
            if rid in self._active:
                self._rewake.add(rid)
            else:
                self._track(self._drive_if_local(rid))

    async def _drive_if_local(self, workflow_id: str) -> None:
        run = await self._store.get_run(workflow_id)
        if run is None or run.queue is not None:
            return  # a queued run got a job in the same transaction: workers drive it
        await self._drive_quietly(workflow_id)

    async def _drive_quietly(self, workflow_id: str) -> None:
        """Drive in the background; log a failure this drive ran into (not one it only
        found recorded: a `rerun_from` drives the run itself and raises its failure)."""
        try:
            await self.run_until_rest(workflow_id)
        except WorkflowNotFoundError:
            log.debug("run %s woke but its workflow is not registered here", workflow_id)
        except RunAlreadyRunningError as exc:
            log.debug("run %s is driven elsewhere: %s", workflow_id, exc)
        except WorkflowVersionError as exc:  # not a failure: it waits for an App that can
            log.warning("run %s woke but is left pending: %s", workflow_id, exc)
        except Exception:
            log.exception("run %s failed", workflow_id)

    async def settle(self) -> None:
        """Return once no run is driven in the background here: those started, those
        woken (by a signal, a timer, a child's end) and those they woke meanwhile."""
        me = asyncio.current_task()
        while tasks := [t for t in self._background if t is not me and not t.done()]:
            await asyncio.wait(tasks)

    def begin_drain(self) -> None:
        """Start no more steps: every run driven here hands itself back at its next
        step boundary (a step in flight finishes and is recorded first)."""
        self._rt.drain()

    async def shutdown(self, grace: float) -> None:
        """Drain, wait up to `grace` seconds for the runs driven here to hand
        themselves back, then cancel what is left: those runs are handed back
        with their step in flight recorded as interrupted."""
        self.begin_drain()
        me = asyncio.current_task()
        tasks = [t for t in self._drives | self._background if t is not me and not t.done()]
        if tasks:
            log.info(
                "stopping: %d run(s) in flight finish their step and hand themselves back "
                "(grace %gs)",
                len(tasks),
                grace,
            )
            _, late = await asyncio.wait(tasks, timeout=grace)
            self._cut |= late
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._renewer is not None:
            await _stopped(self._renewer)
            self._renewer, self._announced = None, False
            with contextlib.suppress(StoreError):  # gone: no longer a driver of anything
                await self._store.release_lock(
                    PROCESS_SCOPE,
                    self._rt.owner,
                    self._rt.owner,
                    now=self._clock.store_time(),
                    at=self._clock.now(),
                )
        forget_owner(self._rt.owner)

    # -- the owner's claim on the runs it drives -----------------------------------------

    async def _claim(
        self, workflow_id: str, event: NewEvent, *, force: bool, compensating: bool = False
    ) -> RunRow:
        """Claim the run for this process; a live other owner is refused, a dead one
        taken over (at once when it is known dead, else once its claim lapsed)."""
        await self._announce()

        async def claim(dead_owner: str | None = None) -> RunRow:
            return await self._store.claim_run(
                workflow_id,
                self._rt.owner,
                self._clock.now(),
                event,
                compensating=compensating,
                lease=self.owner_lease,
                force=force,
                now=self._clock.store_time(),
                dead_owner=dead_owner,
            )

        try:
            return await claim()
        except RunAlreadyRunningError as exc:
            if not owner_is_dead(exc.owner):
                raise
            return await claim(dead_owner=exc.owner)

    async def _announce(self) -> None:
        """Keep this process known as alive, announced before its first run is
        driven (not a keep-alive turn after)."""
        self.ensure_alive()
        if not self._announced:
            try:
                await self._renew()
            except StoreError as exc:  # the keep-alive tries again
                log.warning("announcing this process failed: %s", exc)

    def run_claim(self) -> RunClaim:
        """How a worker's job claim claims the job's run for this process too: the
        runs of workflows registered here, at versions they resume."""
        workflows: list[tuple[str, str | None]] = []
        for name in self._workflows():
            defn = self._lookup(name, None)
            workflows += [(name, v) for v in dict.fromkeys((defn.version, *defn.compatible))]
        return RunClaim(self._rt.owner, self.owner_lease, tuple(workflows))

    def ensure_alive(self) -> None:
        """Start (once) what keeps this process known as alive: its announcement of
        the workflows it drives, and its claims on the runs it drives now."""
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._keep_alive())

    async def _keep_alive(self) -> None:
        while True:
            try:
                await self._renew()
            except StoreError as exc:  # try again next time; the claims have slack for it
                log.warning("renewing this process's claims failed: %s", exc)
            if self._on_keep_alive is not None:
                try:
                    await self._on_keep_alive()
                except StoreError as exc:
                    log.warning("a keep-alive chore failed: %s", exc)
            await self._until_next_turn()

    async def _until_next_turn(self) -> None:
        """Wait a third of the owner lease, renewing meanwhile, every `CANCEL_CHECK`
        seconds, the claims of the runs with an async step running here: a renewal says
        which were cancelled, and a cancel from another process reaches such a step
        within that, not within a third of the lease (10 s by default)."""
        left = self.owner_lease / 3
        while left > 0:
            pause = min(left, CANCEL_CHECK)
            await asyncio.sleep(pause)
            left -= pause
            stepping = [w for w, st in self._states.items() if st.running_async_steps()]
            if left > 0 and stepping:
                try:
                    await self._renew_runs(stepping)
                except StoreError as exc:  # the turn's renewal tries again
                    log.debug("checking runs for a cancel failed: %s", exc)

    async def _renew(self) -> None:
        names = self._workflows()
        if names:  # other processes may ask who drives a workflow (`drivers`)
            await self._store.acquire_lock(
                PROCESS_SCOPE,
                self._rt.owner,
                self._rt.owner,
                ttl=self.owner_lease,
                now=self._clock.store_time(),
                detail=dump_json(self._announcement(names), what="process"),
                at=self._clock.now(),
            )
        if self._active:
            await self._renew_runs(list(self._active))
        self._announced = True

    def _announcement(self, names: list[str]) -> dict[str, Any]:
        """What this process says of itself to others (`drivers`): the workflows it drives,
        the queues it serves, and whether it takes up runs woken elsewhere."""
        said: dict[str, Any] = {"workflows": names}
        if self.queues:
            said["queues"] = list(self.queues)
        elif not self.adopts:  # it drives only what it runs, resumes or wakes itself
            said["adopts"] = False
        return said

    async def _renew_runs(self, driven: list[str]) -> None:
        held = await self._store.renew_owner(
            self._rt.owner, driven, lease=self.owner_lease, now=self._clock.store_time()
        )
        # cancelled by another process (or taken over): a run resting before a retry
        # learns it now, not when its back-off ends, and its async steps are stopped
        gone = [
            w for w in driven if held.get(w) is not RunStatus.RUNNING and w not in self._undoing
        ]
        self._rt.wake(gone)
        await self._interrupt_cancelled(gone)

    async def _interrupt_cancelled(self, workflow_ids: list[str]) -> None:
        """Stop the async step functions running here of those runs that another process
        cancelled (not those taken over, or ended or parked meanwhile by their drive
        here: the store says which)."""
        for wid in workflow_ids:
            st = self._states.get(wid)
            if st is None or not st.running_async_steps():
                continue
            run = await self._store.get_run(wid)
            if (
                run is not None
                and run.status is RunStatus.CANCELLED
                and self._states.get(wid) is st
            ):
                self._interrupt(st)

    def cancelled(self, run_ids: list[str]) -> None:
        """Runs this process cancelled: stop their async step functions running here."""
        for rid in run_ids:
            st = self._states.get(rid)
            if st is not None:
                self._interrupt(st)

    def _interrupt(self, st: RunState) -> None:
        stopped = st.interrupt()
        if stopped:
            log.info("run %s was cancelled: stopping its step(s) %s", st.workflow_id,
                     ", ".join(stopped))  # fmt: skip

    async def announce_now(self) -> None:
        """Say now which workflows (and queues) this process drives, not at the next
        keep-alive turn; a failure is left to that turn."""
        try:
            await self._renew()
        except StoreError as exc:
            log.warning("announcing this process failed: %s", exc)

    async def drivers(self, workflow_name: str, queue: str | None = None) -> list[str]:
        """The live processes (owners) that announce they drive `workflow_name`; with
        `queue`, only those that serve that job queue (workers)."""
        now = self._clock.store_time() or datetime.now(UTC)
        found = []
        for row in await self._store.list_locks(PROCESS_SCOPE):
            if row.released_at is not None or row.expires_at <= now:
                continue
            said = load_json(row.detail) or {}
            if workflow_name not in said.get("workflows", []):
                continue
            # a plain App (no queue served, no orphans taken up) never drives a run that
            # another process woke: `tether runs signal` said it would, and the run waited
            if (queue is None and said.get("adopts", True)) or queue in said.get("queues", []):
                found.append(row.holder)
        return found

    async def _hand_back(self, st: RunState) -> None:
        """Give the run back (clean exit): runnable at once by the next process. A
        cancelled run cut short in its compensation stays cancelled, its claim
        released, and the next process (a resume, `recover_orphans`) runs the rest."""
        if st.fence.compensating:
            left = [c.key for c in st.compensations]
            message = "compensation interrupted"
            detail: str | None = dump_json({"compensations_left": left}, what="event")
            release = self._store.release_claim
        elif st.resume_at is not None:  # a worker's run waits out a back-off in its queue
            message = "retry back-off: the next attempt is due at " + iso_z(st.resume_at)
            detail = dump_json({"retry_at": iso_z(st.resume_at)}, what="event")
            release = self._store.release_run
        else:
            interrupted = sorted(st.in_flight)
            detail = dump_json({"interrupted": interrupted}, what="event") if interrupted else None
            message = "interrupted step: " + ", ".join(interrupted) if interrupted else "clean exit"
            release = self._store.release_run
        try:
            released = await release(
                st.fence,
                at=self._clock.now(),
                event=NewEvent("workflow.handed_back", message, detail),
            )
        except StoreError as exc:  # fenced out or unreachable: its claim will lapse
            log.warning("could not hand back run %s: %s", st.workflow_id, exc)
            return
        if not released and not st.fence.compensating:  # no longer running under this claim
            await self._close_if_cancelled(st)
        st.emit("workflow.handed_back", message)

    async def _close_if_cancelled(self, st: RunState) -> None:
        """A hand-back refused because another process cancelled the run while this
        drive, cut short (an App's close, a worker's stop), had not learned so yet:
        close the steps it left running, as the drive would have on learning of the
        cancel. They read `running` in the cancelled run's record for good."""
        try:
            run = await self._store.get_run(st.workflow_id)
        except StoreError as exc:
            log.warning("could not read cancelled run %s: %s", st.workflow_id, exc)
            return
        if (  # (a process compensating it since holds a newer claim: left to it)
            run is not None
            and run.status is RunStatus.CANCELLED
            and run.generation == st.fence.generation
        ):
            await self._close_cancelled_steps(st.fence, _BY_CANCEL, drive=st)

    async def _unfit_input(
        self, st: RunState, defn: WorkflowDef, run: RunRow, exc: ValidationError
    ) -> InvalidArgumentError:
        """Hand back a run whose recorded input no longer fits its workflow's input type
        (a deploy changed it); the error saying so. It was left `running`, claimed by a
        drive that had ended with pydantic's bare error, and each resume met the same."""
        said = (
            f"run {run.workflow_id!r}'s recorded input (started under version "
            f"{run.workflow_version!r}) does not fit the input type "
            f"{getattr(defn.input_type, '__name__', defn.input_type)!s} of workflow "
            f"{defn.name!r} (version {defn.version!r}): {explain_validation(exc)}. Take "
            "the old shape too (a union, a validator), or leave its version out of "
            "compatible= so an App of that version resumes it"
        )
        try:
            await self._store.release_run(
                st.fence,
                at=self._clock.now(),
                event=NewEvent("workflow.handed_back", "recorded input does not fit"),
            )
        except StoreError as err:  # fenced out or unreachable: its claim will lapse
            log.warning("could not hand back run %s: %s", st.workflow_id, err)
        return InvalidArgumentError(said)

    # -- driving ----------------------------------------------------------------------------

    async def drive(
        self,
        workflow_id: str,
        *,
        defn: WorkflowDef | None = None,
        input: Any = MISSING,
        on_event: EventHook | None = None,
        read: RunRow | None = None,
    ) -> RunResult[Any]:
        """Run `workflow_id` until it ends or parks; its result as it then stands.
        `read`: the run as the caller read it just now (not read again)."""
        status, value = await self.run_until_rest(
            workflow_id, defn=defn, input=input, on_event=on_event, read=read
        )
        if status is RunStatus.COMPLETED and value is not _UNKNOWN:
            return RunResult(value, await load_record(self._store, workflow_id))
        result = await self.result_of(workflow_id, defn)
        if result.status is RunStatus.FAILED:  # it failed in another task: the same answer
            raise revive_error(workflow_id, result.record.last_error)
        return result

    async def run_until_rest(
        self,
        workflow_id: str,
        *,
        defn: WorkflowDef | None = None,
        input: Any = MISSING,
        on_event: EventHook | None = None,
        force_claim: bool = False,
        claimed: RunRow | None = None,
        for_job: bool = False,
        read: RunRow | None = None,
    ) -> tuple[RunStatus | None, Any]:
        """Drive the run until it ends, parks or is handed back, without reading its
        record back.

        Returns (status, value) as far as known here: the status is None, and
        the value `_UNKNOWN`, when only the store knows (another task drove it,
        or it ended through cancellation); a run handed back to wait out a
        step's back-off is PENDING with the time its next attempt is due as
        the value. `force_claim` takes the run whoever holds it (a worker
        holding the run's job lease). `claimed` is the run's row as claimed
        for this process with its job (`run_claim`): it is driven from there,
        neither read nor claimed again. `for_job`: driven for a worker's job,
        whose queue can hold the run through a long back-off. `read`: the run as the
        caller read it just now, to decide whether to drive it without reading it again.
        """
        busy = self._active.get(workflow_id)
        while busy is not None:  # already driven by this process: wait for that instead
            claimed = read = None  # that drive moved it on (and fenced out this claim)
            await busy.wait()
            run = await self._store.get_run(workflow_id)
            if run is None or run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
                return None, _UNKNOWN  # at rest (ended, parked): that drive's answer stands
            busy = self._active.get(workflow_id)  # it left the run runnable: drive it here
        done = self._active[workflow_id] = asyncio.Event()
        task = asyncio.current_task()
        # a child driven inline, in its parent's task: that task is the parent drive's
        task = task if task is not None and task not in self._drives else None
        if task is not None:
            self._drives.add(task)
        try:
            return await self._drive(
                workflow_id, defn, input, on_event, force_claim, claimed, for_job, read
            )
        except asyncio.CancelledError:
            if task is None or task not in self._cut or task.cancelling() != 1:
                raise
            # the grace period ran out (the run was handed back): a caller waiting on
            # `app.run` gets the run as it stands, as when its step finished in time,
            # not a bare CancelledError
            task.uncancel()
            return None, _UNKNOWN
        finally:
            if task is not None:
                self._drives.discard(task)
                self._cut.discard(task)
            del self._active[workflow_id]
            self._states.pop(workflow_id, None)
            done.set()
            if workflow_id in self._rewake:
                self._rewake.discard(workflow_id)
                self._track(self._drive_if_local(workflow_id))

    async def _drive(
        self,
        workflow_id: str,
        defn: WorkflowDef | None,
        input: Any,
        on_event: EventHook | None,
        force_claim: bool = False,
        claimed: RunRow | None = None,
        for_job: bool = False,
        read: RunRow | None = None,
    ) -> tuple[RunStatus | None, Any]:
        while True:
            if claimed is None:
                answer = await self._not_to_drive(workflow_id, defn, on_event, read)
                read = None  # (a next turn reads it anew)
                if answer is not None:
                    return answer
                try:
                    claimed = await self._claim(
                        workflow_id, NewEvent("workflow.running"), force=force_claim
                    )
                except RunFinishedError:  # it ended since it was read: answer as it ended
                    continue
            else:  # claimed with its job, for a workflow registered here at its version
                await self._announce()
            await self._refuse_newer(claimed)
            the_def = defn or self._lookup(claimed.workflow_name, claimed.workflow_id)
            wf, st = await self._context(claimed, the_def, on_event, compensating=False)
            st.job_drive = for_job
            self._states[workflow_id] = st
            try:
                args = _args(wf, the_def, claimed, input)
            except ValidationError as exc:
                raise await self._unfit_input(st, the_def, claimed, exc) from None
            claimed = None
            st.emit("workflow.running")
            # own root: a child driven from its parent's for_each item or step
            with st.own_root(), self._driving():
                outcome = await self._execute(wf, st, the_def, args)
            if outcome is _SUSPENDED:
                if await self._park(st):
                    if await self._wait_inline(workflow_id, the_def):
                        continue
                    return RunStatus.WAITING, _UNKNOWN
                continue  # a wait resolved while we were parking: run again now
            if outcome is _CANCELLED:
                return None, _UNKNOWN
            if outcome is _HANDED_BACK:
                return RunStatus.PENDING, _UNKNOWN if st.resume_at is None else st.resume_at
            return RunStatus.COMPLETED, outcome

    @contextlib.contextmanager
    def _driving(self, *, hearing: bool = False) -> Iterator[None]:
        """Mark the code run inside (the workflow function, its steps, in their step
        threads too; with `hearing`, a listener) as driven by this runner, for
        `refuse_close_in_run`. Tasks started there copy the mark."""
        token = _DRIVING.set((*_DRIVING.get(), self))
        heard = _HEARING.set(True) if hearing else None
        try:
            yield
        finally:
            if heard is not None:
                _HEARING.reset(heard)
            _DRIVING.reset(token)

    def _heard(self, hook: EventHook | None) -> EventHook | None:
        """`hook` marked as run code: a listener is called while its run is driven (parked
        or not), where closing the App would hand the run back with nothing to drive it."""
        if hook is None:
            return None

        def heard(workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
            with self._driving(hearing=True):
                hook(workflow_id, type_, message, detail)

        return heard

    def refuse_close_in_run(self) -> None:
        """`App.close` called from code of a run this runner drives (a step, the workflow
        body, a compensation, a listener) would stop the App under that run: a step waited
        for itself the whole grace period, the body or a listener left a half-closed App
        and its run handed back with nothing to drive it. Refused at once; the run fails
        as on any error (a listener's error is logged: the run goes on)."""
        if self not in _DRIVING.get():
            return
        if _HEARING.get():
            raise InvalidArgumentError(
                _refused_in_run(
                    "an on_event listener of a run this App is driving (or a task it started)",
                    "A listener cannot stop the run; ",
                )
            )
        if in_step():
            raise InvalidArgumentError(
                "app.close() was called from inside a step of this App: it would wait for "
                "that very step to finish (up to shutdown_grace seconds), then hand the run "
                "back unfinished. To stop the run from a step, raise an exception (or "
                "return); close the App after the run, once app.run(...) has returned"
            )
        raise InvalidArgumentError(
            _refused_in_run(
                "the workflow code of a run this App is driving (its body, outside any step)",
                "To stop the run, raise an exception (or return); ",
            )
        )

    async def _refuse_newer(self, claimed: RunRow) -> None:
        """A run a newer tether started (a rolling deploy: this process is the old one)
        is handed back unrun, for a process that knows how it names its steps."""
        if claimed.step_rule <= STEP_RULE:
            return
        try:
            await self._store.release_run(
                Fence(claimed.workflow_id, claimed.generation),
                at=self._clock.now(),
                event=NewEvent("workflow.handed_back", "started by a newer tether"),
            )
        except StoreError as exc:  # its claim lapses instead
            log.warning("could not hand back run %s: %s", claimed.workflow_id, exc)
        raise NewerRunError(claimed.workflow_id, claimed.step_rule, STEP_RULE)

    async def _not_to_drive(
        self,
        workflow_id: str,
        defn: WorkflowDef | None,
        on_event: EventHook | None,
        read: RunRow | None = None,
    ) -> tuple[RunStatus | None, Any] | None:
        """The answer for a run that is not to be driven now, as read (`read`: by the
        caller just now); None: drive it."""
        run = read or await self._store.get_run(workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        if run.status in (RunStatus.COMPLETED, RunStatus.FAILED) or (
            run.status in _ENDED and run.end_reason in _FAILURES
        ):  # (a running run that failed still has compensations to run: drive it)
            return await self._at_rest(run, defn, on_event)
        the_def = defn or self._lookup(run.workflow_name, run.workflow_id)
        if run.status in _ENDED:
            return await self._at_rest(run, the_def, on_event)
        the_def.check_version(run)
        if run.step_rule > STEP_RULE:
            raise NewerRunError(run.workflow_id, run.step_rule, STEP_RULE)
        if self._rt.draining:
            return run.status, _UNKNOWN  # shutting down: leave it for the next process
        return None

    async def _at_rest(
        self, run: RunRow, defn: WorkflowDef | None, on_event: EventHook | None
    ) -> tuple[RunStatus | None, Any]:
        """The answer for a run that will not execute its function again: the status
        of a compensation run here (None: handed back), else None for a run that
        ended by cancellation, the status of one that completed. A run whose
        function failed raises its error again, compensated or not."""
        self._rt.run_defs.pop(run.workflow_id, None)  # (`defn` was looked up already)
        if run.status is RunStatus.FAILED or run.end_reason in _FAILURES:
            raise revive_error(run.workflow_id, decode_error(run.error))
        if run.status is RunStatus.CANCELLED and run.cancel_requested == "compensate":
            assert defn is not None
            return await self._compensate_cancelled(run, defn, on_event), _UNKNOWN
        if run.status is RunStatus.COMPLETED:
            return run.status, _UNKNOWN  # an answer, no body, no event
        if run.status is RunStatus.CANCELLED and owner_is_dead(run.owner):
            # no drive learns of the cancel, nor does a replay run: closed under the
            # dead owner's claim (a process that claimed the run since is left to it)
            await self._close_cancelled_steps(Fence(run.workflow_id, run.generation), _BY_DEAD)
        return None, _UNKNOWN

    async def _context(
        self,
        run: RunRow,
        defn: WorkflowDef,
        on_event: EventHook | None,
        *,
        compensating: bool,
    ) -> tuple[Workflow, RunState]:
        """The drive's state, loaded with the run's steps and resolved waits, and the
        context the workflow function gets on it."""
        if run.generation == 1:  # its first claim ever: no owner has recorded anything yet
            steps: list[StepRow] = []  # (steps and waits are written only under a claim's fence)
            waits: list[WaitRow] = []
        else:
            steps, waits = await asyncio.gather(
                self._store.load_steps(run.workflow_id), self._store.list_waits(run.workflow_id)
            )
        st = RunState.open(
            run,
            generation=run.generation,
            started=self._clock.now(),
            steps=steps,
            waits=waits,
            timeout=defn.timeout,
            on_event=self._heard(with_listeners(self._rt.interceptors, on_event)),
            compensating=compensating,
        )
        return Workflow(self._rt, st, host=self), st

    async def _execute(
        self, wf: Workflow, st: RunState, defn: WorkflowDef, args: tuple[Any, ...]
    ) -> Any:
        try:
            value = await self._call(st, defn, args)
            tp = return_type_of(defn.fn)
            what = f"the result of workflow {defn.name!r}"
            output, value = recorded_result(value, what=what, tp=tp)  # value: as asked again
        except HandBack as exc:
            st.resume_at = exc.not_before
            await self._hand_back(st)
            return _HANDED_BACK
        except Suspend:
            return _SUSPENDED
        except RunCancelledError:
            await self._cancelled(wf, st)
            return _CANCELLED
        except (KeyboardInterrupt, SystemExit) as exc:
            # the workflow's own code asked the process to stop: raised as itself it ended
            # the event loop under every run (asyncio lets neither pass a task); carried
            # out as a step's exit is, the run left to go on from its last step
            raise StepExited(None, exc) from exc
        except asyncio.CancelledError:
            # the grace period ran out mid-step, or whoever drove the run stopped (Ctrl-C
            # in `asyncio.run`, which cancels its task; a task cancelled at the loop's
            # end): nobody drives it here any more, so it is runnable at once, not left
            # `running` until its claim lapses
            await asyncio.shield(self._hand_back(st))
            raise
        except StoreError:
            # another owner has the run now (StaleOwnerError), or the database failed: not
            # the workflow's failure. The run stays running; its claim lapses, or the
            # worker's job is retried, and it continues from its last recorded step.
            raise
        except Exception as exc:
            try:
                failed = await self._failed(wf, st, exc)
            except HandBack:  # an exit cut its compensation short: it fails again on resume
                await self._hand_back(st)
                return _HANDED_BACK
            except asyncio.CancelledError:  # cut mid-step (the outer clause misses it here)
                await asyncio.shield(self._hand_back(st))
                raise
            if failed:
                raise
            return _CANCELLED
        await wf.stop_given_up_batches()
        try:
            await self._finish(
                st, RunStatus.COMPLETED, NewEvent("workflow.completed"), output=output
            )
        except RunCancelledError:  # a cancel landed as its code returned: it ends cancelled
            await self._cancelled(wf, st)
            return _CANCELLED
        st.emit("workflow.completed")
        self._wake_parent(st)
        return value

    async def _cancelled(self, wf: Workflow, st: RunState) -> None:
        self._rt.run_defs.pop(st.workflow_id, None)
        run = await self._store.get_run(st.workflow_id)
        await self._cancel_unwaited(st, run is not None and run.cancel_requested == "compensate")
        await self._close_cancelled_steps(st.fence, _BY_CANCEL, drive=st)
        if run is not None and run.cancel_requested == "compensate":
            await self._finish_compensation(wf, st)
        st.emit("workflow.cancelled")

    async def _cancel_unwaited(self, st: RunState, compensate: bool) -> None:
        """Cancel the children created here for the cancelled run to await whose wait it
        never registered: the cancel landed between the child's creation and its
        parent's wait (refused then), so the cancel's reach (the children its run waits
        on) missed them, and they sat pending for good."""
        mine = [cid for cid, parent in self._unwaited.items() if parent == st.workflow_id]
        for cid in mine:
            del self._unwaited[cid]
            try:
                await self._store.cancel_run(
                    cid, reason=f"its parent run {st.workflow_id!r} was cancelled",
                    compensate=compensate, at=self._clock.now(),
                )  # fmt: skip
            except (RunFinishedError, RunNotFoundError):
                pass  # it ended, or its parent's cancel reached it (its wait was registered)
            except StoreError as exc:
                log.warning("could not cancel child run %s of cancelled run %s: %s",
                            cid, st.workflow_id, exc)  # fmt: skip

    async def _failed(self, wf: Workflow, st: RunState, exc: Exception) -> bool:
        """Record the workflow's failure, after running its compensations if it has
        any; False if a cancel had landed first.

        Before they run, the failure is recorded (`mark_failing`): a cancel
        arriving meanwhile is refused instead of compensating the run again, and
        one that landed first wins (the run ends cancelled, compensated as asked)."""
        status = RunStatus.FAILED
        error, what = encode_error(exc), f"{type(exc).__name__}: {error_text(exc)}"
        # the type first: an exception whose attributes raise as read fails the run too
        timed_out = isinstance(exc, WorkflowTimeoutError) and exc.workflow_id == st.workflow_id
        reason = EndReason.TIMED_OUT if timed_out else EndReason.FAILED
        await wf.stop_given_up_batches()
        if st.compensations:
            try:
                await self._store.mark_failing(
                    st.fence, error=error, reason=reason, at=self._clock.now(),
                    event=NewEvent("workflow.compensating", what),
                )  # fmt: skip
            except RunCancelledError:
                await self._cancelled(wf, st)
                return False
            ok = await self._compensate(wf, st)
            status = RunStatus.COMPENSATED if ok else RunStatus.COMPENSATION_FAILED
        try:
            await self._finish(
                st, status, NewEvent("workflow.failed", what), error=error, reason=reason
            )
        except RunCancelledError:  # a cancel landed as its code failed: it ends cancelled
            await self._cancelled(wf, st)
            return False
        st.emit("workflow.failed", error_text(exc))
        self._wake_parent(st)
        return True

    async def _finish(
        self,
        st: RunState,
        status: RunStatus,
        event: NewEvent,
        *,
        output: str | None = None,
        error: str | None = None,
        reason: EndReason | None = None,
    ) -> None:
        now = self._clock.now()
        if status.terminal:  # its own callable (a lambda's) is no longer needed here
            self._rt.run_defs.pop(st.workflow_id, None)
            if st.in_flight:
                await self._close_cut_short(st, status, now)
        await self._store.finish_run(
            st.fence,
            status,
            output=output,
            error=error,
            at=now,
            event=event,
            compute_seconds=st.elapsed(now),
            reason=reason,
        )
        if status.terminal and self._unwaited:  # (a child answered at once, not driven)
            for cid in [c for c, parent in self._unwaited.items() if parent == st.workflow_id]:
                del self._unwaited[cid]

    async def _close_cut_short(self, st: RunState, status: RunStatus, now: datetime) -> None:
        """Record failed the steps still running as the run ends: cancelled with the item
        of a for_each the run left, or in a task its code never awaited. They stayed
        `running` in the record of an ended run for good (a parked or handed-back run
        keeps them: they run again on resume)."""
        await self._fail_cut_short(
            st.fence, st.workflow_id, sorted(st.in_flight), now,
            f"was still running when run {st.workflow_id!r} ended {status.value}: it was "
            "cut short, or left running in a task the run's code never awaited",
        )  # fmt: skip
        st.in_flight.clear()

    async def _close_cancelled_steps(
        self, fence: Fence, how: str, *, drive: RunState | None = None
    ) -> None:
        """Record failed the steps of a cancelled run still `running` in its record, cut
        short `how`: a step that ran on as the cancel landed (its result refused, or
        dropped with the write it rode on), one left in a task never awaited, or one an
        earlier process left as it died or was cut short. `cancel_run` ends the run, not
        its steps, so they read `running` in the record for good. Written under
        `fence`'s claim (its generation) as compensating (a cancelled run's writes are
        refused otherwise): a process that took the run over since is left to it.
        `drive`, the drive closing them: its steps in flight are closed here, and the
        steps of its compensations are not (one left running runs again)."""
        workflow_id = fence.workflow_id
        if drive is not None:
            drive.in_flight.clear()
        try:
            left = [s.key for s in await self._store.load_steps(workflow_id)
                    if s.status is StepStatus.RUNNING
                    and not (drive is not None and drive.undoes(s.key))]  # fmt: skip
        except StoreError as err:
            log.warning("could not read the steps of cancelled run %s: %s", workflow_id, err)
            return
        await self._fail_cut_short(
            Fence(workflow_id, fence.generation, compensating=True), workflow_id, left,
            self._clock.now(), f"was still running when run {workflow_id!r} was cancelled: "
            f"it was cut short {how}",
        )  # fmt: skip

    async def _fail_cut_short(
        self, fence: Fence, workflow_id: str, keys: list[str], now: datetime, why: str
    ) -> None:
        """Record each step of `keys` failed for good, cut short for the reason `why`."""
        for key in keys:
            exc = TetherError(f"step {key!r} {why}")
            try:
                await self._store.fail_step(
                    fence, key, error=encode_error(exc, retryable=False), final=True,
                    at=now, event=NewEvent("step.failed", key, '{"cut_short":true}'),
                )  # fmt: skip
            except (StoreError, RunCancelledError) as err:  # the run's end matters more
                log.warning("could not record step %r of run %s as cut short: %s",
                            key, workflow_id, err)  # fmt: skip

    async def _call(self, st: RunState, defn: WorkflowDef, args: tuple[Any, ...]) -> Any:
        if not self._rt.interceptors:
            return await self._timed_call(st, defn, args)
        run = st.run
        call = RunCall(run.workflow_id, run.workflow_name, run.workflow_version, run.attempt,
                       st.fence.generation or 0, run.queue)  # fmt: skip
        inner = functools.partial(self._timed_call, st, defn, args)
        return await run_intercepted(self._rt.interceptors, call, inner)

    async def _timed_call(self, st: RunState, defn: WorkflowDef, args: tuple[Any, ...]) -> Any:
        if defn.timeout is None or not isinstance(self._clock, SystemClock):
            return await defn.call(*args)  # a fake clock is checked at step boundaries only
        remaining = max(0.0, defn.timeout - st.run.compute_seconds)
        try:
            async with asyncio.timeout(remaining):
                return await defn.call(*args)
        except TimeoutError as exc:
            if st.executed(self._clock.now()) >= defn.timeout:
                raise WorkflowTimeoutError(st.workflow_id, defn.timeout) from exc
            raise

    def _wake_parent(self, st: RunState) -> None:
        # finish_run woke a parent waiting on this run (waiting -> pending); drive it here
        # only when it is not already being driven by this process (an inline child)
        if self.resume_woken and st.run.parent_id is not None:
            self._track(self._wake_parent_of(st.workflow_id))

    async def _wake_parent_of(self, workflow_id: str) -> None:
        run = await self._store.get_run(workflow_id)
        if run is None or run.parent_id is None:
            return
        parent = await self._store.get_run(run.parent_id)
        if parent is not None and parent.status is RunStatus.PENDING:
            self.woken([parent.workflow_id])
        elif (  # its owner, driving it inline, has ended: nobody else resumes it until
            parent is not None  # that claim lapses (the claim is fenced on the dead owner)
            and parent.status is RunStatus.RUNNING
            and parent.queue is None
            and parent.workflow_id not in self._active
            and owner_is_dead(parent.owner)
        ):
            self._track(self._drive_if_local(parent.workflow_id))

    async def _park(self, st: RunState) -> bool:
        try:
            keys = await st.settle()
            now = self._clock.now()
            parked = await self._store.park_run(
                st.fence, keys, compute_seconds=st.elapsed(now), at=now
            )
        finally:
            st.parked()
        if parked:
            st.emit("workflow.waiting", ", ".join(st.blocked_on))
        return parked

    async def _wait_inline(self, workflow_id: str, defn: WorkflowDef) -> bool:
        """For a brief timer, wait here instead of returning `waiting`; True if it woke."""
        limit = self.inline_wait if defn.inline_wait is None else defn.inline_wait
        if limit <= 0 or self._rt.draining:
            return False
        due: list[datetime] = [
            w.due_at
            for w in await self._store.list_waits(workflow_id)
            if w.status is WaitStatus.PENDING and w.due_at is not None
        ]
        if not due:  # none to sleep for; a timer may have fired in another process since
            run = await self._store.get_run(workflow_id)  # it parked, and woken it (pending)
            return run is not None and run.status is RunStatus.PENDING
        delay = (min(due) - self._clock.now()).total_seconds()
        if delay > limit:
            return False
        await self._until_due_or_answered(workflow_id, max(0.0, delay))
        woken = await self._store.fire_due(now=self._clock.store_time(), at=self._clock.now())
        self.woken([r for r in woken if r != workflow_id])
        run = await self._store.get_run(workflow_id)
        return run is not None and run.status is RunStatus.PENDING

    async def _until_due_or_answered(self, workflow_id: str, delay: float) -> None:
        """Sleep `delay` seconds, or less if the run is answered meanwhile (no longer
        waiting): a signal in this process ends the sleep at once (`woken`), one from
        another within `ANSWERED_EVERY`. `wait_for_signal(timeout=4)` answered at once
        went on only at 4 s. A fake clock's sleep passes its time at once, as before."""
        if self._clock.store_time() is not None:
            await self._clock.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while (left := end - loop.time()) > 0:
            await self._rt.waker.wait(_answered(workflow_id), min(left, ANSWERED_EVERY))
            run = await self._store.get_run(workflow_id)
            if run is None or run.status is not RunStatus.WAITING:
                return

    # -- compensation -------------------------------------------------------------------------

    async def _compensate(self, wf: Workflow, st: RunState) -> bool:
        """`compensate`, with steps that completed at one instant ordered by their
        completion events (else a replay, registering them in call order, undid them in
        another order than the drive that saw them complete)."""
        st.undoing = True
        ranks = None
        if completed_at_once(st):
            ranks = completion_ranks(await self._store.list_events(st.workflow_id))
        return await compensate(wf, st, ranks)

    async def _finish_compensation(self, wf: Workflow, st: RunState) -> RunStatus | None:
        """Compensate a run cancelled with compensate=True, then record how that went
        (with nothing to compensate it simply stays cancelled); the status it ended
        in, None if it was handed back."""
        st.begin_compensation()
        if not st.compensations:  # its own event: the cancel wrote `workflow.cancelled`
            status, event = RunStatus.CANCELLED, "workflow.nothing_to_compensate"
        else:
            self._undoing.add(st.workflow_id)
            try:
                ok = await self._compensate(wf, st)
            except HandBack:  # a clean exit: the next process compensates what is left
                await self._hand_back(st)
                return None
            except asyncio.CancelledError:  # cut mid-step (a close's or stop's grace ran
                # out): released now, not left claimed until the claim lapses
                await asyncio.shield(self._hand_back(st))
                raise
            finally:
                self._undoing.discard(st.workflow_id)
            status = RunStatus.COMPENSATED if ok else RunStatus.COMPENSATION_FAILED
            event = "workflow.compensated" if ok else "workflow.compensation_failed"
        await self._finish(st, status, NewEvent(event))
        return status

    async def _compensate_cancelled(
        self, run: RunRow, defn: WorkflowDef, on_event: EventHook | None
    ) -> RunStatus | None:
        # replay the function to learn the compensations of completed steps; the first
        # step that did not complete stops it (RunCancelledError), then compensate
        claimed = await self._claim(
            run.workflow_id, NewEvent("workflow.compensating"), force=False, compensating=True
        )
        wf, st = await self._context(claimed, defn, on_event, compensating=True)
        with st.own_root(), self._driving():  # its compensations are this run's code
            try:
                await defn.call(*_args(wf, defn, claimed, MISSING))
            except (RunCancelledError, Suspend):
                pass
            except Exception as exc:
                log.debug("replay for compensation of %s stopped: %r", run.workflow_id, exc)
            await self._close_cancelled_steps(st.fence, _BY_ANOTHER, drive=st)
            return await self._finish_compensation(wf, st)

    # -- results --------------------------------------------------------------------------------

    async def result_of(self, workflow_id: str, defn: WorkflowDef | None) -> RunResult[Any]:
        """The run's result and record, read at once."""
        return self._result(*await load_history(self._store, workflow_id), defn)

    async def result_if_ended(self, workflow_id: str) -> RunResult[Any] | None:
        """`result_of` if the run has ended, else None: for a caller woken by the run's
        notification, which reads once, not once to see the end and again for the rest."""
        run, record = await load_history(self._store, workflow_id)
        return self._result(run, record, None) if run.settled else None

    def _result(self, run: RunRow, record: RunRecord, defn: WorkflowDef | None) -> RunResult[Any]:
        value: Any = None
        if record.status is RunStatus.COMPLETED:
            if defn is None:  # typed by the registered workflow, whoever drove it
                with contextlib.suppress(WorkflowNotFoundError):
                    defn = self._lookup(record.workflow_name, record.workflow_id)
            tp = return_type_of(defn.fn) if defn is not None else None
            value = recorded_as(
                run.output,
                tp,
                what=f"run {run.workflow_id!r}",
                since="the run ended",
                way_out=f"read it with the code that ran it, or {_refit(defn, record.workflow_name)}",
            )
        return RunResult(value, record)


def _refit(defn: WorkflowDef | None, name: str) -> str:
    """What to change so a recorded result fits the workflow's type again: a pipeline
    says it in its own terms (its output=), having no return annotation to declare."""
    said = getattr(defn.fn, "__tether_returns_said__", None) if defn is not None else None
    return said or f"declare on workflow {name!r} a return type the recorded value fits"


async def _stopped(task: asyncio.Task[None]) -> None:
    """`task` cancelled and waited for, on whichever loop runs it. One started on a
    loop that has closed since (``asyncio.run(...)``, then the sync API) is over
    already: awaiting it here raised "Event loop is closed" as the App closed."""
    if task.done():
        return
    loop = task.get_loop()
    if loop is asyncio.get_running_loop():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(task.cancel)


def _answered(workflow_id: str) -> str:
    """The waker's key of a run waiting inline for its timer (NUL: no mutex key has it)."""
    return f"\0answered {workflow_id}"


def _refused_in_run(source: str, instead: str) -> str:
    """Why `app.close()` from `source` (code a run executes) is refused, and `instead`
    the way to stop or close."""
    return (
        f"app.close() was called from {source}: it would close the App under that run, "
        "which would be handed back unfinished with nothing left to drive it. "
        f"{instead}close the App after the run, once app.run(...) has returned, from the "
        "code that created the App"
    )


def _args(wf: Workflow, defn: WorkflowDef, run: RunRow, input: Any) -> tuple[Any, ...]:
    """What the workflow function is called with: the context, and its input if it
    takes one: the recorded one, as every replay reads it (the one given now only
    where none is recorded, or the workflow binds its own)."""
    if input is not MISSING and (run.input is None or defn.binds_input):
        return (wf, input)
    if defn.takes_input and (run.input is not None or defn.input_required):
        return (wf, load_json(run.input, defn.input_type))
    return (wf,)
