"""Workflow definitions and run results."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from ._durations import check_seconds
from ._names import check_name
from ._results import check_input
from .errors import InvalidArgumentError, WorkflowIdConflictError, WorkflowVersionError
from .record import RunRecord
from .serde import check_type, dump_json, load_json, resolve_annotation, type_name, validate
from .store import RunRow, RunStatus

__all__ = ["RunResult", "WorkflowDef"]

T = TypeVar("T")
DEF_ATTR = "__tether_workflow__"
_INPUT_FIX = " as its annotation, or annotate it with none and pass plain JSON"


def _loc(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: (wf) only
        return []
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _has_var_positional(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_POSITIONAL for p in params)


def _annotated(fn: Callable[..., Any]) -> Any:
    """Where `fn`'s annotations live: itself, a partial's function, an object's __call__."""
    if isinstance(fn, functools.partial):
        return _annotated(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    return getattr(type(fn), "__call__", fn)  # noqa: B004


def _input_hint(workflow: str, fn: Any, param: str) -> Any:
    """The resolved annotation of `fn`'s input parameter `param` (None: none declared)."""
    what = f"the input parameter {param!r} of workflow {workflow!r}"
    try:
        return resolve_annotation(fn, param, what)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(
            f"{exc}, or annotate the input with none and pass plain JSON"
        ) from None


def default_name(fn: Callable[..., Any]) -> str:
    """The registry name of a workflow given without one."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None)
    if not isinstance(name, str):
        name = type(target).__qualname__
    return name


def _check_signature(fn: Callable[..., Any]) -> None:
    """Refuse a function that cannot be called as ``fn(wf)`` or ``fn(wf, input)``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to judge by (a builtin): let the call tell
        return
    shown = getattr(fn, "__qualname__", None) or repr(fn)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InvalidArgumentError(
            f"workflow {shown} takes no parameters, but a workflow is called with its "
            "tether.Workflow first: write `async def f(wf: tether.Workflow)` or "
            "`async def f(wf: tether.Workflow, input: YourType)`"
        )
    required = [p.name for p in positional if p.default is p.empty]
    if len(required) > 2:
        raise InvalidArgumentError(
            f"workflow {shown} has {len(required)} required parameters "
            f"({', '.join(required)}), but a workflow gets its tether.Workflow and at most one "
            f"input: gather {', '.join(required[1:])} into one input (a pydantic model or a "
            "dict) or give the extra parameters defaults"
        )
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise InvalidArgumentError(
            f"workflow {shown} has required keyword-only parameters ({', '.join(keyword_only)}) "
            "that a run cannot pass; give them defaults or make them part of the input"
        )


@dataclass(frozen=True)
class WorkflowDef:
    """A workflow definition: a function registered under a name and a version.

    `compatible` lists older versions whose runs this code may resume;
    `timeout` bounds the seconds a run spends executing (parked time excluded).
    """

    name: str
    version: str | None
    fn: Callable[..., Awaitable[Any]]
    compatible: tuple[str, ...] = ()
    timeout: float | None = None
    budget: Any = None  # a tether.ai.Budget for each run that is not given its own
    # seconds a run may wait here for a brief timer rather than park (None: the App's)
    inline_wait: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidArgumentError(
                f"a workflow must be callable (an `async def` taking a tether.Workflow first, "
                f"or any callable returning an awaitable), got {self.fn!r}"
            )
        _check_signature(self.fn)
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or self.timeout <= 0
        ):
            raise InvalidArgumentError(f"timeout must be seconds > 0, got {self.timeout!r}")

    @functools.cached_property
    def _params(self) -> list[inspect.Parameter]:
        """The function's positional parameters, read once (each run asks)."""
        return _positional(self.fn)

    @property
    def takes_input(self) -> bool:
        """Whether a run may pass an input: a second positional parameter, or ``*args``
        (a wrapper written ``async def flow(*args, **kwargs)``)."""
        return len(self._params) >= 2 or _has_var_positional(self.fn)

    @property
    def input_required(self) -> bool:
        params = self._params
        return len(params) >= 2 and params[1].default is inspect.Parameter.empty

    @functools.cached_property
    def input_type(self) -> Any:
        """The declared type of the input, resolved once (each run and child start asks)."""
        params = self._params
        if len(params) < 2:
            return None
        return _input_hint(self.name, _annotated(self.fn), params[1].name)

    def coerce_input(self, value: Any) -> Any:
        """`value` as the workflow's declared input type (a dict becomes its model);
        `InvalidArgumentError` naming the fields when it does not fit. A workflow object
        may bind its own input (a pipeline adds its stages' config): `__tether_input__`."""
        bind = getattr(self.fn, "__tether_input__", None)
        if bind is not None:
            return bind(value)
        tp = self.input_type
        if tp is None:
            return value
        check_type(tp, f"the input parameter of workflow {self.name!r}", _INPUT_FIX)
        try:
            return validate(tp, value)
        except ValidationError as exc:
            problems = "; ".join(
                f"input{_loc(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:3]
            )
            more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
            raise InvalidArgumentError(
                f"the input of workflow {self.name!r} does not fit its declared type "
                f"{type_name(tp)}: {problems}{more}; pass a value of that type"
            ) from None

    def encode_input(self, value: Any, *, child: bool = False) -> str:
        """`value` as the recorded input of a new run (or child run) of this workflow:
        coerced to its declared type (see `coerce_input`), then JSON text."""
        return self.encode_coerced(self.coerce_input(value), child=child)

    def encode_coerced(self, coerced: Any, *, child: bool = False) -> str:
        """`encode_input` of a value `coerce_input` gave: refused if a replay would read
        it back as another value (a tuple under an unannotated parameter: a list)."""
        what = f"the input of {'child workflow' if child else 'workflow'} {self.name!r}"
        text = dump_json(coerced, what=what, tp=self.input_type)
        if not self.binds_input:  # (a pipeline binds its config: its own to read back)
            check_input(coerced, self.input_type, text, what)
        return text

    @property
    def binds_input(self) -> bool:
        """Whether the workflow object binds its own input (`__tether_input__`)."""
        return getattr(self.fn, "__tether_input__", None) is not None

    def call(self, *args: Any) -> Awaitable[Any]:
        """Call the workflow function; what it returns must be awaitable."""
        out = self.fn(*args)
        if not inspect.isawaitable(out):
            raise InvalidArgumentError(
                f"workflow {self.name!r} returned {type(out).__name__}, not an awaitable: a "
                "workflow is an `async def`, or a callable returning a coroutine"
            )
        return out

    def check_same_run(self, run: RunRow, input_text: str | None) -> None:
        """Refuse an existing `run` asked for again by its id as a run of this workflow
        with `input_text` (None: any input): another workflow's run, or another input."""
        if run.workflow_name != self.name:
            raise WorkflowIdConflictError(
                run.workflow_id,
                "workflow",
                f"workflow id {run.workflow_id!r} already names a run of workflow "
                f"{run.workflow_name!r}, not {self.name!r}; choose another workflow_id",
            )
        if (
            input_text is not None
            and run.input is not None
            and input_text != run.input
            and load_json(input_text) != load_json(run.input)  # keys in another order
        ):
            raise WorkflowIdConflictError(
                run.workflow_id,
                "input",
                f"run {run.workflow_id!r} was started with a different input; resume it without "
                "an input (the recorded one is used) or choose another workflow_id",
            )

    def check_version(self, run: RunRow) -> None:
        """Refuse to resume `run` if it started under an incompatible version."""
        recorded = run.workflow_version
        if recorded == self.version or recorded in self.compatible:
            return
        raise WorkflowVersionError(run.workflow_id, recorded, self.version)

    @classmethod
    def make(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
        timeout: float | None = None,
        budget: Any = None,
        inline_wait: float | None = None,
    ) -> WorkflowDef:
        if name is not None:
            check_name("workflow name", name)
        if version is not None and not isinstance(version, str):
            raise InvalidArgumentError(
                f"version must be a str, got {type(version).__name__} {version!r}; "
                f"e.g. version={str(version)!r}"
            )
        if isinstance(compatible, str) or not isinstance(compatible, Iterable):
            raise InvalidArgumentError(
                f"compatible must be a list of version strings, got {compatible!r}; "
                f"e.g. compatible=[{str(compatible)!r}]"
            )
        compatible = tuple(compatible)
        for old in compatible:
            if not isinstance(old, str):
                raise InvalidArgumentError(
                    f"compatible lists versions, which are str; got {old!r} in {list(compatible)!r}"
                    f" (e.g. compatible=[{str(old)!r}])"
                )
        if inline_wait is not None:
            inline_wait = check_seconds("inline_wait", inline_wait)
        return cls(name or default_name(fn), version, fn, compatible, timeout, budget, inline_wait)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> WorkflowDef:
        """The definition attached by ``@app.workflow``, or one derived from `fn`."""
        found = getattr(fn, DEF_ATTR, None)
        if isinstance(found, WorkflowDef):
            return found
        if not callable(fn):
            raise InvalidArgumentError(
                f"a workflow must be an async function (or a callable returning an awaitable), "
                f"got {fn!r}"
            )
        return cls.make(fn)


@dataclass(frozen=True)
class RunResult(Generic[T]):
    """What a run returned (None unless completed), and its record after the call."""

    value: T
    record: RunRecord

    @property
    def workflow_id(self) -> str:
        return self.record.workflow_id

    @property
    def status(self) -> RunStatus:
        return self.record.status
