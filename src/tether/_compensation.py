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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ._run_state import RunState
from ._steps import StepContext, is_async
from ._workflow import Workflow
from .errors import InvalidArgumentError

__all__ = ["compensate"]

log = logging.getLogger("tether")


async def compensate(wf: Workflow, st: RunState) -> bool:
    """Run the registered compensations newest first, each once; True if all succeeded.

    Newest by when their steps completed, as recorded: a replay registers them in
    the order the code asks for them (steps run together answer at once, in call
    order), the first drive as they completed; the record gives both one order."""
    ok = True
    order = sorted(st.compensations, key=lambda c: _completed_at(st, c.key))
    for name, fn, value in reversed(order):
        try:
            await wf.step(f"compensate:{name}", _compensation(fn, value))
        except Exception as exc:
            log.warning("compensation of step %r in run %s failed: %r", name, st.workflow_id, exc)
            ok = False
    return ok


def _completed_at(st: RunState, key: str) -> datetime:
    row = st.steps.get(key)
    at = None if row is None else row.completed_at
    return _NEVER if at is None else at


_NEVER = datetime.max.replace(tzinfo=UTC)  # (not recorded: newest)


def _compensation(fn: Callable[..., Any], value: Any) -> Callable[[StepContext], Any]:
    """The compensation as a step function. Like a step function, a compensation
    takes what it declares: nothing, the step's result, or the compensation
    step's `StepContext` and the result. A sync one runs in a worker thread."""
    arity = _required_positional(fn)
    if arity > 2:
        raise InvalidArgumentError(
            f"compensation {getattr(fn, '__qualname__', fn)!r} takes {arity} arguments; it may "
            "take none, the step's result, or a StepContext and the result"
        )

    async def undo(ctx: StepContext) -> None:
        args = ((), (value,), (ctx, value))[arity]
        if is_async(fn):
            await fn(*args)
            return
        out = await asyncio.to_thread(fn, *args)
        if inspect.isawaitable(out):
            await out

    return undo


def _required_positional(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        1
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )
