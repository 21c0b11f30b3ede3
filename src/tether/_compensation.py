"""Compensations: undoing a run's completed steps, newest first, each once.

A step registered with ``compensate=`` leaves a `Compensation` in the run's
state when it completes (or is answered from the record on replay). When the
run fails, or is cancelled with compensation, the driver runs them in reverse
order, each as a step of its own (``compensate:<key>``), so a compensation
that completed is not run again by a later drive.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from ._run_state import RunState, undo_step
from ._steps import StepContext, is_async
from .errors import InvalidArgumentError
from .retry import RetryPolicy
from .store import EventRow

__all__ = [
    "CompensationCancelled",
    "check_compensation",
    "compensate",
    "completed_at_once",
    "completion_ranks",
]

log = logging.getLogger("tether")


class _Steps(Protocol):
    """What `compensate` needs of the run's `Workflow` (which imports this module to
    check a compensation as its step is called: importing it here closed a circle)."""

    async def step(
        self, name: str, fn: Callable[..., Any], *, retry: int | RetryPolicy | None = None
    ) -> Any: ...


async def compensate(wf: _Steps, st: RunState, ranks: Mapping[str, int] | None = None) -> bool:
    """Run the registered compensations newest first, each once; True if all succeeded.

    Newest by when their steps completed, as recorded: a replay registers them in
    the order the code asks for them (steps run together answer at once, in call
    order), the first drive as they completed; the record gives both one order.
    Steps that completed at one instant (a fake clock) are told apart by `ranks`,
    the event numbers of their completions (`completion_ranks`)."""
    ok = True
    known = ranks or {}

    def newest_last(c: Any) -> tuple[datetime, int]:
        return _completed_at(st, c.key), known.get(c.key, _UNRANKED)

    for name, fn, value, retry in reversed(sorted(st.compensations, key=newest_last)):
        try:
            await wf.step(undo_step(name), _compensation(fn, value), retry=retry)
        except Exception as exc:
            log.warning("compensation of step %r in run %s failed: %r", name, st.workflow_id, exc)
            ok = False
    return ok


def completed_at_once(st: RunState) -> bool:
    """Whether two steps to compensate have one recorded completion time: only their
    completion events then tell which completed last (worth reading the run's events)."""
    times = [_completed_at(st, c.key) for c in st.compensations]
    return len(set(times)) < len(times)


def completion_ranks(events: Iterable[EventRow]) -> dict[str, int]:
    """Each step's last completion as the number of its `step.completed` event."""
    return {e.message: e.seq for e in events if e.type == "step.completed" and e.message}


def _completed_at(st: RunState, key: str) -> datetime:
    row = st.steps.get(key)
    at = None if row is None else row.completed_at
    return _NEVER if at is None else at


_NEVER = datetime.max.replace(tzinfo=UTC)  # (not recorded: newest)
_UNRANKED = 1 << 62  # (no completion event read: newest of its instant)


def _compensation(fn: Callable[..., Any], value: Any) -> Callable[[StepContext], Any]:
    """The compensation as a step function. Like a step function, a compensation
    takes what it declares: nothing, the step's result, or the compensation
    step's `StepContext` and the result. A sync one runs in a worker thread."""
    arity = check_compensation(fn, None)

    async def undo(ctx: StepContext) -> None:
        args = ((), (value,), (ctx, value))[arity]
        try:
            if is_async(fn):
                await fn(*args)
                return
            out = await asyncio.to_thread(fn, *args)
            if inspect.isawaitable(out):
                await out
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the run is stopped (a shutdown): not the compensation's failure
            # the compensation's code raised it (a library's, re-raised): its failure; as
            # a cancel it ended the drive, leaving the older steps undone and the run
            # running, to fail the same way at each resume
            raise CompensationCancelled(ctx.name) from exc

    return undo


class CompensationCancelled(Exception):
    """A compensation raised `asyncio.CancelledError` of its own accord (the run was not
    being stopped): recorded as its failure, so the older steps are still undone."""

    def __init__(self, step: str) -> None:
        super().__init__(
            f"compensation {step!r} raised asyncio.CancelledError though nothing cancelled "
            "it (a library it calls re-raised one?); catch it there, or raise an ordinary "
            "exception to fail the compensation; app.retry_compensations runs it again"
        )


def check_compensation(fn: Callable[..., Any], step: str | None) -> int:
    """How many arguments compensation `fn` takes; refused if it takes more than it can
    be given. Checked when its step is called (`step`): found out only once the run
    failed, it left the step undone and the run `compensation_failed`."""
    if not callable(fn):
        raise InvalidArgumentError(f"compensate of step {step!r} must be callable")
    arity, keywords = _required(fn)
    if arity > 2 or keywords:
        where = "" if step is None else f" of step {step!r}"
        takes = (
            f"{arity} arguments"
            if arity > 2
            else f"keyword-only {', '.join(map(repr, keywords))} with no default"
        )
        raise InvalidArgumentError(
            f"compensation {getattr(fn, '__qualname__', fn)!r}{where} takes {takes}; "
            "it may take none, the step's result, or a StepContext and the result"
        )
    return arity


def _required(fn: Callable[..., Any]) -> tuple[int, list[str]]:
    """How many positional arguments `fn` requires, and the keyword-only ones it requires
    (a compensation is never given one: it failed only as the run was undone)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1, []
    required = [p for p in params if p.default is p.empty]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    keywords = [p.name for p in required if p.kind is p.KEYWORD_ONLY]
    return sum(1 for p in required if p.kind in positional), keywords
