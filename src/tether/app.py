"""App: a workflow registry bound to a store, and the functional entry points.

The engine is async; every sync method here drives the async one of the same
name with an ``a`` prefix (``run`` -> ``arun``) on the App's own loop thread,
so there is one body, not two.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from ._loop import LoopThread
from .clock import Clock, SystemClock
from .errors import InvalidArgumentError, NotSerializableError, RunNotFoundError
from .record import RunRecord
from .serde import dump_json, load_json, return_type_of
from .store import Durability, NewEvent, NewRun, RunRow, RunStatus, Store, open_store
from .workflow import EventHook, Runtime, Workflow, error_json, load_record

__all__ = ["App", "RunResult", "WorkflowDef", "open_workflow", "run_workflow"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = object()
_DEF_ATTR = "__tether_workflow__"


@dataclass(frozen=True)
class WorkflowDef:
    """A workflow definition: a function registered under a name and a version."""

    name: str
    version: str | None
    fn: Callable[..., Awaitable[Any]]

    @property
    def takes_input(self) -> bool:
        return len(_positional(self.fn)) >= 2

    @property
    def input_type(self) -> Any:
        params = _positional(self.fn)
        if len(params) < 2:
            return None
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:
            return None
        return hints.get(params[1].name)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> WorkflowDef:
        """The definition attached by ``@app.workflow``, or one derived from `fn`."""
        found = getattr(fn, _DEF_ATTR, None)
        if isinstance(found, WorkflowDef):
            return found
        if not callable(fn):
            raise InvalidArgumentError(f"a workflow must be an async function, got {fn!r}")
        if not inspect.iscoroutinefunction(fn):
            raise InvalidArgumentError(
                f"workflow {getattr(fn, '__qualname__', fn)!r} must be an `async def` "
                "function taking a tether.Workflow first"
            )
        return cls(fn.__qualname__, None, fn)


def _positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


@dataclass(frozen=True)
class RunResult(Generic[T]):
    """What a run returned, and its record as it stands after the run."""

    value: T
    record: RunRecord

    @property
    def workflow_id(self) -> str:
        return self.record.workflow_id

    @property
    def status(self) -> RunStatus:
        return self.record.status


class App:
    """Workflows registered on one store.

    ``database_url=None`` uses $TETHER_DATABASE_URL, else
    ``sqlite:///.tether/tether.db`` in the working directory. `durability`
    ("full" by default, or "normal") trades power-cut safety of the last
    completed steps for speed on SQLite. `clock` injects time (tests pass
    `tether.testing.FakeClock`).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        clock: Clock | None = None,
        durability: str | Durability | None = None,
        store: Store | None = None,
    ) -> None:
        self.store: Store = store or open_store(database_url, durability=durability)
        self.clock: Clock = clock or SystemClock()
        self._runtime = Runtime(self.store, self.clock)
        self._registry: dict[str, WorkflowDef] = {}
        self._loop = LoopThread()

    # -- registry -------------------------------------------------------------------

    @overload
    def workflow(self, fn: F, /) -> F: ...

    @overload
    def workflow(
        self, fn: None = None, /, *, name: str | None = None, version: str | None = None
    ) -> Callable[[F], F]: ...

    def workflow(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str | None = None,
    ) -> Any:
        """Register an ``async def fn(wf, input)`` as a workflow (usable bare or called)."""

        def register(f: F) -> F:
            if not inspect.iscoroutinefunction(f):
                raise InvalidArgumentError(
                    f"@app.workflow needs an `async def` function, got {f!r}"
                )
            defn = WorkflowDef(name or f.__qualname__, version, f)
            existing = self._registry.get(defn.name)
            if existing is not None and existing.fn is not f:
                raise InvalidArgumentError(
                    f"a different workflow is already registered as {defn.name!r}; "
                    "pass name= to tell them apart"
                )
            self._registry[defn.name] = defn
            setattr(f, _DEF_ATTR, defn)
            return f

        return register(fn) if fn is not None else register

    def get_workflow(self, name: str) -> WorkflowDef:
        from .errors import WorkflowNotFoundError

        try:
            return self._registry[name]
        except KeyError:
            known = ", ".join(sorted(self._registry)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow registered as {name!r} (registered: {known})"
            ) from None

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        return dict(self._registry)

    # -- running ----------------------------------------------------------------------

    async def arun(
        self,
        workflow: Callable[..., Awaitable[T]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        initial_state: Any = None,
        on_event: EventHook | None = None,
    ) -> RunResult[T]:
        """Run (or resume) a workflow to its end in this process.

        The same `workflow_id` always names the same run: running it again
        resumes it, completed steps answering from the record. `initial_state`
        applies only when the run is created.
        """
        defn = WorkflowDef.of(workflow)
        wid = workflow_id or f"{defn.name}-{uuid.uuid4().hex[:12]}"
        if not isinstance(wid, str) or not wid.strip():
            raise InvalidArgumentError(f"workflow_id must be a non-empty string, got {wid!r}")
        if input is not _MISSING and not defn.takes_input:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes no input (its function has one parameter, "
                "the Workflow); drop the input or add a parameter"
            )
        input_text = (
            None
            if input is _MISSING
            else dump_json(input, what=f"the input of workflow {defn.name!r}", tp=defn.input_type)
        )
        state_text = dump_json(initial_state, what="initial_state")
        run, created = await self.store.create_run(
            NewRun(
                workflow_id=wid,
                workflow_name=defn.name,
                workflow_version=defn.version,
                input=input_text,
                state=state_text,
            ),
            self.clock.now(),
        )
        if not created:
            _check_same_run(run, defn, input_text)
        if defn.takes_input and run.input is None and input is _MISSING:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} takes an input and run {wid!r} has none recorded; pass one"
            )
        wf = await self._claim(run.workflow_id, on_event)
        args: tuple[Any, ...] = (wf,)
        if defn.takes_input:
            args = (wf, input if input is not _MISSING else load_json(run.input, defn.input_type))
        value = await self._drive(wf, defn, args)
        return RunResult(value, await self.aget_record(wid))

    def run(
        self,
        workflow: Callable[..., Awaitable[T]],
        input: Any = _MISSING,
        *,
        workflow_id: str | None = None,
        initial_state: Any = None,
        on_event: EventHook | None = None,
    ) -> RunResult[T]:
        """Sync facade of `arun`."""
        return self._loop.run(
            self.arun(
                workflow,
                input,
                workflow_id=workflow_id,
                initial_state=initial_state,
                on_event=on_event,
            )
        )

    async def _claim(self, workflow_id: str, on_event: EventHook | None) -> Workflow:
        run = await self.store.claim_run(
            workflow_id, self._runtime.owner, self.clock.now(), NewEvent("workflow.running")
        )
        steps = await self.store.load_steps(workflow_id)
        wf = Workflow(self._runtime, run, generation=run.generation, steps=steps, on_event=on_event)
        wf._emit("workflow.running")
        return wf

    async def _drive(self, wf: Workflow, defn: WorkflowDef, args: tuple[Any, ...]) -> Any:
        fence = wf._fence
        try:
            value = await defn.fn(*args)
            output = dump_json(
                value,
                what=f"the result of workflow {defn.name!r}",
                tp=return_type_of(defn.fn),
            )
        except Exception as exc:
            if isinstance(exc, NotSerializableError) or not _is_stale(exc):
                await self.store.finish_run(
                    fence,
                    RunStatus.FAILED,
                    output=None,
                    error=error_json(exc),
                    at=self.clock.now(),
                    event=NewEvent("workflow.failed", f"{type(exc).__name__}: {exc}"),
                )
                wf._emit("workflow.failed", str(exc))
            raise
        await self.store.finish_run(
            fence,
            RunStatus.COMPLETED,
            output=output,
            error=None,
            at=self.clock.now(),
            event=NewEvent("workflow.completed"),
        )
        wf._emit("workflow.completed")
        return value

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
        if not isinstance(workflow_id, str) or not workflow_id.strip():
            raise InvalidArgumentError(
                f"workflow_id must be a non-empty string, got {workflow_id!r}"
            )
        run, _ = await self.store.create_run(
            NewRun(
                workflow_id=workflow_id,
                workflow_name=workflow_name or workflow_id,
                state=dump_json(initial_state, what="initial_state"),
            ),
            self.clock.now(),
        )
        steps = await self.store.load_steps(workflow_id)
        return Workflow(self._runtime, run, generation=None, steps=steps)

    async def aget_record(self, workflow_id: str) -> RunRecord:
        """The full record of one run."""
        return await load_record(self.store, workflow_id)

    def get_record(self, workflow_id: str) -> RunRecord:
        return self._loop.run(self.aget_record(workflow_id))

    async def aget_run(self, workflow_id: str) -> RunRow:
        """The run's row (status, owner, timestamps) without its history."""
        run = await self.store.get_run(workflow_id)
        if run is None:
            raise RunNotFoundError(workflow_id)
        return run

    async def alist_runs(
        self, *, status: RunStatus | str | None = None, limit: int = 100
    ) -> list[RunRow]:
        """Runs, newest first."""
        if status is not None:
            try:
                status = RunStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise InvalidArgumentError(
                    f"unknown run status {status!r}; known: {known}"
                ) from None
        if limit < 1:
            raise InvalidArgumentError(f"limit must be >= 1, got {limit!r}")
        return await self.store.list_runs(status=status, limit=limit)

    def list_runs(self, *, status: RunStatus | str | None = None, limit: int = 100) -> list[RunRow]:
        return self._loop.run(self.alist_runs(status=status, limit=limit))

    async def aclose(self) -> None:
        await self.store.close()

    def close(self) -> None:
        if self._loop.loop is not None:
            self._loop.run(self.aclose())
            self._loop.stop()
        else:
            asyncio.run(self.aclose())

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _is_stale(exc: BaseException) -> bool:
    from .errors import StaleOwnerError

    return isinstance(exc, StaleOwnerError)


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
        wf = await app.aopen(workflow_id, initial_state=initial_state)
    except BaseException:
        await app.aclose()
        raise
    wf._owns_store = True
    return wf
