"""Interceptors: code that wraps every executed step attempt (tracing, cost, policy).

An interceptor is registered once, ``App(interceptors=[...])``, and sees each
attempt of each step that actually runs (a step answered from the record on
replay runs nothing and is not intercepted). The chain is called outermost
first, in the order given; each link calls ``await proceed()`` to run the rest
of the chain and, at its end, the step function. What the outermost link
returns is the step's result as recorded; what it raises is the attempt's
failure (retried as the step's policy says).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgumentError

__all__ = ["Proceed", "StepCall", "StepInterceptor", "check_interceptors", "intercepted"]

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


@runtime_checkable
class StepInterceptor(Protocol):
    """Wraps each executed step attempt; see `tether.App`'s ``interceptors``."""

    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        """Run the attempt with ``await proceed()`` (or not), and return its result."""
        ...


def check_interceptors(interceptors: Sequence[Any]) -> tuple[StepInterceptor, ...]:
    """The interceptors as a tuple, each checked to have an ``intercept`` method."""
    if isinstance(interceptors, str | bytes) or not isinstance(interceptors, Sequence):
        raise InvalidArgumentError("interceptors must be a list of StepInterceptor objects")
    for i in interceptors:
        if not isinstance(i, StepInterceptor):
            raise InvalidArgumentError(
                f"interceptor {i!r} has no `async def intercept(self, call, proceed)` method"
            )
    return tuple(interceptors)


def intercepted(
    interceptors: tuple[StepInterceptor, ...], call: StepCall, inner: Proceed
) -> Awaitable[Any]:
    """`inner()` run through the chain, the first interceptor outermost."""
    proceed = inner
    for icpt in reversed(interceptors):
        proceed = functools.partial(icpt.intercept, call, proceed)
    return proceed()
