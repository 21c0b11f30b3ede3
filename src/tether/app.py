"""App: a workflow registry bound to a store, and the functional entry points.

The engine is async; every sync method here drives the async one of the same
name with an ``a`` prefix (``run`` -> ``arun``) on the App's own loop thread,
so there is one body, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

from ._info import RunInfo, WaitInfo
from ._interceptors import StepInterceptor, check_interceptors
from ._loop import LoopThread
from ._names import check_name
from ._run_state import RunState
from ._runner import Runner
from ._runtime import EventHook, Runtime
from ._waits import MISSING
from ._workflow import Workflow, load_record
from .clock import Clock, SystemClock
from .definition import DEF_ATTR, RunResult, WorkflowDef
from .errors import (
    InvalidArgumentError,
    RunAlreadyRunningError,
    RunNotFoundError,
    WorkflowNotFoundError,
)
from .kernel import (
    EventSink,
    Kernel,
    RunCancel,
    RunCancelled,
    RunCreate,
    RunCreated,
    RunRerunFrom,
    RunResume,
    RunResumed,
    TimersFire,
    Woken,
    new_run_id,
)
from .record import RunRecord
from .serde import dump_json
from .store import Durability, NewRun, QueueLimit, RunRow, RunStatus, Store, open_store

__all__ = ["App", "RunResult", "WorkflowDef", "open_workflow", "run_workflow"]

log = logging.getLogger("tether")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = MISSING


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
    there. With `recover_orphans`, the App's first run/start/resume drives
    (in the background) the runs of its registered workflows whose owner
    died; `recover_orphans()` does it on demand.

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
    ) -> None:
        if inbox_retention <= 0:
            raise InvalidArgumentError(
                f"inbox_retention must be > 0 seconds, got {inbox_retention!r}"
            )
        for what, value, low in (
            ("owner_lease", owner_lease, 1.0),
            ("shutdown_grace", shutdown_grace, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise InvalidArgumentError(
                    f"{what} must be a number of seconds >= {low:g}, got {value!r}"
                )
        self.store: Store = store or open_store(database_url, durability=durability)
        self.clock: Clock = clock or SystemClock()
        self.inbox_retention = float(inbox_retention)
        self._runtime = Runtime(
            self.store, self.clock, interceptors=check_interceptors(interceptors)
        )
        self._registry: dict[str, WorkflowDef] = {}
        self._implicit: set[str] = set()  # names registered by running them, not declared
        self._loop = LoopThread(on_exit=self.close)
        self._runner = Runner(
            self._runtime,
            self.get_workflow,
            inline_wait=inline_wait,
            resume_woken=resume_woken,
            owner_lease=float(owner_lease),
            workflows=lambda: sorted(self._registry),
        )
        self.shutdown_grace = float(shutdown_grace)
        self._recover_pending = bool(recover_orphans)
        self._closed = False
        self._queues: dict[str, QueueLimit] = {}
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
    ) -> Any:
        """Register an ``async def fn(wf, input)`` as a workflow (usable bare or called).

        `version` is recorded on each run; a run resumes only under the same
        version or one that lists it in `compatible`. `timeout` bounds the
        seconds a run spends executing; time parked does not count.
        """

        def register(f: F) -> F:
            defn = WorkflowDef.make(
                f, name=name, version=version, compatible=compatible, timeout=timeout
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
            return f

        return register(fn) if fn is not None else register

    def get_workflow(self, name: str) -> WorkflowDef:
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

    def queue(
        self, name: str, *, concurrency: int | None = None, rate_per_second: float | None = None
    ) -> None:
        """Cap queue `name` across all workers: jobs at once, and starts per second."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("queue name must be a non-empty str")
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if rate_per_second is not None and rate_per_second <= 0:
            raise InvalidArgumentError(f"rate_per_second must be > 0, got {rate_per_second!r}")
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
    ) -> tuple[WorkflowDef, RunRow, bool, Any]:
        defn = WorkflowDef.of(workflow)
        wid = new_run_id(defn.name) if workflow_id is None else workflow_id
        check_name("workflow_id", wid)
        if input is not _MISSING and not defn.takes_input:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes no input (its function has one parameter, "
                "the Workflow); drop the input or add a parameter"
            )
        if idempotency_key is not None:
            check_name("idempotency_key", idempotency_key)
        tag_tuple = tuple(tags)
        if not all(isinstance(t, str) for t in tag_tuple):
            raise InvalidArgumentError("tags must be strings")
        if input is not _MISSING:
            input = defn.coerce_input(input)  # before anything is created
        input_text = (
            None
            if input is _MISSING
            else dump_json(input, what=f"the input of workflow {defn.name!r}", tp=defn.input_type)
        )
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
            ),
            self.clock.now(),
        )
        if not created:
            _check_same_run(run, defn, input_text if idempotency_key is None else None)
        if defn.input_required and run.input is None and input is _MISSING:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes an input and run {wid!r} has none recorded; pass one"
            )
        return defn, run, created, input

    async def arun(
        self,
        workflow: Callable[..., Awaitable[T]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        initial_state: Any = None,
        on_event: EventHook | None = None,
        if_running: str = "raise",
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
        result is awaited.
        """
        if if_running not in ("raise", "wait"):
            raise InvalidArgumentError(f'if_running must be "raise" or "wait", got {if_running!r}')
        await self._maybe_recover()
        self._ensure_registered(workflow)
        defn, run, _, input = await self._create(
            workflow, input, workflow_id=workflow_id, initial_state=initial_state
        )
        try:
            return await self._runner.drive(
                run.workflow_id, defn=defn, input=input, on_event=on_event
            )
        except RunAlreadyRunningError:
            if if_running == "raise":
                raise
            return await self.aresult(run.workflow_id)

    def run(
        self,
        workflow: Callable[..., Awaitable[T]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        initial_state: Any = None,
        on_event: EventHook | None = None,
        if_running: str = "raise",
    ) -> RunResult[T]:
        """Sync facade of `arun`."""
        return self._loop.run(
            self.arun(
                workflow,
                input,
                workflow_id=workflow_id,
                initial_state=initial_state,
                on_event=on_event,
                if_running=if_running,
            )
        )

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
    ) -> str:
        """Create a run and drive it in the background of this process; its id at once.

        The run continues on this App's loop while the process lives. When the
        process exits normally (or `close()`, SIGTERM, Ctrl-C), the step in
        flight finishes and is recorded and the run is handed back: the next
        `run`/`resume` of its id, a worker serving its workflow, or an App
        with `recover_orphans` continues it from there. If the process dies,
        the same happens once its claim lapses. To run it to its end here,
        wait with `result(id)`.

        The same `idempotency_key` returns the same run instead of starting a
        second one, also when callers race: only the caller that created the
        run drives it.
        """
        if workflow_id is not None:
            check_name("workflow_id", workflow_id)
        defn = self._ensure_registered(workflow)
        await self._maybe_recover()
        result = await self.kernel.adispatch(
            RunCreate(
                workflow=defn.name,
                input=None if input is _MISSING else input,
                workflow_id=workflow_id,
                idempotency_key=idempotency_key,
                priority=priority,
                tags=tuple(tags),
                tenant=tenant,
                initial_state=initial_state,
            )
        )
        assert isinstance(result, RunCreated)
        return result.workflow_id

    def start(
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
    ) -> str:
        """Sync facade of `astart` (the run proceeds on the App's loop thread)."""
        return self._loop.run(
            self.astart(
                workflow,
                input,
                workflow_id=workflow_id,
                idempotency_key=idempotency_key,
                priority=priority,
                tags=tags,
                tenant=tenant,
                initial_state=initial_state,
            )
        )

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
    ) -> str:
        """Queue a run for workers and return its id at once.

        `concurrency_key` (an issue id, a customer) keeps two runs with the
        same key from executing at the same time across all workers; a higher
        `priority` is claimed first. Wait for it with `result`.
        """
        if workflow_id is not None:
            check_name("workflow_id", workflow_id)
        defn = self._ensure_registered(workflow)
        result = await self.kernel.adispatch(
            RunCreate(
                workflow=defn.name,
                input=None if input is _MISSING else input,
                workflow_id=workflow_id,
                queue=queue,
                idempotency_key=idempotency_key,
                priority=priority,
                concurrency_key=concurrency_key,
                tags=tuple(tags),
                tenant=tenant,
                initial_state=initial_state,
                max_attempts=max_attempts,
                run_after=run_after,
            )
        )
        assert isinstance(result, RunCreated)
        return result.workflow_id

    def submit(
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
    ) -> str:
        """Sync facade of `asubmit`."""
        return self._loop.run(
            self.asubmit(
                workflow,
                input,
                workflow_id=workflow_id,
                queue=queue,
                idempotency_key=idempotency_key,
                priority=priority,
                concurrency_key=concurrency_key,
                tags=tags,
                tenant=tenant,
                initial_state=initial_state,
                max_attempts=max_attempts,
                run_after=run_after,
            )
        )

    async def aresume(
        self, workflow_id: str, *, on_event: EventHook | None = None
    ) -> RunResult[Any]:
        """Drive a run of a workflow registered here until it ends or parks again."""
        await self._maybe_recover()
        return await self._runner.drive(workflow_id, on_event=on_event)

    def resume(self, workflow_id: str, *, on_event: EventHook | None = None) -> RunResult[Any]:
        return self._loop.run(self.aresume(workflow_id, on_event=on_event))

    async def arerun_from(
        self, workflow_id: str, step: str, *, on_event: EventHook | None = None
    ) -> RunResult[Any]:
        """Retry a finished run after a fix: forget `step` and every step recorded
        after it (earlier results are kept), then run it again from there.

        The run must have ended (completed or failed). It runs again here,
        until it ends or parks, with the workflow registered on this App; a
        queued run goes back to its queue for the workers instead, and this
        returns at once (wait with `result`).
        """
        run = await self.aget_run(workflow_id)
        if run.status not in (RunStatus.COMPLETED, RunStatus.FAILED):
            raise InvalidArgumentError(
                f"run {workflow_id!r} is {run.status.value}; rerun_from takes a run that has "
                "ended (completed or failed): wait for it, or cancel it first"
            )
        if run.queue is None:
            self.get_workflow(run.workflow_name)  # fail before changing anything
        await self.kernel.adispatch(RunRerunFrom(workflow_id=workflow_id, step=step))
        if run.queue is not None:
            return await self._runner.result_of(workflow_id, self._registry.get(run.workflow_name))
        return await self._runner.drive(workflow_id, on_event=on_event)

    def rerun_from(
        self, workflow_id: str, step: str, *, on_event: EventHook | None = None
    ) -> RunResult[Any]:
        """Sync facade of `arerun_from`."""
        return self._loop.run(self.arerun_from(workflow_id, step, on_event=on_event))

    async def aresult(self, workflow_id: str, timeout: float | None = None) -> RunResult[Any]:
        """Wait until the run reaches a terminal status; its result.

        On PostgreSQL the wait wakes on the run's notification, within
        milliseconds of its end; elsewhere it polls. Raises `TimeoutError` if
        the run has not ended within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            run = await self.aget_run(workflow_id)
            if run.status.terminal:
                defn = self._registry.get(run.workflow_name)
                return await self._runner.result_of(workflow_id, defn)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"run {workflow_id!r} is still {run.status.value} after {timeout:g}s"
                )
            # a notification may race our read: re-read at least every second
            await self.store.wait_for_change(
                f"run:{workflow_id}", 1.0 if left is None else min(1.0, left)
            )

    def result(self, workflow_id: str, timeout: float | None = None) -> RunResult[Any]:
        return self._loop.run(self.aresult(workflow_id, timeout))

    # -- resolving waits from outside -------------------------------------------------------

    async def asend_event(self, event_type: str, payload: Any = None) -> list[str]:
        """Send an event to every run waiting for it; kept for runs that wait later.

        Returns the ids of the runs it woke.
        """
        check_name("event_type", event_type)
        result = await self.kernel.adispatch(
            RunResume(kind="event", name=event_type, payload=payload)
        )
        assert isinstance(result, RunResumed)
        return result.woken

    def send_event(self, event_type: str, payload: Any = None) -> list[str]:
        return self._loop.run(self.asend_event(event_type, payload))

    async def asignal(self, workflow_id: str, name: str, payload: Any = None) -> bool:
        """Send signal `name` to a run; True if it woke the run, False if kept for later.

        A run woken here whose workflow is registered on this App continues in
        the background of this process (`resume_woken`), and is handed back
        at exit like a started run (see `start`); a queued run continues on
        a worker. Otherwise it waits, runnable, for `resume`, a worker or an
        App with `recover_orphans`.
        """
        check_name("workflow_id", workflow_id)
        check_name("signal name", name)
        result = await self.kernel.adispatch(
            RunResume(kind="signal", name=name, workflow_id=workflow_id, payload=payload)
        )
        assert isinstance(result, RunResumed)
        if result.woken:
            run = await self.aget_run(workflow_id)
            if not await self.adrivers(run.workflow_name) and not (
                self._runner.resume_woken and run.workflow_name in self._registry
            ):
                log.warning(
                    "run %s woke, but no live process drives workflow %r: it waits for "
                    "`tether runs resume`, a worker serving it, or an App with recover_orphans",
                    workflow_id,
                    run.workflow_name,
                )
        return bool(result.woken)

    def signal(self, workflow_id: str, name: str, payload: Any = None) -> bool:
        return self._loop.run(self.asignal(workflow_id, name, payload))

    async def acomplete_token(self, token_id: str, payload: Any = None) -> str:
        """Complete a token made by `wf.create_token()`; the id of the run it belongs to."""
        check_name("token_id", token_id)
        result = await self.kernel.adispatch(
            RunResume(kind="token", name=token_id, payload=payload)
        )
        assert isinstance(result, RunResumed) and result.workflow_id is not None
        return result.workflow_id

    def complete_token(self, token_id: str, payload: Any = None) -> str:
        return self._loop.run(self.acomplete_token(token_id, payload))

    async def afire_due_timers(self) -> list[str]:
        """Wake runs whose timers or wait timeouts are due; the ids woken."""
        result = await self.kernel.adispatch(TimersFire())
        assert isinstance(result, Woken)
        return result.woken

    def fire_due_timers(self) -> list[str]:
        return self._loop.run(self.afire_due_timers())

    async def acancel(
        self, workflow_id: str, reason: str | None = None, *, compensate: bool = False
    ) -> list[str]:
        """Cancel a run, its pending waits and the children it waits on; the ids cancelled.

        A step that finishes after this has its result discarded. With
        `compensate`, the compensations of completed steps run (here, if the
        workflow is registered; else when the run is next resumed).
        """
        check_name("workflow_id", workflow_id)
        result = await self.kernel.adispatch(
            RunCancel(workflow_id=workflow_id, reason=reason, compensate=compensate)
        )
        assert isinstance(result, RunCancelled)
        return result.cancelled

    def cancel(
        self, workflow_id: str, reason: str | None = None, *, compensate: bool = False
    ) -> list[str]:
        return self._loop.run(self.acancel(workflow_id, reason, compensate=compensate))

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
            run, generation=None, started=self.clock.now(), steps=steps, waits=waits
        )
        return Workflow(self._runtime, state, owns_store=owns_store)

    async def aget_record(self, workflow_id: str) -> RunRecord:
        """The full record of one run."""
        check_name("workflow_id", workflow_id)
        return await load_record(self.store, workflow_id)

    def get_record(self, workflow_id: str) -> RunRecord:
        return self._loop.run(self.aget_record(workflow_id))

    async def aget_run(self, workflow_id: str) -> RunInfo:
        """The run's row (status, owner, timestamps) without its history."""
        check_name("workflow_id", workflow_id)
        run = await self.store.get_run(workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        return RunInfo.from_row(run)

    async def alist_runs(
        self, *, status: RunStatus | str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs, newest first."""
        if status is not None:
            try:
                status = RunStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise InvalidArgumentError(
                    f"unknown run status {status!r}; known: {known}"
                ) from None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"limit must be an integer >= 1, got {limit!r}")
        return [RunInfo.from_row(r) for r in await self.store.list_runs(status=status, limit=limit)]

    def list_runs(
        self, *, status: RunStatus | str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        return self._loop.run(self.alist_runs(status=status, limit=limit))

    def get_run(self, workflow_id: str) -> RunInfo:
        return self._loop.run(self.aget_run(workflow_id))

    # -- orphans and shutdown ---------------------------------------------------------------

    async def arecover_orphans(self, *, grace: float = 5.0, limit: int = 100) -> list[str]:
        """Drive, in the background here, runs of this App's workflows that nobody
        drives: their owner died (its claim lapsed) or they sat runnable for more
        than `grace` seconds. The ids taken up; two processes never both drive one.
        """
        self._recover_pending = False
        if not self._registry:
            return []
        orphans = await self.store.orphaned_runs(
            sorted(self._registry), grace=grace, now=self.clock.store_time(), limit=limit
        )
        for run in orphans:
            self._runner.spawn(run.workflow_id)
        return [r.workflow_id for r in orphans]

    def recover_orphans(self, *, grace: float = 5.0, limit: int = 100) -> list[str]:
        """Sync facade of `arecover_orphans`."""
        return self._loop.run(self.arecover_orphans(grace=grace, limit=limit))

    async def _maybe_recover(self) -> None:
        self._runner.ensure_alive()
        if self._recover_pending:
            await self.arecover_orphans()

    async def adrivers(self, workflow_name: str) -> list[str]:
        """Live processes that drive runs of `workflow_name` (they announce the
        workflows they registered while they live: workers, and Apps that run
        or resume runs); empty when a woken run of it would wait for nobody."""
        return await self._runner.drivers(workflow_name)

    def drivers(self, workflow_name: str) -> list[str]:
        """Sync facade of `adrivers`."""
        return self._loop.run(self.adrivers(workflow_name))

    def announce(self) -> None:
        """Announce now (not only once a run is driven) that this process drives the
        workflows registered here; kept up while the App lives. Workers do this."""
        self._loop.run(self.aannounce())

    async def aannounce(self) -> None:
        """Async face of `announce`."""
        self._runner.ensure_alive()

    def drain(self) -> None:
        """Start no more steps: runs driven here hand themselves back at their
        next step boundary (a step in flight finishes and is recorded first)."""
        self._runner.begin_drain()

    async def aclose(self) -> None:
        """Stop gracefully: no new steps; steps in flight finish (up to
        `shutdown_grace` seconds) and are recorded; runs are handed back."""
        if self._closed:
            return
        self._closed = True
        await self._runner.shutdown(self.shutdown_grace)
        await self.store.close()

    def close(self) -> None:
        """Sync facade of `aclose`; also stops the App's loop thread."""
        if self._loop.loop is not None:
            self._loop.run(self.aclose())
            self._loop.stop()
        elif not self._closed:
            asyncio.run(self.aclose())

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def run_on_loop(app: App, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on `app`'s loop thread and wait for it: the sync face of a host
    built on an App (the serverless host), as the App's own sync methods do."""
    return app._loop.run(coro)


def _check_same_run(run: RunRow, defn: WorkflowDef, input_text: str | None) -> None:
    if run.workflow_name != defn.name:
        raise InvalidArgumentError(
            f"workflow id {run.workflow_id!r} already names a run of workflow "
            f"{run.workflow_name!r}, not {defn.name!r}; choose another workflow_id"
        )
    if input_text is not None and run.input is not None and input_text != run.input:
        raise InvalidArgumentError(
            f"run {run.workflow_id!r} was started with a different input; resume it without "
            "an input (the recorded one is used) or choose another workflow_id"
        )


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
