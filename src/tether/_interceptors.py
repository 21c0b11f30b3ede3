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
    "check_on_event",
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
        one = type(interceptors).__qualname__
        raise InvalidArgumentError(
            f"interceptors must be a list of StepInterceptor objects, got a {one}; "
            f"wrap it in a list, interceptors=[{one}()]"
        )
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
        _check_takes(
            getattr(icpt, name, None),
            f"{type(icpt).__qualname__}.{name}",
            2,
            f"async def {name}(self, call, proceed)",
        )
    listen = getattr(icpt, "on_event", None)
    if listen is not None and not callable(listen):
        raise InvalidArgumentError(
            f"{type(icpt).__qualname__}.on_event is {listen!r}, not a method: define "
            f"`{_ON_EVENT}` or leave it out"
        )
    _check_listener(listen, f"{type(icpt).__qualname__}.on_event", _ON_EVENT)


_ON_EVENT = "def on_event(self, workflow_id, type, message, detail)"


def check_on_event(hook: Any) -> Any:
    """An `on_event=` listener as given, refused here if it could never hear (the
    interceptors' own are checked as well)."""
    if hook is None:
        return None
    if not callable(hook):
        raise InvalidArgumentError(f"on_event must be a function `{_LISTENER}`, got {hook!r}")
    _check_listener(hook, "on_event", _LISTENER)
    return hook


_LISTENER = "def on_event(workflow_id, type, message, detail)"


def _check_listener(listen: Any, what: str, shape: str) -> None:
    """Refuse an ``async def`` listener: called without an await, its body never ran
    and every event went unheard, with nothing said; and one that cannot take the
    four arguments (a TypeError logged at each event)."""
    if inspect.iscoroutinefunction(listen) or inspect.iscoroutinefunction(
        getattr(listen, "__call__", None)  # noqa: B004 - a callable object's own method
    ):
        raise InvalidArgumentError(
            f"{what} is an `async def`: events are passed synchronously, so its body would "
            f"never run; make it `{shape}` (hand slow work to a queue or a thread)"
        )
    _check_takes(listen, what, 4, shape)


def _check_takes(method: Any, what: str, count: int, shape: str) -> None:
    """Refuse a hook that cannot take the `count` arguments it is called with, here
    rather than as a TypeError from the first step or event."""
    if not callable(method):
        return
    try:
        inspect.signature(method).bind(*[None] * count)
    except TypeError as exc:
        raise InvalidArgumentError(
            f"{what} cannot be called with the {count} arguments tether passes ({exc}): "
            f"define it as `{shape}`"
        ) from None
    except ValueError:  # no signature to read (a builtin): let the call judge
        return


def run_intercepted(
    interceptors: tuple[StepInterceptor, ...], call: RunCall, inner: Proceed
) -> Awaitable[Any]:
    """`inner()` (a drive's workflow call) through the interceptors that also define
    ``async def intercept_run(call, proceed)`` (tracing a run, say); the others pass."""
    proceed = inner
    for icpt in reversed(interceptors):
        if getattr(icpt, "intercept_run", None) is not None:
            proceed = _link(icpt, "intercept_run", call, proceed)
    return proceed()


def intercepted(
    interceptors: tuple[StepInterceptor, ...], call: StepCall, inner: Proceed
) -> Awaitable[Any]:
    """`inner()` run through the chain, the first interceptor outermost."""
    proceed = inner
    for icpt in reversed(interceptors):
        proceed = _link(icpt, "intercept", call, proceed)
    return proceed()


def _link(icpt: Any, name: str, call: StepCall | RunCall, proceed: Proceed) -> Proceed:
    """`icpt.<name>(call, proceed)` as one link of a chain, refusing a link that returns
    what its ``proceed()`` made without awaiting it: the step (or run) never ran, and
    storing that coroutine would fail as "not JSON", pointing away from the interceptor;
    and a run link calling ``proceed()`` twice (see `_again`)."""
    hook = getattr(icpt, name)

    async def link() -> Any:
        made: list[Awaitable[Any]] = []

        def tracked() -> Awaitable[Any]:
            if made and isinstance(call, RunCall):
                raise InvalidArgumentError(_again(icpt, call))
            made.append(proceed())
            return made[-1]

        result = await hook(call, tracked)
        # one never started (``proceed()`` left unawaited, its result dropped): the step
        # did not run, yet the hook's return (None) was recorded as its result
        unrun = [m for m in made if inspect.iscoroutine(m)
                 and inspect.getcoroutinestate(m) == inspect.CORO_CREATED]  # fmt: skip
        returned = bool(made) and result is made[-1]
        if unrun or returned:
            for m in unrun:
                m.close()  # no "never awaited" warning on top of the error
            raise InvalidArgumentError(_unawaited(icpt, name, call, returned))
        return result

    return link


def _unawaited(icpt: Any, name: str, call: StepCall | RunCall, returned: bool) -> str:
    what = (
        f"step {call.key!r}"
        if isinstance(call, StepCall)
        else f"the run of workflow {call.workflow_name!r}"
    )
    return (
        f"{type(icpt).__qualname__}.{name} {'returned' if returned else 'called'} "
        "proceed() without awaiting it, "
        f"so {what} did not run: write `return await proceed()`"
    )


def _again(icpt: Any, call: RunCall) -> str:
    """A second ``proceed()`` in one drive ran the workflow's code again in it: its steps
    took new names (``charge#2``) and ran a second time, a recorded payment paid twice."""
    return (
        f"{type(icpt).__qualname__}.intercept_run called proceed() a second time for run "
        f"{call.workflow_id!r}: the workflow's steps would run again under new names "
        "(`step#2`), each one executed twice; call proceed() once and let the error "
        "propagate (retry a step with its `retry=` policy, a whole run with app.rerun_from)"
    )


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
