"""Executing a step that the record cannot answer: attempts, retries, recording.

`Workflow.step` answers a completed step from the run's record itself; only a
step that must run reaches `StepExecutor.execute`. One attempt is: count it
and mark the step running (`start_step`), call the function (through the
interceptor chain, if any), then record the result (`complete_step`) or the
failure (`fail_step`) and retry as the policy says.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import types
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._attach import collecting
from ._control import HandBack, StepExited
from ._failure import attribute_of, decode_error, encode_error, error_text, revived
from ._interceptors import StepCall, intercepted
from ._iso_time import from_iso, iso_z
from ._mutex_guard import holds_any_mutex
from ._results import load_result, recorded_result
from ._run_state import NAME_SCOPE, RunState
from ._runtime import Runtime
from ._step_threads import StepThreads
from .errors import (
    RunCancelledError,
    StaleOwnerError,
    StepFailedError,
    StepTimeoutError,
    StoreError,
    TetherError,
)
from .retry import RetryPolicy
from .serde import dump_json, load_json
from .store import Fence, NewEvent, StepRow, StepStatus

__all__ = ["StepContext", "StepExecutor", "StepSpec", "check_depth", "is_async", "wants_context"]

COMPLETION_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # seconds, ~6 s in all
# frames kept free below a step for recording its attempt (a store write, the traceback
# of its error: 20 to 40 deep): a step called with fewer left is refused (`check_depth`)
RECORDING_HEADROOM = 120
MAX_RETRY_AFTER = 3600.0  # seconds: the longest wait a failure's `retry_after` may ask for

log = logging.getLogger("tether")

# a retry back-off this long (seconds) or longer, of a run a worker drives for its job,
# hands the run back to its queue until the next attempt is due instead of holding one of
# the worker's slots (shorter ones are waited out in place: a hand-back and a claim cost
# a few round trips)
QUEUE_BACK_OFFS_FROM = 5.0

# the steps with a timeout whose function this code runs in (an async step calling steps
# of its own): their key, timeout and `asyncio.timeout`, innermost last
_ENCLOSING: ContextVar[tuple[tuple[str, float, asyncio.Timeout], ...]] = ContextVar(
    "tether_enclosing_timeouts", default=()
)


def _being_stopped() -> bool:
    """Whether the task driving the step is being cancelled (a stop, a grace run out, a
    cancelled caller), as against a step function that raised CancelledError itself."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class StepCancelledItself(Exception):
    """A step function raised `asyncio.CancelledError` of its own accord (nothing was
    stopping the run): recorded as the attempt's failure. As a cancel it reached the
    caller of `app.run` as a CancelledError, and handed the run back, to do the same at
    every resume."""

    def __init__(self, step: str) -> None:
        super().__init__(
            f"step {step!r} raised asyncio.CancelledError though nothing cancelled the run "
            "(a library it calls re-raised one?); catch it there, or raise an ordinary "
            "exception to fail the step (its retry policy applies)"
        )


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step function that accepts one argument."""

    name: str
    attempt: int
    max_attempts: int
    workflow_id: str


@dataclass(slots=True)  # not frozen: a frozen one's __init__ cost ~1 µs a step more
class StepSpec:
    """A step to execute: what `Workflow.step` was called with, resolved (never changed)."""

    key: str  # its identity in the record
    name: str  # as called
    fn: Callable[..., Any]
    idempotency_key: str | None
    policy: RetryPolicy
    tp: Any  # the declared result type, or None
    timeout: float | None
    settled: bool = False  # its value was obtained elsewhere: record it even while draining


class StepExecutor:
    """Runs steps of one drive of a run and records their attempts."""

    def __init__(self, rt: Runtime, run: RunState) -> None:
        self._rt = rt
        self._run = run

    async def execute(self, spec: StepSpec) -> Any:
        """Run the step until it succeeds or its attempts are used up; its result as
        every replay will return it. Called with the step's lock held."""
        run = self._run
        check_depth(f"step {spec.key!r}", run.workflow_id)
        row = run.steps.get(spec.key)
        mine = row is not None and row.idempotency_key == spec.idempotency_key
        if mine and row is not None and row.status is StepStatus.COMPLETED:
            return load_result(row.result, spec.tp)  # it finished while we waited
        prior = _attempts_left(spec, row if mine else None)
        if mine and row is not None and row.status is StepStatus.FAILED and run.resumes_back_offs:
            # an earlier drive failed an attempt and handed the run back (or died) in
            # the back-off before the next: the rest of it is waited out here
            due = _retry_due(row)
            if due is not None and due > self._rt.clock.now():
                await self._back_off(due)
        with_ctx, asynchronous = wants_context(spec.fn), is_async(spec.fn)
        while True:
            if self._rt.draining and not spec.settled:  # shutting down: start nothing new
                raise run.unwind(HandBack())
            row = await self._start(spec, prior + 1)
            with collecting() as rows:  # what the attempt attaches (its AI calls)
                try:
                    try:
                        result = await self._attempt(spec, row.attempts, with_ctx, asynchronous)
                    except RunCancelledError:  # a step of its own found the run cancelled
                        raise
                    except asyncio.CancelledError as exc:
                        if run.interrupting and run.interrupted():
                            raise await self._record_cancelled(spec, row, rows) from exc
                        if _being_stopped():
                            await self._record_cut_short(spec, row, rows)
                            raise
                        raise StepCancelledItself(spec.key) from exc
                    except (KeyboardInterrupt, SystemExit) as exc:
                        run.in_flight.pop(spec.key, None)
                        raise StepExited(spec.key, exc) from exc
                except Exception as exc:
                    if run.interrupting and run.interrupted():  # it turned the cancel into
                        raise await self._record_cancelled(spec, row, rows) from exc  # its own
                    retryable = spec.policy.retries(exc)
                    again = retryable and row.attempts < spec.policy.attempts
                    due = self._due(_backoff(spec.policy, row.attempts, exc)) if again else None
                    await self._record_failure(spec, row, exc, retryable, due, rows)
                    if due is None:
                        raise
                    await self._back_off(due)
                    prior = row.attempts
                    continue
                if run.interrupting and run.interrupted():  # it caught the cancel, returned
                    raise await self._record_cancelled(spec, row, rows)
            try:
                return await self._record_result(spec, row, result, rows)
            except RunCancelledError as exc:  # the cancel landed as it ran: refused
                raise await self._record_cancelled(spec, row, rows) from exc

    async def _record_cancelled(
        self, spec: StepSpec, row: StepRow, rows: list[Any]
    ) -> RunCancelledError:
        """Record the step the run's cancel cut short (stopped, or its result refused)
        failed for good, with what its attempt attached: its AI calls, answered and
        billed, went with the refused write, and the log, usage and budgets counted
        less than was spent. Written under the cancel's fence (a cancelled run's writes
        are refused otherwise). The error to raise: the run ends cancelled."""
        run = self._run
        run.in_flight.pop(spec.key, None)
        exc = TetherError(f"step {spec.key!r} was cut short by the cancel of run "
                          f"{run.workflow_id!r}; a result it returns since is discarded")  # fmt: skip
        try:
            await self._rt.store.fail_step(
                Fence(run.workflow_id, run.fence.generation, compensating=True),
                spec.key,
                error=encode_error(exc, retryable=False),
                final=True,
                at=self._rt.clock.now(),
                event=NewEvent("step.failed", spec.key, '{"cut_short":true}'),
                rows=tuple(rows),
            )
        except (StoreError, RunCancelledError) as err:  # the run's end matters more
            log.warning("could not record step %r of cancelled run %s as cut short: %s",
                        spec.key, run.workflow_id, err)  # fmt: skip
        else:
            run.emit("step.failed", spec.key, {"attempt": row.attempts})
            self._emit_attached(rows)
        return RunCancelledError(run.workflow_id)

    def _due(self, pause: float) -> datetime:
        """When an attempt `pause` seconds from now is due (a pause past the calendar,
        from a policy without a cap, is the calendar's end)."""
        now = self._rt.clock.now()
        try:
            return now + timedelta(seconds=pause)
        except OverflowError:
            return datetime.max.replace(tzinfo=UTC)

    async def _back_off(self, due: datetime) -> None:
        """Wait until a step's next attempt is `due`: here, or, where the run is driven for
        a worker's job, by handing it back to the queue until then when the wait is long
        enough to be worth a worker's slot and nothing else of the run is under way (its
        code awaits the step itself, no other step runs, it holds no mutex)."""
        run = self._run
        pause = max(0.0, (due - self._rt.clock.now()).total_seconds())
        if (
            run.job_drive
            and pause >= QUEUE_BACK_OFFS_FROM
            and not run.in_flight
            and asyncio.current_task() is run.driver
            and not holds_any_mutex()
        ):
            raise run.unwind(HandBack(not_before=due))
        if pause > 0:  # (recording the failure may have taken it all)
            await self._rt.rest(run.workflow_id, pause)

    async def _start(self, spec: StepSpec, attempt: int) -> StepRow:
        row = await self._rt.store.start_step(
            self._run.fence,
            spec.key,
            idempotency_key=spec.idempotency_key,
            at=self._rt.clock.now(),
            event=NewEvent("step.started", spec.key, f'{{"attempt":{attempt}}}'),
        )
        self._run.steps[spec.key] = row
        self._run.emit("step.started", spec.key, {"attempt": row.attempts})
        return row

    async def _attempt(
        self, spec: StepSpec, attempt: int, with_ctx: bool, asynchronous: bool
    ) -> Any:
        """Call the step function once (through the interceptors, if any)."""
        run = self._run
        args = (
            (StepContext(spec.key, attempt, spec.policy.attempts, run.workflow_id),)
            if with_ctx
            else ()
        )
        run.in_flight[spec.key] = asyncio.current_task() if asynchronous else None
        # the steps (waits, values) the function calls are named under this one (its key
        # holds the scope it was called in): a replay that answers it from the record
        # calls none of them, and must not shift the numbers of later calls of their names
        scope = NAME_SCOPE.set(f"{spec.key}/") if run.nests else None
        try:
            if not self._rt.interceptors:  # the common path: no chain, no extra frames
                if spec.timeout is None:
                    result = await _call_step(spec.fn, args, asynchronous, self._rt.threads)
                else:
                    result = await self._timed(spec, args, asynchronous)
            else:
                call = StepCall(
                    run.workflow_id,
                    run.run.workflow_name,
                    spec.name,
                    spec.key,
                    attempt,
                    spec.policy.attempts,
                    spec.idempotency_key,
                )
                inner = functools.partial(self._timed, spec, args, asynchronous)
                result = await intercepted(self._rt.interceptors, call, inner)
        except Exception:
            run.in_flight.pop(spec.key, None)
            raise
        finally:
            if scope is not None:
                NAME_SCOPE.reset(scope)
        # not on cancellation: a step cut short at shutdown is reported as interrupted
        run.in_flight.pop(spec.key, None)
        return result

    async def _timed(self, spec: StepSpec, args: tuple[Any, ...], asynchronous: bool) -> Any:
        if spec.timeout is None:
            return await _call_step(spec.fn, args, asynchronous, self._rt.threads)
        cut = asyncio.timeout(spec.timeout)
        try:
            async with cut:
                token = _ENCLOSING.set((*_ENCLOSING.get(), (spec.key, spec.timeout, cut)))
                try:
                    result = await _call_step(spec.fn, args, asynchronous, self._rt.threads)
                finally:
                    _ENCLOSING.reset(token)
        except TimeoutError as exc:
            if not cut.expired():  # the function's own (a socket's, a client's): its error
                raise
            raise StepTimeoutError(spec.key, spec.timeout) from exc
        if cut.expired():
            # an async function that caught its cancellation and returned anyway, late:
            # timed out, as a sync one's late result is (before: recorded as completed,
            # however late). One that never returns cannot be stopped: it is waited for
            raise StepTimeoutError(spec.key, spec.timeout)
        return result

    async def _record_cut_short(self, spec: StepSpec, row: StepRow, rows: list[Any]) -> None:
        """A step called from an enclosing step's function, cancelled because that step
        ran past its timeout, failed with it: record it so (it stayed `running` in the
        record for good, in a run that went on or ended). Any other cancellation (a
        shutdown, a cancelled run) leaves it interrupted, to run again on resume."""
        cut = next(((k, t) for k, t, cm in reversed(_ENCLOSING.get()) if cm.expired()), None)
        if cut is None:
            return
        self._run.in_flight.pop(spec.key, None)
        exc = StepTimeoutError(*cut)
        try:
            await asyncio.shield(self._record_failure(spec, row, exc, True, None, rows))
        except Exception as err:  # the cancellation goes on; the step reads as interrupted
            log.warning("recording step %r as cut short failed: %s", spec.key, err)

    async def _record_failure(
        self,
        spec: StepSpec,
        row: StepRow,
        exc: Exception,
        retryable: bool,
        due: datetime | None,
        rows: list[Any],
    ) -> None:
        """Record a failed attempt; `due`: when the next attempt is (None: the step
        fails), recorded, so that the back-off outlives this process."""
        now = self._rt.clock.now()
        detail: dict[str, Any] = {
            "attempt": row.attempts,
            "error": f"{type(exc).__name__}: {error_text(exc)}",
        }
        if due is not None:
            detail["retry_at"] = iso_z(due)
        err = encode_error(exc, retryable=retryable, retry_at=detail.get("retry_at"))
        what = "step.failed" if due is None else "step.retrying"
        await self._rt.store.fail_step(
            self._run.fence,
            spec.key,
            error=err,
            final=due is None,
            at=now,
            event=NewEvent(what, spec.key, dump_json(detail, what="event detail")),
            rows=tuple(rows),
        )
        self._run.steps[spec.key] = _ended(row, StepStatus.FAILED, row.result, err, None)
        self._run.emit(what, spec.key, {"attempt": row.attempts})
        self._emit_attached(rows)

    async def _record_result(
        self, spec: StepSpec, row: StepRow, result: Any, rows: list[Any]
    ) -> Any:
        attempt = row.attempts
        try:
            text, value = recorded_result(
                result, what=f"the result of step {spec.key!r}", tp=spec.tp
            )
        except Exception as exc:
            await self._rt.store.fail_step(
                self._run.fence,
                spec.key,
                error=encode_error(exc, retryable=False),
                final=True,
                at=self._rt.clock.now(),
                event=NewEvent("step.failed", spec.key, f'{{"attempt":{attempt}}}'),
                rows=tuple(rows),
            )
            self._run.emit("step.failed", spec.key, {"attempt": attempt})
            self._emit_attached(rows)
            raise
        now = self._rt.clock.now()
        await self._record_completion(spec.key, text, now, attempt, tuple(rows))
        self._run.steps[spec.key] = _ended(row, StepStatus.COMPLETED, text, row.error, now)
        self._run.emit("step.completed", spec.key, {"attempt": attempt})
        self._emit_attached(rows)
        return value  # what every replay will return

    def _emit_attached(self, rows: list[Any]) -> None:
        """Tell the run's listener of the events the attempt wrote with its outcome."""
        if self._run.on_event is None:
            return
        for r in rows:
            if isinstance(r, NewEvent):
                self._run.emit(r.type, r.message, None if r.detail is None else load_json(r.detail))

    async def _record_completion(
        self, key: str, text: str, at: datetime, attempt: int, rows: tuple[Any, ...]
    ) -> None:
        """Write the step's completion; a database blip here is retried, not given up:
        the side effect is done and its result is in hand, and losing it would make
        the step run again."""
        event = NewEvent("step.completed", key, f'{{"attempt":{attempt}}}')
        for delay in (*COMPLETION_RETRIES, None):
            try:
                await self._rt.store.complete_step(
                    self._run.fence, key, result=text, at=at, event=event, rows=rows
                )
                return
            except StaleOwnerError:
                raise  # another owner has the run: not ours to record
            except StoreError as exc:
                if delay is None:
                    raise
                log.warning(
                    "recording step %r of run %s failed (%s); retrying",
                    key,
                    self._run.workflow_id,
                    exc,
                )
                await asyncio.sleep(delay)


def check_depth(what: str, workflow_id: str) -> None:
    """Refuse, with a `RecursionError` that says why, to start `what` (a step, a write
    of the run) so deep in the stack (steps called from steps, child runs from child
    runs) that its recording could reach Python's recursion limit: a RecursionError
    raised inside a store write left the step `running` for good. Refused before it
    starts, it is its caller's failure (an enclosing step's, the run's), recorded
    there, shallower, like any other."""
    limit = sys.getrecursionlimit()
    try:
        sys._getframe(max(limit - RECORDING_HEADROOM, limit // 2))
    except ValueError:
        return  # not that deep: room enough
    raise RecursionError(
        f"{what} of run {workflow_id!r} is called {_depth()} frames deep, too close to "
        f"Python's recursion limit ({limit}) to be run and recorded: steps (or child "
        "runs) nested in each other too deeply. Call them one after another (a loop) "
        "instead of from each other, or raise the limit with sys.setrecursionlimit"
    )


def _depth() -> int:
    frame, n = sys._getframe(1), 1
    while frame.f_back is not None:
        frame, n = frame.f_back, n + 1
    return n


def _backoff(policy: RetryPolicy, attempt: int, exc: BaseException) -> float:
    """The wait before the next attempt: the policy's, or longer if the failure asked
    for it (a provider's ``retry-after``, carried as `retry_after` seconds, heeded up
    to `MAX_RETRY_AFTER`). Never shorter than the policy's: an ask above the cap made
    a policy waiting longer than it (``max_delay=7200``) retry after the cap instead."""
    # a property that raises is nothing asked (before: the step stayed `running` and
    # the run failed with the property's error)
    asked = attribute_of(exc, "retry_after")
    delay = policy.delay(attempt)
    if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > delay:
        return max(delay, float(min(asked, MAX_RETRY_AFTER)))
    return delay


def _retry_due(row: StepRow) -> datetime | None:
    """When a failed attempt's step may be tried again, as recorded with it (None: no
    time recorded, an older tether's or one not written by tether)."""
    err = decode_error(row.error)
    try:
        due = from_iso(err.retry_at) if err is not None else None
    except ValueError:
        return None
    return due if due is not None and due.tzinfo is not None else None


def _attempts_left(spec: StepSpec, row: StepRow | None) -> int:
    """The attempts already made (0 for a new step). A step whose failure was final (not
    retryable, or its attempts used up) raises its recorded error again, as the class
    the first run raised, never running again; `StepFailedError` where that class
    cannot be rebuilt or an interrupted attempt used up the policy's extra reruns."""
    if row is None:
        return 0
    interrupted = row.status is StepStatus.RUNNING
    budget = spec.policy.attempts + (spec.policy.interrupted_reruns if interrupted else 0)
    err = decode_error(row.error)
    final = row.status is StepStatus.FAILED and err is not None and err.retryable is False
    if row.attempts < budget and not final:
        return row.attempts
    again = None if err is None or row.status is not StepStatus.FAILED else revived(err)
    if again is not None:
        raise again
    raise StepFailedError(
        spec.key,
        row.attempts,
        "Interrupted" if err is None else err.type,
        "attempts were used up by an earlier process" if err is None else err.message,
    )


def _ended(
    row: StepRow,
    status: StepStatus,
    result: str | None,
    error: str | None,
    completed_at: datetime | None,
) -> StepRow:
    """`row` after the step ended (what `dataclasses.replace` gives, without its cost)."""
    return StepRow(
        row.workflow_id,
        row.key,
        row.name,
        status,
        row.attempts,
        row.idempotency_key,
        result,
        error,
        row.started_at,
        completed_at if completed_at is not None else row.completed_at,
        row.updated_at,
    )


async def _call_step(
    fn: Callable[..., Any], args: tuple[Any, ...], asynchronous: bool, threads: StepThreads
) -> Any:
    if asynchronous:
        return await fn(*args)
    result = await threads.run(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


# Step functions are often made afresh per step (a lambda, a closure, a ``partial`` or a
# bound method holding what the step works on): they are read through their code, never
# cached themselves, which would keep them and all they hold alive.


def _accepts_context(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(params) >= 1


def _required_positionals(fn: types.FunctionType) -> tuple[str, ...]:
    code = fn.__code__  # its code says it, ~50x cheaper than inspect.signature
    return code.co_varnames[: code.co_argcount - len(fn.__defaults__ or ())]


def wants_context(fn: Callable[..., Any]) -> bool:
    """Whether a step function takes a `StepContext` (one required positional)."""
    if type(fn) is types.FunctionType:  # a def or a lambda
        return len(_required_positionals(fn)) >= 1
    if isinstance(fn, types.MethodType) and type(fn.__func__) is types.FunctionType:
        return len(_required_positionals(fn.__func__)) >= 2  # the first is bound
    if isinstance(fn, functools.partial) and type(fn.func) is types.FunctionType:
        # what the partial leaves required, up to the first parameter it gives by keyword
        # (that one and those after it can then only be given by keyword)
        left = 0
        for name in _required_positionals(fn.func)[len(fn.args) :]:
            if name in fn.keywords:
                break
            left += 1
        return left >= 1
    return _accepts_context(fn)


@functools.lru_cache(maxsize=1024)
def _calls_async(cls: type) -> bool:
    """Whether instances of `cls` are called through an ``async def __call__``."""
    return inspect.iscoroutinefunction(getattr(cls, "__call__", None))  # noqa: B004


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is a coroutine function (run on the loop, not in a step thread)."""
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    if isinstance(fn, types.MethodType):
        return is_async(fn.__func__)
    if isinstance(fn, functools.partial):
        return is_async(fn.func)
    cls: Any = type(fn)
    return inspect.iscoroutinefunction(fn) or _calls_async(cls)
