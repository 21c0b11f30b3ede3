"""`TenantApp`: the workflows a tenant serves, and one invocation's replay.

A tenant registers workflows the way an `App` does (the same `WorkflowDef`)
but keeps no database, so it is not an `App`: an `App` opens a store, renews
claims, runs timers and workers, none of which a tenant may do. Each
invocation replays the body with tether's own `Workflow` on a `JournalStore`
(see `_journal`), so steps, retries, waits, children, recorded values and
compensations behave exactly as they do in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast, overload

from pydantic import ValidationError

from .._compensation import compensate
from .._control import Suspend
from .._failure import ErrorRecord, storable
from .._results import dump_result
from .._run_state import RunState
from .._runtime import Runtime
from .._step_threads import StepThreads
from .._workflow import Workflow
from ..clock import Clock, SystemClock
from ..definition import DEF_ATTR, WorkflowDef
from ..errors import InvalidArgumentError, RunCancelledError, TetherError, explain_validation
from ..serde import load_json, return_type_of
from ..store import RunRow, RunStatus, StepRow, StepStatus, Store, WaitKind, WaitRow, WaitStatus
from ._journal import JournalHost, JournalStore, Send
from ._wire import Answer, Invocation, Journal

__all__ = ["TenantApp", "execute", "served_versions"]

log = logging.getLogger("tether.remote")

F = TypeVar("F", bound=Callable[..., Any])


class TenantApp:
    """The workflows a tenant service runs for a remote orchestrator.

    `secret` (or several, to rotate) signs every invocation; a request is
    accepted within `tolerance` seconds of its timestamp, once. Serve it with
    ``tether.remote.handler(tenant)``. `clock` is the workflows' clock (a
    `FakeClock` in tests); signatures and deadlines are checked against the wall
    clock, the time tenant and orchestrator share.
    """

    def __init__(
        self,
        *,
        secret: str | Sequence[str],
        tolerance: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        if not secrets or not all(isinstance(s, str) and s for s in secrets):
            raise InvalidArgumentError("TenantApp needs a non-empty secret (or several)")
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance <= 0:
            raise InvalidArgumentError(f"tolerance must be > 0 seconds, got {tolerance!r}")
        self.secrets = secrets
        self.tolerance = float(tolerance)
        self.clock: Clock = clock or SystemClock()
        self.threads = StepThreads()
        self._registry: dict[str, WorkflowDef] = {}

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
    ) -> Callable[[F], F]: ...

    def workflow(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
    ) -> Any:
        """Register an ``async def fn(wf, input)`` to serve, as `App.workflow` does.

        An invocation for another `version` than this one or those in
        `compatible` is refused with the versions served.
        """

        def register(f: F) -> F:
            defn = WorkflowDef.make(f, name=name, version=version, compatible=compatible)
            known = self._registry.get(defn.name)
            if known is not None and known.fn is not f:
                raise InvalidArgumentError(
                    f"a different workflow is already registered as {defn.name!r}"
                )
            self._registry[defn.name] = defn
            with contextlib.suppress(AttributeError, TypeError):
                setattr(f, DEF_ATTR, defn)
            return f

        return register(fn) if fn is not None else register

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        return dict(self._registry)


def _run_row(inv: Invocation, now: datetime) -> RunRow:
    return RunRow(
        workflow_id=inv.run_id, workflow_name=inv.workflow, workflow_version=inv.version,
        status=RunStatus.RUNNING, input=inv.input, output=None, error=None,
        state="null" if inv.state is None else inv.state,
        priority=0, tags=tuple(inv.run.tags), tenant=inv.tenant.tenant,
        parent_id=inv.run.parent_id, idempotency_key=None, owner=None,
        generation=inv.run.generation, created_at=inv.run.created_at or now, updated_at=now,
        started_at=now, finished_at=None, queue=inv.run.queue, step_rule=inv.run.step_rule,
        attempt=inv.run.attempt,
    )  # fmt: skip


def _state(inv: Invocation, now: datetime) -> RunState:
    """The drive's state loaded from the journal, as a drive loads it from a store."""
    steps = [
        StepRow(inv.run_id, s.key, s.name, StepStatus.COMPLETED, s.attempts, s.idempotency_key,
                s.result, None, now, now, now)
        for s in [*inv.journal.steps, *inv.journal.compensations]
    ]  # fmt: skip
    done = {s.key for s in steps}
    steps += [  # attempts made in earlier invocations: the count goes on from them
        StepRow(inv.run_id, a.key, a.key, StepStatus(a.status), a.attempts, a.idempotency_key,
                None, a.error, now, None, now)
        for a in inv.journal.attempts if a.key not in done
    ]  # fmt: skip
    waits = [
        WaitRow(w.key, inv.run_id, w.key, WaitKind(w.kind), None, None, WaitStatus(w.status),
                w.payload, None, now, now)
        for w in inv.journal.waits
    ]  # fmt: skip
    st = RunState.open(
        _run_row(inv, now),
        generation=inv.invocation,
        started=now,
        steps=steps,
        waits=waits,
        compensating=inv.mode == "compensate",
    )
    st.resumes_back_offs = False  # an invocation's deadline would cut it every time
    return st


async def execute(
    tenant: TenantApp, defn: WorkflowDef, inv: Invocation, send: Send, *, room: int | None = None
) -> Answer:
    """Replay `defn`'s body against the invocation's journal; how it ended.

    In a context of its own, as in a process of its own: an in-process transport calls
    this inside the orchestrator's step, whose context names what runs in it under
    that step (and holds its mutexes, collects its rows): the body's steps took that
    name, and were not found in the journal."""
    body = _execute(tenant, defn, inv, send, room=room)
    return await asyncio.create_task(body, context=contextvars.Context())


async def _execute(
    tenant: TenantApp, defn: WorkflowDef, inv: Invocation, send: Send, *, room: int | None = None
) -> Answer:
    """Replay `defn`'s body against the invocation's journal; how it ended.

    Steps completed here go out through `send` as they complete, and only there (the
    answer carries none of them again). A step whose result would
    make the next invocation grow by more than `room` bytes fails for good
    (`RemoteTooLargeError`).
    """
    store = JournalStore(
        inv.run_id, send, prior=inv.journal.attempts, accepts=inv.accepts, room=room
    )
    rt = Runtime(cast(Store, store), tenant.clock, threads=tenant.threads)
    st = _state(inv, tenant.clock.now())
    wf = Workflow(rt, st, host=JournalHost(store, send))
    try:
        args = _args(defn, inv.input, wf)
    except InvalidArgumentError as exc:  # the run's input: its failure
        return _answer("failed", error=_error(exc))
    if inv.mode == "compensate":
        return await _compensate_cancelled(defn, args, inv, wf, st)
    try:
        value = await defn.call(*args)
        output = dump_result(value, what=f"the result of workflow {defn.name!r}",
                             tp=return_type_of(defn.fn))  # fmt: skip
        return _answer("completed", output=output)
    except Suspend:
        waitpoints = [store.waitpoint(k) for k in st.pending_waits() if k in store.waits]
        return _answer("waiting", waitpoints=waitpoints)
    except RunCancelledError:
        return _answer("cancelled")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = _error(exc)
        if not st.compensations:
            return _answer("failed", error=error)
        ok = await compensate(wf, st)
        status = "compensated" if ok else "compensation_failed"
        return _answer(status, error=error)


async def _compensate_cancelled(
    defn: WorkflowDef,
    args: tuple[Any, ...],
    inv: Invocation,
    wf: Workflow,
    st: RunState,
) -> Answer:
    """The run was cancelled with compensation: replay the body against the journal to
    learn the compensations of its completed steps (the first step that did not
    complete stops it), then run them newest first, each streamed as it completes;
    those the journal already holds are not run again."""
    try:
        await defn.call(*args)
    except (RunCancelledError, Suspend):
        pass
    except Exception as exc:  # the replay failed on its own: compensate what it learned
        log.debug("replay for compensation of %s stopped: %r", inv.run_id, exc)
    st.begin_compensation()
    if not st.compensations:
        return _answer("cancelled")
    ok = await compensate(wf, st)
    return _answer("compensated" if ok else "compensation_failed")


def _args(defn: WorkflowDef, given: str | None, wf: Workflow) -> tuple[Any, ...]:
    """The body's arguments from the run's input (`given`, JSON text); an
    `InvalidArgumentError` when it does not fit the tenant's function: not a fault of
    the tenant (retrying would never help), so the run fails at once, saying why. An
    input given to a function without the parameter was dropped, and a missing one
    reached the body as None, where a run in-process is refused either way."""
    if not defn.takes_input:
        if given is not None:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} on the tenant takes no input (its function has one "
                "parameter, the Workflow), and the run was started with one: start it "
                "without an input, or add a parameter to the tenant's function"
            )
        return (wf,)
    if given is None:
        if defn.input_required:
            raise InvalidArgumentError(
                f"workflow {defn.name!r} on the tenant takes an input, and the run was "
                "started without one: start it with one (app.run(workflow, input))"
            )
        return (wf,)
    try:
        return (wf, load_json(given, defn.input_type))
    except RecursionError:  # it aborted the invocation ("executor error"), retried to the cap
        raise InvalidArgumentError(
            f"the input does not fit workflow {defn.name!r} on the tenant: it is nested too "
            "deep to parse; start the run again with an input of the type its function declares"
        ) from None
    except (ValidationError, TetherError, ValueError) as exc:
        why = explain_validation(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidArgumentError(
            f"the input does not fit workflow {defn.name!r} on the tenant: {why}; start the "
            "run again with an input of the type its function declares"
        ) from None


def _error(exc: BaseException) -> dict[str, Any]:
    """The failure as the answer carries it, in text the orchestrator can store: a
    lone surrogate could not even be encoded (the stream broke off and the
    invocation was retried up to its cap)."""
    return cast(dict[str, Any], storable(ErrorRecord.of(exc).to_dict()))


def _answer(status: str, **fields: Any) -> Answer:
    """The answer line's answer. Its journal is empty: every step, value and
    compensation completed here went in a line of its own as it completed, and the
    rest the orchestrator sent (it rebuilds its state from those lines and its
    database, reading no answer's journal). It repeated the whole journal, so each
    invocation answered with everything the run had done: a run of n invocations
    sent O(n^2) bytes back."""
    return Answer(status=status, journal=Journal(), **fields)  # type: ignore[arg-type]


def served_versions(defn: WorkflowDef) -> list[str | None]:
    """The workflow versions a tenant's `defn` answers for."""
    return [defn.version, *defn.compatible]
