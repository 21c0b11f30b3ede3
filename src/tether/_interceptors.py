"""Interceptors: code that wraps every executed step attempt (tracing, cost, policy).

An interceptor is registered once, ``App(interceptors=[...])``, and sees each
attempt of each step that actually runs (a step answered from the record on
replay runs nothing and is not intercepted). The chain is called outermost
first, in the order given; each link calls ``await proceed()`` to run the rest
of the chain and, at its end, the step function. What the outermost link
returns is the step's result as recorded; what it raises is the attempt's
failure (retried as the step's policy says).

An interceptor may also define ``async def intercept_run(call: RunCall,
proceed)``, which wraps each drive of a run (steps run inside it, so a span
it opens parents theirs), and ``def on_event(workflow_id, type, message,
detail)``, which sees every event the drive writes, as `on_event` hooks do.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgumentError

__all__ = [
    "Proceed",
    "RunCall",
    "StepCall",
    "StepInterceptor",
    "check_interceptors",
    "intercepted",
    "run_intercepted",
    "with_listeners",
]

Proceed = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class StepCall:
    """One attempt of one step, as an interceptor sees it."""

    workflow_id: str
    workflow_name: str
    name: str  # the name the step was called with
    key: str  # its identity in the run's record (``name``, ``name#2``, ``name@key``)
    attempt: int  # 1 on the first attempt
    max_attempts: int
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RunCall:
    """One drive of one run (from its claim until it ends, parks or is handed back), as
    an interceptor with an ``intercept_run`` method sees it."""

    workflow_id: str
    workflow_name: str
    workflow_version: str | None
    attempt: int  # the run's attempt: 1, plus one per rerun_from
    generation: int  # the owner generation of this drive
    queue: str | None


@runtime_checkable
class StepInterceptor(Protocol):
    """Wraps each executed step attempt; see `tether.App`'s ``interceptors``."""

    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        """Run the attempt with ``await proceed()`` (or not), and return its result."""
        ...


def check_interceptors(interceptors: Sequence[Any]) -> tuple[StepInterceptor, ...]:
    """The interceptors as a tuple, each checked here so that a mistake fails `App()`
    with what to change, not each step later with a TypeError from inside the chain."""
    if isinstance(interceptors, str | bytes) or not isinstance(interceptors, Sequence):
        raise InvalidArgumentError("interceptors must be a list of StepInterceptor objects")
    for i in interceptors:
        _check_one(i)
    return tuple(interceptors)


def _check_one(icpt: Any) -> None:
    if isinstance(icpt, type):
        raise InvalidArgumentError(
            f"interceptor {icpt.__qualname__} is a class: pass an instance, "
            f"interceptors=[{icpt.__qualname__}()]"
        )
    if not isinstance(icpt, StepInterceptor):
        raise InvalidArgumentError(
            f"interceptor {icpt!r} has no `async def intercept(self, call, proceed)` method"
        )
    for name in ("intercept", "intercept_run"):
        method = getattr(icpt, name, None)
        if inspect.isroutine(method) and not inspect.iscoroutinefunction(method):
            raise InvalidArgumentError(
                f"{type(icpt).__qualname__}.{name} is a plain `def`: make it "
                f"`async def {name}(self, call, proceed)` and `return await proceed()`"
            )
    listen = getattr(icpt, "on_event", None)
    if listen is not None and not callable(listen):
        raise InvalidArgumentError(
            f"{type(icpt).__qualname__}.on_event is {listen!r}, not a method: define "
            "`def on_event(self, workflow_id, type, message, detail)` or leave it out"
        )


def run_intercepted(
    interceptors: tuple[StepInterceptor, ...], call: RunCall, inner: Proceed
) -> Awaitable[Any]:
    """`inner()` (a drive's workflow call) through the interceptors that also define
    ``async def intercept_run(call, proceed)`` (tracing a run, say); the others pass."""
    proceed = inner
    for icpt in reversed(interceptors):
        hook = getattr(icpt, "intercept_run", None)
        if hook is not None:
            proceed = functools.partial(hook, call, proceed)
    return proceed()


def intercepted(
    interceptors: tuple[StepInterceptor, ...], call: StepCall, inner: Proceed
) -> Awaitable[Any]:
    """`inner()` run through the chain, the first interceptor outermost."""
    proceed = inner
    for icpt in reversed(interceptors):
        proceed = functools.partial(icpt.intercept, call, proceed)
    return proceed()


def with_listeners(interceptors: tuple[StepInterceptor, ...], hook: Any) -> Any:
    """`hook` (an `on_event` callable, or None) and the interceptors' own ``on_event``
    methods as one hook; `hook` itself when no interceptor listens."""
    listeners = [f for i in interceptors if (f := getattr(i, "on_event", None)) is not None]
    if not listeners:
        return hook
    if hook is not None:
        listeners.append(hook)

    def every(workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        failed: Exception | None = None
        for listen in listeners:  # one that raises keeps none after it from hearing
            try:
                listen(workflow_id, type_, message, detail)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed  # for the drive to log (`RunState.emit`)

    return every
