"""App: a workflow registry bound to a store, and the functional entry points.

The engine is async; every sync method here drives the async one of the same
name with an ``a`` prefix (``run`` -> ``arun``) on the App's own loop thread,
so there is one body, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, Unpack, overload

from pydantic import BaseModel, ValidationError

from ._batches_out import unreachable_batches
from ._durations import check_seconds, parse_age, seconds_of
from ._facade import facade
from ._info import RunInfo, WaitInfo
from ._interceptors import StepInterceptor, check_interceptors, check_on_event
from ._listing import RunQuery, page_cursor, run_filter
from ._loop import LoopThread, check_not_forked, home_loop, homed
from ._names import check_name, check_queue_name, check_text
from ._owners import new_owner
from ._raise_target import check_raise_target
from ._results import recorded_as
from ._run_state import RunState
from ._runner import Runner
from ._runtime import EventHook, Runtime
from ._waits import MISSING
from ._workflow import Workflow, load_record
from .ai import Budget, Providers, cancel_open_batches
from .blobs import BlobStore, default_blobs
from .clock import Clock, FakeClock, SystemClock
from .definition import DEF_ATTR, RunResult, WorkflowDef
from .errors import (
    BatchesOutError,
    InvalidArgumentError,
    RunAlreadyRunningError,
    RunNotFoundError,
    StoreError,
    TetherError,
    WorkflowNotFoundError,
    explain_validation,
)
from .kernel import (
    EventSink,
    Kernel,
    OutboxReplayDead,
    Replayed,
    RunCancel,
    RunCancelled,
    RunCreate,
    RunCreated,
    RunRerunFrom,
    RunResume,
    RunResumed,
    RunRetryCompensations,
    TimersFire,
    Woken,
    new_run_id,
    publish_outbox,
)
from .record import RunRecord
from .schedules import MissedTicks, Overlap, Schedule, fire_schedules
from .serde import check_type, dump_json, load_json
from .stages import Pipeline, Stage
from .stages.host import (
    cancel_suspended,
    forget_files,
    rerun_point,
    restarted_stages,
    run_prefix,
)
from .store import (
    AICallRow,
    AIUsageRow,
    Durability,
    JobRow,
    NewRun,
    OutboxRow,
    QueueLimit,
    RunRow,
    RunStatus,
    ScheduleRow,
    Store,
    WaitKind,
    WaitRow,
    WaitStatus,
    open_store,
)

__all__ = ["App", "RunResult", "WorkflowDef", "open_workflow", "run_workflow"]

log = logging.getLogger("tether")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
RECOVER_EVERY = 5.0  # seconds between two looks for orphans (App(recover_orphans=True))
C = TypeVar("C", bound=BaseModel)
_MISSING: Any = MISSING


# real seconds a FakeClock may stand still, with a run parked only on its timers, before
# `aresult` says that nobody moves it
_STILL_FOR = 3.0
# runs of one wake-up (an event's) looked at for one with nothing to drive it
_WOKEN_LOOKED_AT = 20


class App:
    """Workflows registered on one store.

    ``database_url=None`` uses $TETHER_DATABASE_URL, else
    ``sqlite:///.tether/tether.db`` in the working directory. `durability`
    ("full" by default, or "normal") trades power-cut safety of the last
    completed steps for speed on SQLite. `clock` injects time (tests pass
    `tether.testing.FakeClock`).

    In-process execution: `inline_wait` (seconds, default 5) lets `run` wait
    out a timer that is due that soon instead of returning a parked run;
    with `resume_woken` (default on) a run that this App wakes (a signal, an
    event, a token, a due timer, a child ending) and whose workflow is
    registered here is driven on in the background of this process. Events
    and signals that reach no waiting run are kept for `inbox_retention`
    seconds (default 7 days).

    Distributed execution: `submit` queues a run for workers (``tether
    worker``); `sinks` receive the published events (the outbox);
    `job_visibility` is the lease a worker holds on a job while it runs.
    Every state change goes through `kernel` (`app.kernel.dispatch(command)`).

    Ownership and exits: a process driving a run holds a claim on it that it
    renews while it lives; the claim lapses `owner_lease` seconds (default
    30) after its process died, and the run may then be taken over (at once
    by a process on the same machine, which can see the owner is gone). On
    `close()`, at normal interpreter exit and on SIGTERM or Ctrl-C, the App
    starts no more steps, lets the steps in flight finish and be recorded
    for up to `shutdown_grace` seconds (default 30), and hands each run back:
    runnable at once by the next process or worker. A step still running
    when the grace period ends is recorded as interrupted and runs again
    there. With `recover_orphans`, the App drives (in the background) the
    runs of its registered workflows whose owner died: it looks on its first
    run/start/resume and again every `RECOVER_EVERY` seconds while it lives
    (on a run/start/resume, and on its keep-alive), so a run whose owner dies
    later is taken up once that owner's claim lapses; `recover_orphans()` does
    it on demand.

    Extensions: `interceptors` (`StepInterceptor` objects) wrap every executed
    step attempt, the first one outermost (tracing, cost accounting, policy).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock | None = None,
        durability: str | Durability | None = None,
        store: Store | None = None,
        inline_wait: float = 5.0,
        resume_woken: bool = True,
        inbox_retention: float = 7 * 24 * 3600.0,
        sinks: Sequence[EventSink] = (),
        job_visibility: float = 30.0,
        owner_lease: float = 30.0,
        shutdown_grace: float = 30.0,
        recover_orphans: bool = False,
        interceptors: Sequence[StepInterceptor] = (),
        ai: Providers | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        # what with_database() needs to build this App again on another database
        settings = {k: v for k, v in locals().items() if k not in ("self", "database_url", "store")}
        _check_app_options(clock, store, resume_woken, recover_orphans, ai, blobs)
        sinks = Kernel.check_sinks(sinks)  # a list: a generator is read once
        settings["sinks"] = tuple(sinks)
        _check_seconds(inbox_retention, owner_lease, shutdown_grace, inline_wait, job_visibility)
        self.store: Store = store or open_store(database_url, durability=durability)
        self.clock: Clock = clock or SystemClock()
        self.inbox_retention = float(inbox_retention)
        self.ai = ai
        self.blobs: BlobStore = default_blobs(self.store, self.clock) if blobs is None else blobs
        self._runtime = Runtime(
            self.store,
            self.clock,
            interceptors=check_interceptors(interceptors),
            ai=ai,
            workflow_budget=self._workflow_budget,
            blobs=self.blobs,
        )
        self._registry: dict[str, WorkflowDef] = {}
        self._implicit: set[str] = set()  # names registered by running them, not declared
        self._loop = LoopThread(on_exit=self.close)
        self._runner = self._make_runner(inline_wait, resume_woken, owner_lease, recover_orphans)
        self.shutdown_grace = float(shutdown_grace)
        self._recover = bool(recover_orphans)
        self._recovered_at: datetime | None = None  # the last look for orphans
        self._closed = False  # began to close (`aclose`)
        self._close_done: asyncio.Future[None] | None = None  # set once closed
        self._shut = False  # closed: refuses what it is asked after (`refuse_closed`)
        self._queues: dict[str, QueueLimit] = {}
        self._schedules: dict[str, Schedule] = {}
        self.kernel = Kernel(
            self.store,
            self.clock,
            self,
            self._runner,
            sinks=sinks,
            job_visibility=job_visibility,
            inbox_retention=self.inbox_retention,
            bridge=self._loop.run,
        )
        self.database_url: str | None = getattr(self.store, "url", None)
        self._settings: dict[str, Any] = settings

    def _make_runner(
        self, inline_wait: float, resume_woken: bool, owner_lease: float, recover_orphans: bool
    ) -> Runner:
        runner = Runner(
            self._runtime,
            self.get_workflow,
            inline_wait=inline_wait,
            resume_woken=resume_woken,
            owner_lease=float(owner_lease),
            workflows=lambda: sorted(self._registry),
            on_keep_alive=self._recover_if_due if recover_orphans else None,
        )
        runner.adopts = recover_orphans  # it takes up runs woken elsewhere (`drivers`)
        return runner

    # -- registry -------------------------------------------------------------------

    @overload
    def workflow(self, fn: F, /) -> F: ...

    @overload
    def workflow(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
        timeout: float | None = None,
        schedule: str | None = None,
        budget: Budget | dict[str, Any] | None = None,
        inline_wait: float | None = None,
    ) -> Callable[[F], F]: ...

    def workflow(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
        timeout: float | None = None,
        schedule: str | None = None,
        budget: Budget | dict[str, Any] | None = None,
        inline_wait: float | None = None,
    ) -> Any:
        """Register an ``async def fn(wf, input)`` as a workflow (usable bare or called).

        `version` is recorded on each run; a run resumes only under the same
        version or one that lists it in `compatible`. `timeout` bounds the
        seconds a run spends executing; time parked does not count. `schedule`
        (a cron expression, UTC) starts it on that cron: see `schedule`. `budget`
        (a `tether.ai.Budget`) limits the AI spend of each run not given its own.
        `inline_wait` overrides the App's for this workflow's runs (0: they park
        on every timer, and the call driving them returns at once).
        """
        the_budget = Budget.of(budget)

        def register(f: F) -> F:
            defn = WorkflowDef.make(
                f,
                name=name,
                version=version,
                compatible=compatible,
                timeout=timeout,
                budget=the_budget,
                inline_wait=inline_wait,
            )
            existing = self._registry.get(defn.name)
            if existing is not None and existing.fn is not f:
                raise InvalidArgumentError(
                    f"a different workflow is already registered as {defn.name!r}; "
                    "pass name= to tell them apart"
                )
            self._registry[defn.name] = defn
            self._implicit.discard(defn.name)
            with contextlib.suppress(AttributeError, TypeError):  # a bound method, say
                setattr(f, DEF_ATTR, defn)
            if schedule is not None:
                self.schedule(f, cron=schedule)
            return f

        return register(fn) if fn is not None else register

    def register(self, workflow: Callable[..., Awaitable[Any]]) -> None:
        """Register a workflow object that carries its own definition (a
        `tether.Pipeline`: its name and version), or a function as `workflow` does."""
        defn = WorkflowDef.of(workflow)
        if isinstance(workflow, Pipeline):
            workflow.check()
        existing = self._registry.get(defn.name)
        if existing is not None and existing.fn is not workflow:
            raise InvalidArgumentError(
                f"a different workflow is already registered as {defn.name!r}; give it another name"
            )
        self._registry[defn.name] = defn
        self._implicit.discard(defn.name)

    def get_workflow(self, name: str, workflow_id: str | None = None) -> WorkflowDef:
        """The workflow registered as `name`; for run `workflow_id`, the callable it
        was started with here if that was never declared (a lambda, a partial)."""
        own = None if workflow_id is None else self._runtime.run_defs.get(workflow_id)
        if own is not None and own.name == name:
            return own
        try:
            return self._registry[name]
        except KeyError:
            known = ", ".join(sorted(self._registry)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow registered as {name!r} (registered: {known}); register it with "
                "@app.workflow in the process that resumes its runs"
            ) from None

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        return dict(self._registry)

    def _ensure_registered(self, workflow: Callable[..., Awaitable[Any]]) -> WorkflowDef:
        """The definition of `workflow`, registered here if it was not: a run of a function
        this App runs is resumed here like any other (woken by a signal, recovered)."""
        defn = WorkflowDef.of(workflow)
        known = self._registry.get(defn.name)
        if known is None or (known.fn is not defn.fn and defn.name in self._implicit):
            # a function run without @app.workflow: the latest one run under a name wins
            self._registry[defn.name] = defn
            if getattr(workflow, DEF_ATTR, None) is None:
                self._implicit.add(defn.name)
            return defn
        if known.fn is not defn.fn:
            raise InvalidArgumentError(
                f"a different workflow is already registered as {defn.name!r}; "
                "pass name= to tell them apart"
            )
        return known

    def _bind(self, defn: WorkflowDef, workflow_id: str | None) -> str | None:
        """The id of the run about to be made of `defn`; a callable run without being
        declared (`_implicit`) is kept for that run, which is then resumed with it
        rather than with the latest callable run under its name."""
        if defn.name not in self._implicit:
            return workflow_id
        wid = new_run_id(defn.name) if workflow_id is None else workflow_id
        check_name("workflow_id", wid)
        self._runtime.run_defs[wid] = defn
        return wid

    def queue(
        self, name: str, *, concurrency: int | None = None, rate_per_second: float | None = None
    ) -> None:
        """Cap queue `name` across all workers: jobs at once, and starts per second."""
        check_queue_name("queue name", name)
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if rate_per_second is not None and (
            _not_seconds(rate_per_second) or not 0.001 <= rate_per_second <= 1e6
        ):
            raise InvalidArgumentError(
                f"rate_per_second must be a number of starts per second from 0.001 (one "
                f"every 1000 s) to 1000000, got {rate_per_second!r}; e.g. rate_per_second=2"
            )
        self._queues[name] = QueueLimit(concurrency, rate_per_second)

    @property
    def queue_limits(self) -> dict[str, QueueLimit]:
        return dict(self._queues)

    # -- starting and running ---------------------------------------------------------

    async def _create(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any,
        *,
        workflow_id: str | None,
        initial_state: Any,
        idempotency_key: str | None = None,
        priority: int = 0,
        tags: Iterable[str] = (),
        tenant: str | None = None,
        budget: Any = None,
    ) -> tuple[WorkflowDef, RunRow, bool, Any]:
        defn = WorkflowDef.of(workflow)
        budget_text = self._budget_json(budget, defn)
        wid = new_run_id(defn.name) if workflow_id is None else workflow_id
        check_name("workflow_id", wid)
        if input is not _MISSING and not defn.takes_input:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes no input (its function has one parameter, "
                "the Workflow); drop the input or add a parameter"
            )
        if idempotency_key is not None:
            check_name("idempotency_key", idempotency_key)
        tag_tuple = _checked_tags(tags)
        if input is not _MISSING:
            input = defn.coerce_input(input)  # before anything is created
        input_text = None if input is _MISSING else defn.encode_coerced(input)
        run, created = await self.store.create_run(
            NewRun(
                workflow_id=wid,
                workflow_name=defn.name,
                workflow_version=defn.version,
                input=input_text,
                state=dump_json(initial_state, what="initial_state"),
                priority=priority,
                tags=tag_tuple,
                tenant=tenant,
                idempotency_key=idempotency_key,
                budget=budget_text,
            ),
            self.clock.now(),
        )
        if not created:
            defn.check_same_run(run, input_text if idempotency_key is None else None)
        if defn.input_required and run.input is None and input is _MISSING:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes an input and run {wid!r} has none recorded; pass one"
            )
        return defn, run, created, input

    @homed
    async def arun(
        self,
        workflow: Callable[..., Awaitable[T]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        initial_state: Any = None,
        on_event: EventHook | None = None,
        if_running: str = "raise",
        budget: Budget | dict[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunResult[T]:
        """Run (or resume) a workflow in this process until it ends or parks.

        The same `workflow_id` always names the same run: running it again
        resumes it, completed steps answering from the record. A finished run
        is an answer: asked again, a completed run returns its recorded
        result without running anything, and a failed one raises the same
        exception type again (retry one with `rerun_from`). `initial_state`
        applies only when the run is created. A run that must wait (for a
        signal, an event, a token, a long timer) is parked and returned with
        status ``waiting``. If another live process drives the run,
        `RunAlreadyRunningError` is raised, or with ``if_running="wait"`` its
        result is awaited. `budget` (a `tether.ai.Budget`) limits the run's AI
        spend instead of the workflow's own budget. `config` (pipelines only) is
        one mapping by stage id, each checked by its stage's config model. The id
        of a queued run (`submit`) is driven as `resume` drives it: its job claimed
        here, its `concurrency_key` held (waited for while another run holds it).
        """
        input = _with_config(workflow, input, config)
        check_on_event(on_event)
        if if_running not in ("raise", "wait"):
            raise InvalidArgumentError(f'if_running must be "raise" or "wait", got {if_running!r}')
        await self._maybe_recover()
        workflow_id = self._bind(self._ensure_registered(workflow), workflow_id)
        try:
            defn, run, _, input = await self._create(
                workflow, input, workflow_id=workflow_id, initial_state=initial_state, budget=budget
            )
        except BaseException:
            self._runtime.run_defs.pop(workflow_id or "", None)
            raise
        try:
            async with self._holding_job(run.workflow_id, run.queue):
                return await self._runner.drive(
                    run.workflow_id, defn=defn, input=input, on_event=on_event
                )
        except RunAlreadyRunningError:
            if if_running == "raise":
                raise
            return await self.aresult(run.workflow_id)

    run = facade(arun)

    @homed
    async def astart(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        tags: Iterable[str] = (),
        tenant: str | None = None,
        initial_state: Any = None,
        budget: Budget | dict[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a run and drive it in the background of this process; its id at once.

        The run continues on this App's loop while the process lives. When the
        process exits normally (or `close()`, SIGTERM, Ctrl-C), the step in
        flight finishes and is recorded and the run is handed back: the next
        `run`/`resume` of its id, a worker serving its workflow, or an App
        with `recover_orphans` continues it from there. If the process dies,
        the same happens once its claim lapses. To run it to its end here,
        wait with `result(id)`.

        The same `idempotency_key` (or `workflow_id`) returns the same run
        instead of starting a second one, also when callers race: one of them
        drives it. Started again, a run that waits to be driven (``pending``:
        handed back by a process that exited) continues here; one that ended,
        waits, or is driven by another live process is left as it is, and so is
        a queued one (`submit`): its workers drive it, holding its concurrency
        key (`resume` drives it here, holding them too).
        """
        _check_create(workflow_id, idempotency_key, priority, tags, tenant)
        input = _with_config(workflow, input, config)
        defn = self._ensure_registered(workflow)
        await self._maybe_recover()
        return await self._acreate(
            defn,
            input,
            tags,
            budget,
            workflow_id=self._bind(defn, workflow_id),
            idempotency_key=idempotency_key,
            priority=priority,
            tenant=tenant,
            initial_state=initial_state,
        )

    start = facade(astart)

    @homed
    async def asubmit(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        queue: str = "default",
        idempotency_key: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        tags: Iterable[str] = (),
        tenant: str | None = None,
        initial_state: Any = None,
        max_attempts: int = 10,
        run_after: datetime | None = None,
        budget: Budget | dict[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue a run for workers and return its id at once.

        `concurrency_key` (an issue id, a customer) keeps two runs with the
        same key from executing at the same time across all workers (a parked
        run holds no key: to keep an entity across waits, use `wf.mutex`); a
        higher `priority` is claimed first. Wait for it with `result`.

        The same `idempotency_key` returns the run it made first. Asked again for
        another queue (or none: `start`), another workflow, id, input, concurrency_key
        or max_attempts, it is an `IdempotencyConflictError` naming that run; another
        priority is logged and not applied (the same workers serve the run). The same
        `workflow_id` returns its run too; another workflow or input, or another queue
        than the one it is on, is an `InvalidArgumentError` naming it. A queue name may not hold a comma nor
        blanks at its ends: ``tether worker -q a,b`` could not serve it.
        """
        _check_create(workflow_id, idempotency_key, priority, tags, tenant)
        input = _with_config(workflow, input, config)
        check_queue_name("queue", queue)
        if concurrency_key is not None:
            check_name("concurrency_key", concurrency_key)
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts <= _INT32
        ):
            raise InvalidArgumentError(
                f"max_attempts must be an integer from 1 to {_INT32}, got {max_attempts!r}; "
                "e.g. max_attempts=10"
            )
        if run_after is not None:
            _check_run_after(run_after)
        defn = self._ensure_registered(workflow)
        return await self._acreate(
            defn,
            input,
            tags,
            budget,
            queue=queue,
            concurrency_key=concurrency_key,
            max_attempts=max_attempts,
            run_after=run_after,
            workflow_id=self._bind(defn, workflow_id),
            idempotency_key=idempotency_key,
            priority=priority,
            tenant=tenant,
            initial_state=initial_state,
        )

    submit = facade(asubmit)

    async def _acreate(
        self,
        defn: WorkflowDef,
        input: Any,
        tags: Iterable[str],
        budget: Budget | dict[str, Any] | None,
        **fields: Any,
    ) -> str:
        """Create a run of `defn` through the kernel (`astart` without `queue` in
        `fields`, `asubmit` with it); the run's id."""
        wid: str = fields.get("workflow_id") or ""
        try:
            result = await self.kernel.adispatch(
                _command(
                    RunCreate,
                    workflow=defn.name,
                    input=None if input is _MISSING else input,
                    tags=_checked_tags(tags),
                    budget=self._budget_dict(budget, defn),
                    **fields,
                )
            )
        except BaseException:  # nothing made: nothing to resume with its callable
            self._runtime.run_defs.pop(wid, None)
            raise
        assert isinstance(result, RunCreated)
        if result.workflow_id != wid:  # another run answered its idempotency key
            self._runtime.run_defs.pop(wid, None)
        return result.workflow_id

    @homed
    async def aresume(
        self, workflow_id: str, *, on_event: EventHook | None = None
    ) -> RunResult[Any]:
        """Drive a run of a workflow registered here until it ends or parks again.

        A queued run (`submit`) is driven here as a worker would drive it: its job is
        claimed for this process first, so no worker drives it meanwhile and its
        `concurrency_key` is held. While another run's job holds that key, this waits
        for it (logging which run holds it every 5 seconds) rather than run two of one
        key at once; a worker that took the run's job meanwhile drives it instead, and
        this raises `RunAlreadyRunningError` as for any run another process drives.
        """
        check_on_event(on_event)
        await self._maybe_recover()
        # one read says whether the run is queued: a run that never was (most resumed
        # runs) has no job, and looking for one to claim was a write transaction. The
        # drive decides from that read too, unless a job was waited for meanwhile
        run = await self.store.get_run(workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        async with self._holding_job(workflow_id, run.queue):
            read = run if run.queue is None else None
            return await self._runner.drive(workflow_id, on_event=on_event, read=read)

    resume = facade(aresume)

    def _holding_job(
        self, workflow_id: str, queue: str | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The run's queued job held while it is driven here (`Kernel.holding_job`),
        within its queue's caps: only a queued run (`queue`, read by the caller) has
        one."""
        if queue is None:
            return contextlib.nullcontext()
        return self.kernel.holding_job(workflow_id, self._runtime.owner, self._queues)

    @homed
    async def arerun_from(
        self,
        workflow_id: str,
        step: str | Stage[Any, Any, Any],
        *,
        on_event: EventHook | None = None,
        budget: Budget | dict[str, Any] | None = None,
    ) -> RunResult[Any]:
        """Retry a finished run after a fix: forget `step` and every step recorded
        after it (earlier results are kept), then run it again from there. A child
        awaited after `step` runs again as a new child run (``<id>@<attempt>``);
        one with its own `workflow_id`, or started with `start_child`, does not.
        `step` may be a wait's key (``signal:approval#1``, ``child:<id>``): a run
        whose first act was a wait or a child has no step before it. From the
        wait for a child that failed, that child goes on from where it stopped
        (its failed step, or the AI call its budget stopped; its earlier steps
        kept, no answered call asked again) and the parent awaits it again.

        For a pipeline run, `step` may name a stage: its group and every later
        one are forgotten (records and files), earlier outputs kept, and the
        run's attempt goes up by one. The run must have ended (completed or
        failed). It runs again here, until it ends or parks, with the workflow
        registered on this App; a queued run goes back to its queue for the
        workers instead, and this returns at once (wait with `result`).

        `budget` gives the run a new AI budget (a run that failed on its budget
        goes on with a larger one): a dict's fields over the run's own budget
        (``{"max_usd": 10}`` keeps its key, `on_exceed` and `warn_at`), an
        `ai.Budget` as given. The calls the forgotten steps made stay in the call
        log and count against it, as the money was spent.
        """
        step = _step_key(step)
        check_on_event(on_event)
        new_budget = Budget.of(budget)  # (a bad one refused before anything is read)
        if isinstance(budget, dict) and budget:
            stored = await self.store.get_run(workflow_id)
            if stored is not None and stored.budget:
                new_budget = Budget.of({**load_json(stored.budget), **budget})
        run = await self.aget_run(workflow_id)
        if run.status not in (RunStatus.COMPLETED, RunStatus.FAILED):
            raise InvalidArgumentError(_not_rerunnable(run))
        defn = self._registry.get(run.workflow_name)
        if run.queue is None:
            defn = self.get_workflow(run.workflow_name)  # fail before changing anything
        pipeline = defn.fn if defn is not None and isinstance(defn.fn, Pipeline) else None
        forget: list[str] = []
        if pipeline is not None:
            step, forget = await rerun_point(self.store, workflow_id, pipeline, step)
        budget_text = (
            None
            if new_budget is None
            else dump_json(new_budget.model_dump(exclude_none=True), what="budget")
        )
        await self.kernel.adispatch(
            RunRerunFrom(workflow_id=workflow_id, step=step, budget=budget_text)
        )
        try:  # drive it before anything else yields, so this call's on_event sees it all
            if run.queue is not None:
                defn = self._registry.get(run.workflow_name)
                return await self._runner.result_of(workflow_id, defn)
            return await self._runner.drive(workflow_id, on_event=on_event)
        finally:
            if pipeline is not None and not forget:  # a step inside a stage: the stages
                # after it that ran again (the one holding it keeps its attempt)
                forget = restarted_stages(pipeline, await self.store.list_events(workflow_id))
            # after the commit; only the attempts before (keys carry attempts); the store:
            # also those of pipelines the run's code called (each item of a for_each)
            await forget_files(self.blobs, workflow_id, forget, run.attempt, store=self.store)

    rerun_from = facade(arerun_from)

    @homed
    async def aretry_compensations(
        self, workflow_id: str, *, on_event: EventHook | None = None
    ) -> RunResult[Any]:
        """Try again the compensations of a `compensation_failed` run, after a fix (the
        refund service is back): those that failed (after their own retries) run
        again, newest first as before; those that completed are not run twice.

        The run is driven here until its compensations have run, with the workflow
        registered on this App; a queued run goes back to its queue for the workers
        instead, and this returns at once (wait with `result`). Returns the run's
        result as it then stands: ``compensated``, or ``compensation_failed`` again
        (its record names the compensation that failed). The run's own failure is not raised again: it is
        on the record, as it was. A run in any other status is refused
        (`InvalidArgumentError`), and nothing is changed.
        """
        check_on_event(on_event)
        run = await self.aget_run(workflow_id)
        if run.queue is None:
            self.get_workflow(run.workflow_name)  # fail before changing anything
        await self.kernel.adispatch(RunRetryCompensations(workflow_id=workflow_id))
        try:
            if run.queue is not None:
                defn = self._registry.get(run.workflow_name)
                return await self._runner.result_of(workflow_id, defn)
            return await self._runner.drive(workflow_id, on_event=on_event)
        except Exception:
            record = await load_record(self.store, workflow_id)
            if record.status not in (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED):
                raise
            return RunResult(None, record)  # (its failure raised again by the replay)

    retry_compensations = facade(aretry_compensations)

    @homed
    async def aresult(
        self,
        workflow_id: str,
        timeout: float | timedelta | None = None,
        *,
        result_type: Any = None,
    ) -> RunResult[Any]:
        """Wait until the run has ended (a run cancelled with ``compensate=True``:
        until its compensations ran); its result.

        An ended run is answered, not raised: a failed one has status ``failed`` and
        its error in ``record.last_error`` (type, message, cause), a cancelled one
        ``cancelled``, ``compensated`` or ``compensation_failed`` (`arun` of the same
        id raises a failure again).

        `timeout` is real seconds (or a timedelta), on every clock: a `FakeClock`
        times the run's own timers, not this wait. Past it, `TimeoutError` says what
        the run still waits for (a signal, an event, a token, a timer, a child) and
        how to end the wait. On a FakeClock a timer the clock was moved past is fired
        here; a run parked only on timers of a clock that stood still for 3 real
        seconds raises `TetherError` naming the time to pass, sooner than the timeout.

        The value is typed by the return type of the workflow registered here under
        the run's name; `result_type=` types it where none is (a script reading runs
        another process started), else it is the recorded JSON.

        On PostgreSQL the wait wakes on the run's notification, within milliseconds
        of its end; elsewhere it polls.
        """
        check_name("workflow_id", workflow_id)
        limit: float | None = seconds_of(timeout)
        if limit is not None and (_not_seconds(limit) or limit < 0):
            raise InvalidArgumentError(
                f"timeout must be a number of seconds >= 0 (or None to wait as long as it "
                f"takes), got {timeout!r}"
            )
        check_type(result_type, "result_type", "; or pass none, for the recorded JSON")
        answer = await self._ended(workflow_id, limit)
        if result_type is None or answer.status is not RunStatus.COMPLETED:
            return answer
        run = await self.store.get_run(workflow_id)
        value = recorded_as(
            None if run is None else run.output,
            result_type,
            what=f"run {workflow_id!r}",
            since="the run ended",
            way_out="pass a result_type= its recorded value fits (or none, for the JSON)",
        )
        return RunResult(value, answer.record)

    result = facade(aresult)

    async def _ended(self, workflow_id: str, limit: float | None) -> RunResult[Any]:
        """`aresult`'s wait for the end of the run, at most `limit` real seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        woken, seen = False, None
        while True:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # a cancel that a read on the way swallowed (a database driver's cancel of
                # its query): honour it, or this loop would wait for the run's end
                raise asyncio.CancelledError
            if woken:  # most likely by the run's end: read it whole at once
                ended = await self._runner.result_if_ended(workflow_id)
                if ended is not None:
                    return ended
            run = await self.store.get_run(workflow_id)
            if run is None:
                raise RunNotFoundError(workflow_id)
            if run.settled:  # a cancel's compensations, if due, have run
                defn = self._registry.get(run.workflow_name)
                return await self._runner.result_of(workflow_id, defn)
            seen = await self._on_fake_clock(run, seen)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"run {workflow_id!r} is still {run.status.value} after {limit:g}s"
                    + await self._why_not_ended(run)
                )
            # a notification may race our read: re-read at least every second
            woken = await self.store.wait_for_change(
                f"run:{workflow_id}", 1.0 if left is None else min(1.0, left)
            )

    async def _on_fake_clock(
        self, run: RunRow, seen: tuple[datetime, float] | None
    ) -> tuple[datetime, float] | None:
        """For `aresult` on a FakeClock, which moves only when told: a run parked only on
        durable timers waited for ever. A timer, or a wait's timeout (a signal's, given
        up on), the clock was moved past fires here (as a process keeping the App
        running fires it); one not due on a clock nobody moved for `_STILL_FOR` real
        seconds (`seen`: the clock's time, and the loop time it was first seen at) is
        refused, saying how to move it; a slow test that moves it from another task has
        those seconds (counted in looks, they were a fifth of one on SQLite, which
        looks every 50 ms). What to pass back as `seen`; None where this does not apply."""
        clock = self.clock
        if not isinstance(clock, FakeClock) or run.status is not RunStatus.WAITING:
            return None
        waits = await self._pending_waits(run.workflow_id)
        now = clock.now()
        if any(w.due_at is not None and w.due_at <= now for w in waits):
            await self.afire_due_timers()  # a timer, or a wait's timeout, the clock passed
            return None
        due = [w.due_at for w in waits if w.kind is WaitKind.TIMER and w.due_at is not None]
        if not due or len(due) < len(waits):  # no timer, or a signal or event may come
            return None
        looked = asyncio.get_running_loop().time()
        since = seen[1] if seen is not None and seen[0] == now else looked
        if looked - since < _STILL_FOR:
            return now, since
        wait = (min(due) - now).total_seconds()
        raise TetherError(
            f"run {run.workflow_id!r} waits for a durable timer due in {wait:g}s of this "
            f"App's FakeClock, which moves only when told and nobody moved it: it would "
            f"wait for ever. Let the time pass first: `await tether.testing.pass_time(app, "
            f"{wait:g})`, or `clock.advance({wait:g})` (from another task too) and "
            f"aresult fires the timer"
        )

    async def _pending_waits(self, workflow_id: str) -> list[WaitRow]:
        waits = await self.store.list_waits(workflow_id)
        return [w for w in waits if w.status is WaitStatus.PENDING]

    async def _why_not_ended(self, run: RunRow) -> str:
        """What `aresult`'s `TimeoutError` adds: what the run waits for and how to end
        that wait; or, for a run handed back, who could drive it. "Start `tether
        worker`" was all it ever said, for a run of an in-memory App too."""
        if run.status is RunStatus.WAITING:
            waits = await self._pending_waits(run.workflow_id)
            return "".join(f"; it waits for {self._wait_hint(run, w)}" for w in waits)
        return await self._nobody_drives(run)

    def _wait_hint(self, run: RunRow, wait: WaitRow) -> str:
        """One wait of `run`: what it is, and the call that answers it."""
        wid, name = run.workflow_id, wait.name
        if wait.kind is WaitKind.SIGNAL:
            what = f"signal {name!r}: send it with app.signal({wid!r}, {name!r}, payload)"
        elif wait.kind is WaitKind.EVENT:
            what = f"event {name!r}: send it with app.send_event({name!r}, payload)"
        elif wait.kind is WaitKind.TOKEN:
            what = f"token {wait.id!r}: complete it with app.complete_token({wait.id!r}, payload)"
        elif wait.kind is WaitKind.RUN:
            what = f"child run {name!r} to end: app.result({name!r}) says what it waits for"
        else:
            what = "a timer"
        if wait.due_at is None:
            return what
        left = (wait.due_at - self.clock.now()).total_seconds()
        when = "due" if wait.kind is WaitKind.TIMER else "or its timeout, due"
        if isinstance(self.clock, FakeClock):
            return (
                f"{what} ({when} in {left:g}s of this App's FakeClock, which moves only "
                f"when told: `await tether.testing.pass_time(app, {max(left, 0):g})`)"
            )
        return (
            f"{what} ({when} at {wait.due_at.isoformat()}, in {left:g}s: fired then by a "
            f"worker (`tether worker`) or app.fire_due_timers())"
        )

    async def _nobody_drives(self, run: RunRow) -> str:
        """Why waiting longer will not help, for a run handed back that no live process
        drives (a script that started it and exited): what to start. No other process
        can reach an in-memory database: a worker for it runs in this one."""
        if run.status is not RunStatus.PENDING or await self.adrivers(run.workflow_name, run.queue):
            return ""
        resume = f"resume it here (app.resume({run.workflow_id!r}))"
        if _in_memory(self.store):
            where = "" if run.queue is None else f", or Worker(app, queues=[{run.queue!r}])"
            return (
                f": nothing in this process drives it, and no other can reach this App's "
                f"in-memory database: {resume}{where}"
            )
        if run.queue is not None:
            return (
                f": no worker serves its queue {run.queue!r} (start "
                f"`tether worker --app FILE.py:app -q {run.queue}`)"
            )
        return (
            f": no live process drives workflow {run.workflow_name!r}; {resume} or start "
            f"`tether worker --app FILE.py:app`"
        )

    # -- resolving waits from outside -------------------------------------------------------

    @homed
    async def asend_event(self, event_type: str, payload: Any = None) -> list[str]:
        """Send an event to every run waiting for it; kept for runs that wait later.

        Returns the ids of the runs it woke; they continue where `signal` says.
        """
        check_name("event_type", event_type)
        result = await self.kernel.adispatch(
            RunResume(kind="event", name=event_type, payload=payload)
        )
        assert isinstance(result, RunResumed)
        await self._warn_undriven(result.woken)
        return result.woken

    send_event = facade(asend_event)

    @homed
    async def asignal(self, workflow_id: str, name: str, payload: Any = None) -> bool:
        """Send signal `name` to a run; True if it woke the run, False if not: kept for
        a later wait of the name, or taken by a wait of a run that is not parked (one
        `for_each` item waiting while another runs a step), which goes on with it. A
        wait past its timeout does not take it (it times out, as if its timer had fired
        first); the signal is kept.

        A run woken here whose workflow is registered on this App continues in
        the background of this process (`resume_woken`), and is handed back
        at exit like a started run (see `start`); a queued run continues on
        a worker. Otherwise it waits, runnable, for `resume`, a worker or an
        App with `recover_orphans`.
        """
        check_name("workflow_id", workflow_id)
        check_name("signal name", name)
        if name == "budget.raise":  # refused here, not by the waiting run
            Budget.check_raise(payload)
            await check_raise_target(self.store, workflow_id)
        result = await self.kernel.adispatch(
            RunResume(kind="signal", name=name, workflow_id=workflow_id, payload=payload)
        )
        assert isinstance(result, RunResumed)
        await self._warn_undriven(result.woken)
        return bool(result.woken)

    async def _warn_undriven(self, woken: list[str]) -> None:
        """Say so when a run just woken has nothing to drive it: neither this App (it
        drives what it wakes of its own workflows) nor a live worker or App serving
        its workflow. The caller's call succeeded; the run would wait unseen. An
        event that woke many runs is looked at in its first few, once per workflow."""
        asked: set[tuple[str, str | None]] = set()
        for workflow_id in woken[:_WOKEN_LOOKED_AT]:
            run = await self.store.get_run(workflow_id)
            if run is None or run.status.terminal or (run.workflow_name, run.queue) in asked:
                continue
            asked.add((run.workflow_name, run.queue))
            if await self.adrivers(run.workflow_name, run.queue) or (
                self._runner.resume_woken and run.workflow_name in self._registry
            ):
                continue
            log.warning(
                "run %s woke, but no live process drives workflow %r: it waits for "
                "`tether runs resume`, a worker serving it, or an App with recover_orphans",
                workflow_id,
                run.workflow_name,
            )

    signal = facade(asignal)

    @homed
    async def acomplete_token(self, token_id: str, payload: Any = None) -> str:
        """Complete a token made by `wf.create_token()`; the id of the run it belongs to.
        The run woken continues where `signal` says."""
        check_name("token_id", token_id)
        result = await self.kernel.adispatch(
            RunResume(kind="token", name=token_id, payload=payload)
        )
        assert isinstance(result, RunResumed) and result.workflow_id is not None
        await self._warn_undriven(result.woken)
        return result.workflow_id

    complete_token = facade(acomplete_token)

    @homed
    async def afire_due_timers(self) -> list[str]:
        """Wake runs whose timers or wait timeouts are due; the ids woken."""
        result = await self.kernel.adispatch(TimersFire())
        assert isinstance(result, Woken)
        return result.woken

    fire_due_timers = facade(afire_due_timers)

    @homed
    async def asettle(self, timeout: float | timedelta | None = None) -> None:
        """Wait until the runs this App drives in the background are at rest: ended,
        parked on a wait, or handed back. Those are the runs it started (`start`) and
        those it woke (a signal, an event, a due timer, a child's end), with the runs
        they woke meanwhile. A script that signals a run and wants it to have gone as
        far as it can here before it goes on calls this; so does a test before it
        looks. `TimeoutError` after `timeout` seconds (the runs go on)."""
        limit = None if timeout is None else check_seconds("timeout", timeout)
        try:
            await asyncio.wait_for(self._runner.settle(), limit)
        except TimeoutError:
            raise TimeoutError(
                f"runs driven in the background here are still running after {limit:g}s"
            ) from None

    settle = facade(asettle)

    @homed
    async def acancel(
        self,
        workflow_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        abandon_batches: bool = False,
    ) -> list[str]:
        """Cancel a run, its pending waits and the children it waits on; the ids cancelled.

        A step that finishes after this has its result discarded. With
        `compensate`, the compensations of completed steps run (here, if the
        workflow is registered; else when the run is next resumed). Provider
        batches a cancelled run submitted (`wf.ai.batch`, batch stages) and had
        not finished are cancelled at the provider. An App that cannot reach them
        (no provider of that name, the pipeline not registered) raises
        `BatchesOutError` and cancels nothing, unless `abandon_batches` says to
        cancel the run and leave them running.
        """
        check_name("workflow_id", workflow_id)
        if reason is not None:
            check_text("reason", reason)  # written in its cancel event
        if not abandon_batches:
            out = await unreachable_batches(self.store, self.ai, self._registry, workflow_id)
            if out:
                raise BatchesOutError(workflow_id, out)
        result = await self.kernel.adispatch(
            RunCancel(workflow_id=workflow_id, reason=reason, compensate=compensate)
        )
        assert isinstance(result, RunCancelled)
        self._runtime.wake(result.cancelled)  # a run of ours waiting to retry stops now
        if self.ai is not None:  # provider batches the runs were waiting on stop too
            await cancel_open_batches(self.ai, self.store, result.cancelled, clock=self.clock)
        await self._cancel_batch_stages(result.cancelled)
        return result.cancelled

    async def _cancel_batch_stages(self, workflow_ids: list[str]) -> None:
        """Stop the batches that suspended stages of cancelled pipeline runs had out."""
        for wid in workflow_ids:
            run = await self.store.get_run(wid)
            if run is None:
                continue
            defn = self._registry.get(run.workflow_name)
            own = defn.fn if defn is not None and isinstance(defn.fn, Pipeline) else None
            await cancel_suspended(own, self.store, run, self.clock.now())

    cancel = facade(acancel)

    @homed
    async def alist_waits(self, workflow_id: str) -> list[WaitInfo]:
        """The run's waitpoints (pending and resolved)."""
        await self.aget_run(workflow_id)
        return [WaitInfo.from_row(w) for w in await self.store.list_waits(workflow_id)]

    # -- opening and inspecting ----------------------------------------------------------

    async def aopen(
        self,
        workflow_id: str,
        *,
        initial_state: Any = None,
        workflow_name: str | None = None,
    ) -> Workflow:
        """A context on run `workflow_id` (created if new) without running anything.

        The context writes without owner fencing; it is for inspection and for
        code that drives steps, leases and heartbeats itself.
        """
        home = home_loop(self)
        if home is not None and home is not asyncio.get_running_loop():
            # its every call would open the store on this loop, taking the connections
            # from the work the sync methods left running on the App's loop thread
            raise InvalidArgumentError(
                "this App's sync methods already run its work on its own loop thread, "
                "so a context opened on another event loop cannot share its database "
                "connections; open it before using the sync methods, or use one App per "
                "event loop (App(url) again, or app.with_database(url))"
            )
        return await self._open_context(
            workflow_id, initial_state=initial_state, workflow_name=workflow_name
        )

    async def _open_context(
        self,
        workflow_id: str,
        *,
        initial_state: Any = None,
        workflow_name: str | None = None,
        owns_store: bool = False,
    ) -> Workflow:
        check_name("workflow_id", workflow_id)
        run, _ = await self.store.create_run(
            NewRun(
                workflow_id=workflow_id,
                workflow_name=workflow_name or workflow_id,
                state=dump_json(initial_state, what="initial_state"),
            ),
            self.clock.now(),
        )
        steps, waits = await asyncio.gather(
            self.store.load_steps(workflow_id), self.store.list_waits(workflow_id)
        )
        state = RunState.open(
            run, generation=None, started=self.clock.now(), steps=steps, waits=waits, replay=False
        )
        return Workflow(self._runtime, state, owns_store=owns_store)

    @homed
    async def aget_record(self, workflow_id: str) -> RunRecord:
        """The full record of one run."""
        check_name("workflow_id", workflow_id)
        return await load_record(self.store, workflow_id)

    get_record = facade(aget_record)

    @homed
    async def aget_run(self, workflow_id: str) -> RunInfo:
        """The run's row (status, owner, timestamps) without its history."""
        check_name("workflow_id", workflow_id)
        run = await self.store.get_run(workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        return RunInfo.from_row(run)

    @homed
    async def alist_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: str | Callable[..., Any] | None = None,
        tag: str | None = None,
        tenant: str | None = None,
        parent: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: str | RunInfo | None = None,
        limit: int = 100,
    ) -> list[RunInfo]:
        """Runs, newest first, at most `limit`: those in `status`, of `workflow` (its name
        or function), tagged `tag`, of `tenant`, started by the run `parent` (its
        children), created in ``[created_after, created_before)``. The next page is
        ``list_runs(..., after=page[-1])``: the runs after that one, in the same order."""
        where = run_filter(
            status=status, workflow=workflow, tag=tag, tenant=tenant, parent=parent,
            created_after=created_after, created_before=created_before,
        )  # fmt: skip
        _check_limit(limit)
        cursor = None
        if after is not None:
            if isinstance(after, str):  # a NUL in it failed on PostgreSQL as a store error
                check_name("after", after)
            known = None if not isinstance(after, str) else await self.store.get_run(after)
            cursor = page_cursor(after, None if known is None else known.created_at)
        rows = await self.store.list_runs_page(where, limit=limit, after=cursor)
        return [RunInfo.from_row(r) for r in rows]

    list_runs = facade(alist_runs)

    async def aiter_runs(
        self, *, page_size: int = 500, **query: Unpack[RunQuery]
    ) -> AsyncIterator[RunInfo]:
        """Every run that matches `query` (the filters of `list_runs`), newest first,
        read `page_size` at a time: for a scan that must not stop at a limit (a run
        created meanwhile is newer than the cursor, so none is met twice)."""
        after: RunInfo | None = None
        while True:
            page = await self.alist_runs(**query, after=after, limit=page_size)
            for run in page:
                yield run
            if len(page) < page_size:
                return
            after = page[-1]

    def iter_runs(self, *, page_size: int = 500, **query: Unpack[RunQuery]) -> Iterator[RunInfo]:
        """The sync `aiter_runs`: one `list_runs` call a page."""
        after: RunInfo | None = None
        while True:
            page = self.list_runs(**query, after=after, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1]

    get_run = facade(aget_run)

    # -- AI: budgets, the call log, usage ------------------------------------------------

    def _workflow_budget(self, name: str) -> Budget | None:
        defn = self._registry.get(name)
        return None if defn is None else defn.budget

    def _budget_dict(self, budget: Any, defn: WorkflowDef) -> dict[str, Any] | None:
        """The run's budget as stored: the one given, else the workflow's; also checks
        that the App's providers can call (a missing key fails before the run exists)."""
        if self.ai is not None:
            self.ai.check()
        chosen = Budget.of(budget) or defn.budget
        return None if chosen is None else chosen.model_dump(exclude_none=True)

    def _budget_json(self, budget: Any, defn: WorkflowDef) -> str | None:
        chosen = self._budget_dict(budget, defn)
        return None if chosen is None else dump_json(chosen, what="budget")

    @homed
    async def alist_ai_calls(self, workflow_id: str, *, children: bool = False) -> list[AICallRow]:
        """The AI calls a run made (and, with `children`, its child runs), oldest first."""
        return await self.store.list_ai_calls(await self._family(workflow_id, children))

    list_ai_calls = facade(alist_ai_calls)

    @homed
    async def ausage(
        self,
        *,
        workflow: str | None = None,
        tag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | None = None,
        run: str | None = None,
        children: bool = False,
    ) -> list[AIUsageRow]:
        """AI calls, tokens and cost summed from the call log: one row, or one per
        ``group_by`` ("model", "workflow", "day", "run" or "stage": a pipeline stage's
        calls of its current attempt, every other call under None), filtered by
        workflow name, run tag, call time, or one `run` (with its child runs if
        `children`). Calls at no known price count in `unknown_cost_calls`, never as $0."""
        if group_by not in (None, "model", "workflow", "day", "run", "stage"):
            raise InvalidArgumentError(
                'group_by must be "model", "workflow", "day", "run", "stage" or None, '
                f"got {group_by!r}"
            )
        for what, when in (("since", since), ("until", until)):
            if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
                raise InvalidArgumentError(f"{what} must be a timezone-aware datetime")
        if children and run is None:  # before: quietly the sum over every run
            raise InvalidArgumentError(
                "children=True counts one run's child runs with it: pass run= (the run's "
                "workflow_id) too, or leave children out for every run's calls"
            )
        ids = None if run is None else await self._family(run, children)
        return await self.store.ai_usage(
            workflow_ids=ids, workflow=workflow, tag=tag, since=since, until=until,
            group_by=group_by,
        )  # fmt: skip

    usage = facade(ausage)

    async def _family(self, workflow_id: str, children: bool) -> list[str]:
        """The run and (with `children`) its descendants."""
        await self.aget_run(workflow_id)
        found = [workflow_id]
        if children:
            for child in await self.store.child_runs(workflow_id):
                found += await self._family(child, True)
        return found

    # -- schedules --------------------------------------------------------------------------

    def schedule(
        self,
        workflow: Callable[..., Awaitable[Any]],
        *,
        cron: str,
        input: Any = None,
        timezone: str = "UTC",
        name: str | None = None,
        queue: str = "default",
        missed: MissedTicks = "latest",
        overlap: Overlap = "allow",
    ) -> Schedule:
        """Start `workflow` on `cron` (five fields, read in `timezone`), each tick once.

        Ticks are started by workers (`tether worker`, `Worker`, `ServerlessHost`
        maintenance) or by `fire_schedules`; each tick is a run queued on `queue`
        with the id ``NAME@TIME`` (UTC), so two workers never start one tick twice.
        `missed` says what happens to ticks missed while no worker ran: ``"latest"``
        starts the most recent once, ``"all"`` starts each (at most 100), ``"skip"``
        starts none that are more than a minute late. `overlap` says what a tick due
        while the schedule's last run has not ended does: ``"allow"`` starts it all the
        same, ``"skip"`` drops it (logged). `name` defaults to the workflow's name.
        """
        defn = self._ensure_registered(workflow)
        sched = Schedule(
            name=defn.name if name is None else name,
            workflow=defn.name,
            cron=cron,
            timezone=timezone,
            input=input,
            queue=queue,
            missed=missed,
            overlap=overlap,
        )
        if input is not None and not defn.takes_input:  # else each tick skipped, logged
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes no input; drop input= or give the workflow "
                "a parameter for it"
            )
        if defn.takes_input:
            defn.encode_input(input)  # a bad or unstorable input fails here, not at 2 a.m.
        known = self._schedules.get(sched.name)
        if known is not None and known != sched:
            raise InvalidArgumentError(
                f"a different schedule is already named {sched.name!r}; pass name= to "
                "tell them apart"
            )
        self._schedules[sched.name] = sched
        return sched

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules declared in this process, by name."""
        return dict(self._schedules)

    @homed
    async def afire_schedules(self) -> list[str]:
        """Start the ticks of this App's schedules that are due now; the run ids."""
        return await fire_schedules(self)

    fire_schedules = facade(afire_schedules)

    @homed
    async def alist_schedules(self) -> list[ScheduleRow]:
        """Every schedule the database knows (saved when a worker first fires it)."""
        return await self.store.list_schedules()

    list_schedules = facade(alist_schedules)

    @homed
    async def apause_schedule(self, name: str, *, paused: bool = True) -> ScheduleRow:
        """Pause a schedule (no ticks start) or resume it (`paused=False`): resuming
        starts from now, the ticks that fell in the pause are not started. A schedule
        this App declares is saved first if no process fired it yet (a deploy that
        pauses it before its first tick)."""
        row = await self.store.pause_schedule(name, paused, self.clock.now())
        declared = self._schedules.get(name)
        if row is None and declared is not None:
            now = self.clock.now()
            await self.store.save_schedule(declared.row(declared.workflow, now))
            row = await self.store.pause_schedule(name, paused, now)
        if row is None:
            known = ", ".join(r.name for r in await self.store.list_schedules()) or "none"
            raise InvalidArgumentError(
                f"no schedule named {name!r} in this database (known: {known}); a schedule "
                "is saved when a worker running its app first fires it"
            )
        return row

    pause_schedule = facade(apause_schedule)

    # -- the outbox's dead letters ----------------------------------------------------------

    @homed
    async def adead_letters(self, *, limit: int = 100) -> list[OutboxRow]:
        """The events the outbox gave up delivering (a sink refused each of its
        attempts), the longest dead first: their run, type, attempts, when they were
        given up on and the last attempt's error. A dead letter holds back nothing:
        its run's later events are delivered. `replay_dead_letters` retries them."""
        _check_limit(limit)
        return await self.store.outbox_dead(limit=limit)

    dead_letters = facade(adead_letters)

    @homed
    async def areplay_dead_letters(self, *, limit: int = 1000) -> int:
        """Put up to `limit` dead letters (the longest dead first) back for delivery,
        with their attempts from zero; how many. A worker's (or `serve`'s) next
        outbox pass delivers them, each run's in order."""
        _check_limit(limit)
        # "at most 10**20" is all of them, as `dead_letters` reads it (the command's
        # field stops at the largest LIMIT: refused, it named max_events, no argument here)
        result = await self.kernel.adispatch(OutboxReplayDead(max_events=min(limit, 2**63 - 1)))
        assert isinstance(result, Replayed)
        return result.count

    replay_dead_letters = facade(areplay_dead_letters)

    # -- orphans and shutdown ---------------------------------------------------------------

    @homed
    async def arecover_orphans(self, *, grace: float = 5.0, limit: int = 100) -> list[str]:
        """Drive, in the background here, runs of this App's workflows that nobody
        drives: their owner died (its claim lapsed, or at once when it was a process
        of this machine that has ended) or they sat runnable for more than `grace`
        seconds. The ids taken up; two processes never both drive one.
        """
        self._recovered_at = self.clock.now()
        if not self._registry:
            return []
        # an owner of this machine whose process has ended is known dead: its runs are
        # taken up now, not once its claim lapses (the claim itself is fenced on it)
        orphans = await self.store.orphaned_runs(
            sorted(self._registry), grace=grace, now=self.clock.store_time(), limit=limit
        )
        for run in orphans:
            self._runner.spawn(run.workflow_id)
        return [r.workflow_id for r in orphans]

    recover_orphans = facade(arecover_orphans)

    async def _maybe_recover(self) -> None:
        # connect before the keep-alive task starts, so that it and this call never both
        # open the store (for sqlite:///:memory: that would be two separate databases)
        await self.store.open()
        self._runner.ensure_alive()
        await self._recover_if_due()

    async def _recover_if_due(self) -> None:
        """With `recover_orphans`: look for orphans again, at most every
        `RECOVER_EVERY` seconds (on each run/start/resume, and each keep-alive turn),
        so a run whose owner died after the last look is taken up once its claim
        lapses, not left running for good."""
        if not self._recover:
            return
        last = self._recovered_at
        if last is None or (self.clock.now() - last).total_seconds() >= RECOVER_EVERY:
            await self.arecover_orphans()

    @homed
    async def ahost_chores(self, *, every: float | timedelta = 1.0) -> None:
        """Keep the runs of a long-lived process moving, until cancelled (what `tether
        serve` runs beside its API): every `every` seconds wake the runs whose timers or
        wait timeouts are due (driven here: `resume_woken`), and every `RECOVER_EVERY`
        seconds take up runs of this App's workflows that nobody drives (handed back
        by a server that stopped, or whose owner died). Queued runs stay the workers'.
        With `sinks`, publish the outbox to them too, under the lock workers share
        (`publish_outbox`). A database error is logged and the chores go on."""
        every = check_seconds("every", every, positive=True)  # a timedelta, as seconds
        holder = new_owner()
        self._runner.adopts = True  # runs woken elsewhere are taken up here (`adrivers`)
        try:  # say at once that runs of these workflows are driven here
            await self.store.open()
            self._runner.ensure_alive()
            await self._runner.announce_now()
        except StoreError as exc:  # the keep-alive turn says it again
            log.warning("announcing this process failed: %s", exc)
        while True:
            try:
                await self.afire_due_timers()
                last = self._recovered_at
                if last is None or (self.clock.now() - last).total_seconds() >= RECOVER_EVERY:
                    await self.arecover_orphans()
                if self.kernel.sinks:
                    await publish_outbox(self.kernel, holder, ttl=30.0, budget=every)
            except StoreError as exc:
                log.warning("waking due timers, taking up orphans or publishing failed: %s", exc)
            await asyncio.sleep(every)

    @homed
    async def adrivers(self, workflow_name: str, queue: str | None = None) -> list[str]:
        """Live processes that drive runs of `workflow_name` woken elsewhere (they
        announce the workflows they registered while they live: workers, servers, and
        Apps with `recover_orphans`; a plain App drives only the runs it runs, resumes
        or wakes itself); empty when a woken run of it would wait for nobody. With
        `queue`, only the workers that serve that job queue (a queued run's drivers)."""
        return await self._runner.drivers(workflow_name, queue)

    drivers = facade(adrivers)

    def announce(self, queues: Sequence[str] = ()) -> None:
        """Announce now (not only once a run is driven) that this process drives the
        workflows registered here, and serves the job `queues` (a worker); kept up
        while the App lives. Workers do this."""
        self._loop.run(self.aannounce(queues))

    @homed
    async def aannounce(self, queues: Sequence[str] = ()) -> None:
        """Async face of `announce`."""
        self._runner.queues = tuple(queues)
        await self.store.open()
        self._runner.ensure_alive()
        await self._runner.announce_now()

    def drain(self) -> None:
        """Start no more steps: runs driven here hand themselves back at their
        next step boundary (a step in flight finishes and is recorded first)."""
        self._runner.begin_drain()

    @property
    def draining(self) -> bool:
        """Whether this App began to stop (`drain`, `close`, a signal its process got):
        a loop that claims work for it (a `ServerlessHost`, a dispatcher) stops
        claiming, as each run it drove would only hand itself back."""
        return self._runtime.draining

    async def aclose(self) -> None:
        """Stop gracefully: no new steps; steps in flight finish (up to
        `shutdown_grace` seconds) and are recorded; runs are handed back; the sinks'
        deliveries in flight finish (up to ten seconds). In a process forked from the
        one that used this App it does nothing, as `close` does: what it would close is
        the parent's (it raised the error that refuses the App's use there)."""
        if _forked_here(self):
            return
        await self._aclose()

    @homed
    async def _aclose(self) -> None:
        if self._closed:  # closing elsewhere: done when that close is
            done = self._close_done
            if done is not None and done.get_loop() is asyncio.get_running_loop():
                await asyncio.shield(done)
            return
        self._runner.refuse_close_in_run()
        self._closed = True  # from now on no run is made or driven here (`refuse_closed`)
        done = self._close_done = asyncio.get_running_loop().create_future()
        try:
            await self._runner.shutdown(self.shutdown_grace)
            # the sync calls still running (a read, a `result` waiting) are cut short:
            # left to run, one touched the store as it closed, or opened it anew
            await self._loop.end_calls()
            await self.kernel.aclose()  # a sink's delivery in flight finishes, not cut off
            if self.ai is not None:
                await self.ai.aclose()
            await self.store.close()
        finally:
            self._shut = True
            done.set_result(None)

    def refuse_closed(self, method: str) -> None:
        """Refuse `method` (an async one's name) that drives runs here once this App
        began to close: a run made or resumed then was left pending with nothing to
        drive it (or met the store as it closed)."""
        if self._closed and method in _DRIVES_RUNS:
            sync = method.removeprefix("a")
            raise TetherError(
                f"app.{sync}() / app.{method}() was called after the App was closed or "
                "as it closes (app.close(), aclose(), the process exiting, or the end of a "
                "`with App(...)` block), when it drives no run any more. Make the call "
                "before closing it, or use a new "
                "App (app.with_database(app.database_url) builds one with the same "
                "workflows and settings)"
            )

    def close(self) -> None:
        """Sync facade of `aclose`; also stops the App's loop thread."""
        if self._loop.forked() or _forked_here(self):  # the parent's loop and connections
            return
        if self._shut and self._loop.loop is None:  # closed already: nothing to wait for
            return
        self._runner.refuse_close_in_run()  # before waiting on the loop it may run on
        _refuse_sync_close_in_loop()
        if self._loop.loop is not None:
            self._loop.run(self.aclose(), closing=True)
            self._loop.stop()
        elif not self._closed:
            asyncio.run(self.aclose())

    def with_database(self, database_url: str) -> App:
        """A new App on `database_url` with this App's settings (sinks, leases, clock
        ...), its registered workflows and queues; this App is left as it is."""
        other = App(database_url, **self._settings)
        # what was declared on this App after it was built: workflows, queues (and
        # schedules, where this App has them), each copied so the two stay apart
        for name in ("_registry", "_implicit", "_queues", "_schedules"):
            if hasattr(self, name):
                setattr(other, name, copy.copy(getattr(self, name)))
        return other

    list_waits = facade(alist_waits)

    @homed
    async def ajobs(self, workflow_id: str) -> list[JobRow]:
        """The run's queue jobs (a queued or claimed one means a worker will drive it)."""
        await self.aget_run(workflow_id)
        return await self.store.list_jobs(workflow_id=workflow_id)

    jobs = facade(ajobs)

    # -- retention ----------------------------------------------------------------------

    @homed
    async def aprune(
        self,
        older_than: timedelta | str,
        statuses: Sequence[RunStatus | str] | None = None,
        *,
        batch: int = 500,
    ) -> int:
        """Delete the finished runs (of `statuses`, default every terminal one) that
        ended more than `older_than` ago (a timedelta, or "30d", "12h", "45m"), with
        their steps, events, waits, jobs and AI calls, `batch` runs per transaction.
        How many. With sinks, a run with an event they have yet to get (neither
        delivered nor dead-lettered) is kept until the outbox has delivered it."""
        age = parse_age(older_than)
        wanted = _terminal(statuses)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidArgumentError(f"batch must be an integer >= 1, got {batch!r}")
        try:
            cutoff = self.clock.now() - age
        except OverflowError:  # before: a bare "date value out of range"
            raise InvalidArgumentError(
                f"older_than={older_than!r} reaches back before the year 1, so no run is "
                "that old; give a shorter age (e.g. '3650d')"
            ) from None
        total = 0
        while True:
            keep = bool(self.kernel.sinks)  # no sink ever takes them here otherwise
            ids = await self.store.prunable_runs(cutoff, wanted, batch, keep_undelivered=keep)
            if not ids:
                return total
            families = [f for wid in ids for f in await self._family(wid, True)]
            deleted = await self.store.delete_runs(
                ids, keep_undelivered=keep, finished_before=cutoff
            )
            await self._forget_run_files(
                [f for f in families if await self.store.get_run(f) is None]
            )
            total += deleted
            if deleted == 0:  # every one was resumed meanwhile: nothing more to do now
                return total

    prune = facade(aprune)

    @homed
    async def adelete_run(self, workflow_id: str) -> None:
        """Delete one finished run and everything recorded for it; a run that has not
        ended is refused (cancel it first)."""
        run = await self.aget_run(workflow_id)
        if not run.status.terminal:
            raise InvalidArgumentError(
                f"run {workflow_id!r} has not ended ({run.status.value}); only finished runs "
                "are deleted: cancel it first, then delete it"
            )
        family = await self._family(workflow_id, True)
        if await self.store.delete_runs([workflow_id]) == 0:
            raise InvalidArgumentError(f"run {workflow_id!r} was resumed meanwhile; not deleted")
        await self._forget_run_files(family)

    async def _forget_run_files(self, workflow_ids: Sequence[str]) -> None:
        """Remove the files of deleted runs (after the delete committed). One run's
        files failing to go (a file system error) leaves a warning, not the others'."""
        for wid in workflow_ids:
            try:
                await self.blobs.delete_prefix(run_prefix(wid))
            except Exception as exc:
                log.warning(
                    "the files of deleted run %s were not removed from the blob store "
                    "(%r); remove %s by hand",
                    wid,
                    exc,
                    run_prefix(wid),
                )

    delete_run = facade(adelete_run)

    def remote_workflow(
        self,
        name: str,
        *,
        url: str,
        secret: str,
        version: str | None = None,
        deadline: float = 30.0,
        max_invocations: int = 100,
        retry_delay: float = 0.5,
        timeout: float | None = None,
        project: str | None = None,
        organisation: str | None = None,
        transport: Any = None,
        compatible: Iterable[str] = (),
    ) -> Callable[..., Awaitable[Any]]:
        """Register workflow `name`, served by a tenant at `url` (`tether.remote.handler`)
        with `secret`, as a workflow of this App; returns its workflow function.

        Each drive sends one invocation (it must answer within `deadline` seconds),
        records the steps the tenant completed and parks on what it waits for;
        an unanswered invocation is tried again after `retry_delay` seconds
        (doubling), and a run that needs more than `max_invocations` fails.
        `project` and `organisation` go to the tenant with each invocation;
        `transport` (an httpx transport) reaches a tenant without a network.
        `compatible` lists earlier versions whose runs this `version` resumes, as
        for `App.workflow`: an invocation carries the run's own version, which
        the tenant must serve (its workflow's `compatible=`).
        Needs the ``server`` extra."""
        from .remote import RemoteSpec, remote_workflow

        spec = RemoteSpec(name, url, secret, version, deadline, max_invocations, retry_delay,
                          project, organisation, transport, tuple(compatible))  # fmt: skip
        fn: Callable[..., Awaitable[Any]] = remote_workflow(self, spec, timeout)
        return fn

    def asgi(self, **options: Any) -> Any:
        """The HTTP API on this App as an ASGI application, to mount in a web app of
        your own (`tether serve` serves it). Options: `tether.server.ServerConfig`'s.
        Needs the ``server`` extra."""
        from .server import ServerConfig, create_app

        return create_app(self, ServerConfig(**options))

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on this App's loop thread and wait for it: what every sync method
        does, for code of your own that uses the async API from sync code."""
        name = str(getattr(coro, "__name__", ""))
        if self._closed and name in _DRIVES_RUNS:
            coro.close()
            self.refuse_closed(name)
        return self._loop.run(coro)

    async def __aenter__(self) -> App:
        return self

    def __enter__(self) -> App:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        with _unless_raising(exc):
            self.close()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        with _unless_raising(exc):
            await self.aclose()


@contextlib.contextmanager
def _unless_raising(exc: object) -> Iterator[None]:
    """Close an App at the end of a `with` block; a block that raised has its exception
    go on unchanged: a close that fails then is logged, not raised in its place."""
    try:
        yield
    except Exception:
        if exc is None:
            raise
        log.exception("closing the App at the end of a `with` block that raised failed")


def _forked_here(app: App) -> bool:
    """Whether `app` was used in the process this one was forked from."""
    try:
        check_not_forked(app)
    except TetherError:
        return True
    return False


def _refuse_sync_close_in_loop() -> None:
    """`close` waits for the steps in flight: in a thread whose event loop runs (an async
    function, a notebook) that would block the loop, and it failed with asyncio's error."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise TetherError(
        "app.close() was called with an event loop running in this thread (an async "
        "function, a notebook, an async web handler): closing waits for the steps in "
        "flight, which would block that loop. Use `await app.aclose()` there (or "
        "`async with App(...) as app:`)"
    )


# the methods that drive runs in this process: refused once the App closed (a read is not)
_DRIVES_RUNS = frozenset(
    {"arun", "astart", "aresume", "arerun_from", "aretry_compensations", "asettle",
     "arecover_orphans", "ahost_chores", "aannounce", "afire_due_timers"}
)  # fmt: skip


def _terminal(statuses: Sequence[RunStatus | str] | None) -> list[RunStatus] | None:
    if statuses is None:
        return None
    found: list[RunStatus] = []
    for value in statuses:
        try:
            status = RunStatus(value)
        except ValueError:
            status = None
        if status is None or not status.terminal:
            done = ", ".join(s.value for s in RunStatus if s.terminal)
            raise InvalidArgumentError(
                f"only finished runs are pruned; {value!r} is not a final status ({done})"
            )
        found.append(status)
    return found


def _check_run_after(run_after: object) -> None:
    """A moment with a time zone that UTC can hold (years 1 to 9999): one outside it
    was accepted, then broke every worker that claimed it."""
    if not isinstance(run_after, datetime) or run_after.utcoffset() is None:
        raise InvalidArgumentError(
            f"run_after must be a datetime with a time zone, got {run_after!r} (a naive "
            "one would mean another moment on another database or machine); e.g. "
            "datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    try:
        utc = run_after.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or utc.year >= 9999:
        raise InvalidArgumentError(
            f"run_after {run_after.isoformat()} is outside the years 1 to 9998 in UTC; give "
            "a real moment, e.g. datetime.now(timezone.utc) + timedelta(days=1)"
        )


def _with_config(workflow: Any, input: Any, config: Mapping[str, Any] | None) -> Any:
    """A pipeline's input with its stages' config (checked now, before anything runs)."""
    if config is None:
        return input
    if not isinstance(workflow, Pipeline):
        raise InvalidArgumentError(
            "config= is the stage config of a pipeline (tether.Pipeline); a workflow "
            "function takes its settings in its input"
        )
    return workflow.bind(None if input is _MISSING else input, config)


# priorities and attempts are stored as 32-bit integers
_INT32 = 2**31 - 1


def _check_create(
    workflow_id: object, idempotency_key: object, priority: object, tags: object, tenant: object
) -> None:
    """Refuse the arguments of a run to create before anything is written."""
    if workflow_id is not None:
        check_name("workflow_id", workflow_id)
    if idempotency_key is not None:
        check_name("idempotency_key", idempotency_key)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > _INT32:
        raise InvalidArgumentError(
            f"priority must be an integer from -{_INT32} to {_INT32} (higher is claimed "
            f"first), got {priority!r}; e.g. priority=5"
        )
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise InvalidArgumentError(f"tags must be a list of str, got {tags!r}; e.g. tags=['a']")
    if tenant is not None:
        check_name("tenant", tenant)


def _checked_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags, each a name the database can store (a NUL in one failed on PostgreSQL
    as an unavailable store, which a client retries)."""
    found = tuple(tags)
    for tag in found:
        check_name("tag", tag)
    return found


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit must be an integer >= 1, got {limit!r}")


def _command(kind: type[C], **fields: Any) -> C:
    """A command built from a public call's arguments; what does not fit is bad input."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        raise InvalidArgumentError(
            f"{explain_validation(exc)}; fix the argument(s) named"
        ) from None


def _in_memory(store: Store) -> bool:
    """Whether `store` is an in-memory SQLite database, which no other process reaches."""
    config = getattr(store, "config", None)
    return bool(getattr(config, "in_memory", False))


def _not_seconds(value: object) -> bool:
    """True unless `value` is a finite number of seconds (a bool is not one)."""
    return isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)


def _check_seconds(
    inbox_retention: object,
    owner_lease: object,
    shutdown_grace: object,
    inline_wait: object,
    job_visibility: object,
) -> None:
    """Refuse App durations that are not numbers of seconds in range."""
    if _not_seconds(inbox_retention) or inbox_retention <= 0:  # type: ignore[operator]
        raise InvalidArgumentError(f"inbox_retention must be > 0 seconds, got {inbox_retention!r}")
    for what, value, low in (
        ("owner_lease", owner_lease, 1.0),
        ("shutdown_grace", shutdown_grace, 0.0),
        ("inline_wait", inline_wait, 0.0),
        ("job_visibility", job_visibility, 0.001),
    ):
        if _not_seconds(value) or value < low:  # type: ignore[operator]
            raise InvalidArgumentError(
                f"{what} must be a number of seconds >= {low:g}, got {value!r}"
            )


def _step_key(step: object) -> str:
    """What `rerun_from` goes on from: a step's (or wait's) key, or a stage's id. A stage
    given as itself failed with a raw validation error of the kernel's command."""
    if isinstance(step, Stage):
        return step.id
    if not isinstance(step, str):
        raise InvalidArgumentError(
            f"rerun_from takes a step's key (or a wait's, or a stage's id) as a str, got "
            f"{step!r}; e.g. rerun_from(run_id, 'charge') (its record lists the keys)"
        )
    return step


def _check_app_options(
    clock: object,
    store: object,
    resume_woken: object,
    recover_orphans: object,
    ai: object,
    blobs: object,
) -> None:
    """Refuse App options of the wrong kind before anything is opened."""
    if ai is not None and not isinstance(ai, Providers):
        raise InvalidArgumentError(
            f"ai must be a tether.ai.Providers, got {ai!r}; e.g. "
            "ai=tether.ai.Providers(openai=tether.ai.OpenAI())"
        )
    if blobs is not None and not isinstance(blobs, BlobStore):
        raise InvalidArgumentError(
            f"blobs must be a tether.blobs.BlobStore, got {blobs!r}; e.g. "
            "blobs=tether.blobs.FileBlobStore('/var/lib/app/blobs')"
        )
    if clock is not None and not all(
        callable(getattr(clock, m, None)) for m in ("now", "sleep", "store_time")
    ):
        raise InvalidArgumentError(
            f"clock must be a tether Clock (with now(), sleep() and store_time()), got "
            f"{clock!r}; pass tether.SystemClock() or, in tests, tether.FakeClock(), or omit it"
        )
    if store is not None and not callable(getattr(store, "create_run", None)):
        raise InvalidArgumentError(
            f"store must be a tether Store, got {store!r}; pass a database URL instead"
        )
    for what, flag in (("resume_woken", resume_woken), ("recover_orphans", recover_orphans)):
        if not isinstance(flag, bool):
            raise InvalidArgumentError(f"{what} must be True or False, got {flag!r}")


def run_on_loop(app: App, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on `app`'s loop thread and wait for it (see `App.run_sync`)."""
    return app.run_sync(coro)


# -- the functional form, as in the seed ------------------------------------------------


async def run_workflow(
    fn: Callable[[Workflow], Awaitable[T]],
    *,
    workflow_id: str,
    initial_state: Any = None,
    database_url: str | None = None,
    clock: Clock | None = None,
    durability: str | Durability | None = None,
) -> RunResult[T]:
    """Create or re-open run `workflow_id`, mark it running, run `fn(wf)`, record the end."""
    app = App(database_url, clock=clock, durability=durability)
    try:
        return await app.arun(fn, workflow_id=workflow_id, initial_state=initial_state)
    finally:
        await app.aclose()


async def open_workflow(
    *,
    workflow_id: str,
    initial_state: Any = None,
    database_url: str | None = None,
    clock: Clock | None = None,
    durability: str | Durability | None = None,
) -> Workflow:
    """A `Workflow` on run `workflow_id` without running a callback.

    Close it with ``await wf.aclose()`` or use ``async with``.
    """
    app = App(database_url, clock=clock, durability=durability)
    try:
        return await app._open_context(workflow_id, initial_state=initial_state, owns_store=True)
    except BaseException:
        await app.aclose()
        raise


def _not_rerunnable(run: RunInfo) -> str:
    """Why `rerun_from` refuses `run`, and what to do instead."""
    wid, status = run.workflow_id, run.status
    if not status.terminal:
        return (
            f"run {wid!r} is {status.value}; rerun_from takes a run that has ended "
            "(completed or failed): wait for it to end"
        )
    if status is RunStatus.CANCELLED:
        return (
            f"run {wid!r} was cancelled; rerun_from retries a run that completed or failed, "
            "not one stopped on purpose: start a new run instead"
        )
    return (
        f"run {wid!r} is {status.value}: its compensations undid its completed steps, so "
        "their recorded results no longer hold and rerun_from cannot go on from them: "
        "start a new run instead"
    )
