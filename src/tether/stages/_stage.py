"""Stage definitions: `@stage` and `@batch_stage`.

A stage is a typed unit of a pipeline: an input model (or none: it reads
earlier outputs through its context), an output model, a config model, and
an ``async def`` taking a `StageContext`. A batch stage's function submits
work and returns `Suspend`; its `check` is asked later whether the work is
done.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Literal, NoReturn, TypeVar, overload

from pydantic import BaseModel

from ._errors import PipelineError

__all__ = ["Stage", "batch_stage", "stage"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
C = TypeVar("C")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# a stage's own steps are stage:<id>, stage:<id>.start, .suspended, .check, .cancel and
# .unread (its recorded output could not be read back: where a rerun goes on from)
_RESERVED = (".start", ".suspended", ".check", ".cancel", ".unread")


def _check_id(stage_id: object) -> str:
    if not isinstance(stage_id, str) or not _ID.fullmatch(stage_id):
        raise PipelineError(
            f"stage id {stage_id!r} is not valid: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 100), e.g. id='extract-text'"
        )
    if stage_id.endswith(_RESERVED):
        raise PipelineError(
            f"stage id {stage_id!r} ends in {stage_id[stage_id.rindex('.') :]!r}, which names "
            f"a step of the stage {stage_id[: stage_id.rindex('.')]!r} (its start, suspension, "
            "checks, cancel or unread output); pick another id, e.g. with '-' for '.'"
        )
    return stage_id


def _check_model(what: str, stage_id: str, tp: Any, *, required: bool) -> Any:
    if tp is None and not required:
        return None
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        raise PipelineError(
            f"stage {stage_id!r}: {what} must be a pydantic model class, got {tp!r}; "
            f"e.g. class {what.capitalize()}(BaseModel): ..."
        )
    return tp


def _check_declaration(
    stage_id: object, output: Any, input: Any, config: Any, dependencies: Any
) -> tuple[str, ...]:
    """Refuse a bad declaration where it is written (the decorator line); the ids of
    its dependencies (read once: they may come as a generator)."""
    sid = _check_id(stage_id)
    _check_model("output", sid, output, required=True)
    _check_model("input", sid, input, required=False)
    _check_model("config", sid, config, required=False)
    return _dependency_ids(sid, dependencies)


def _dependency_ids(stage_id: str, dependencies: Any) -> tuple[str, ...]:
    """The ids of `dependencies`. One stage or id where a list is wanted was taken as
    its letters ("abc" as 'a', 'b', 'c', refused later as unknown stages) or failed
    with an AttributeError naming no stage."""
    if isinstance(dependencies, str | Stage) or not isinstance(dependencies, Iterable):
        raise PipelineError(
            f"stage {stage_id!r}: dependencies must be a list of stages or stage ids, got "
            f"{dependencies!r}; e.g. dependencies=[extract] or dependencies=['extract']"
        )
    ids = []
    for d in dependencies:
        if not isinstance(d, str | Stage):
            raise PipelineError(
                f"stage {stage_id!r}: dependency {d!r} is neither a stage nor a stage id; "
                "e.g. dependencies=[extract] or dependencies=['extract']"
            )
        ids.append(d if isinstance(d, str) else d.id)
    return tuple(ids)


class Stage(Generic[I, O, C]):
    """One stage: its id, models, function and, for a batch stage, its check/cancel."""

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        id: str,
        output: type[O],
        input: type[I] | None = None,
        config: type[C] | None = None,
        name: str | None = None,
        description: str | None = None,
        dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
        mode: Literal["sync", "batch"] = "sync",
        check: Callable[..., Awaitable[Any]] | None = None,
        cancel: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.dependencies = _check_declaration(id, output, input, config, dependencies)
        if not inspect.iscoroutinefunction(fn):
            raise PipelineError(
                f"stage {id!r}: its function must be an `async def f(ctx)`, got {fn!r}"
            )
        self.id = id
        self.fn = fn
        self.output: type[O] = output
        # where `output` was declared, said when a recorded output no longer fits it
        self.output_from = "output="
        self.input: type[I] | None = input
        self.config: type[C] | None = config
        self.name = name or id
        self.description = description
        self.mode = mode
        self._check = None if check is None else self._async("check", check)
        self._cancel = None if cancel is None else self._async("cancel", cancel)

    def __repr__(self) -> str:
        return f"<{'batch ' if self.mode == 'batch' else ''}stage {self.id!r}>"

    @property
    def check_fn(self) -> Callable[..., Awaitable[Any]] | None:
        return self._check

    @property
    def cancel_fn(self) -> Callable[..., Awaitable[Any]] | None:
        return self._cancel

    def check(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Decorate the batch stage's ``async def check(state, ctx)``."""
        self._need_batch("check")
        self._check = self._async("check", fn)
        return fn

    def on_cancel(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Decorate the batch stage's ``async def cancel(state)`` (called when its run is
        cancelled, or its `max_wait` passes, while the batch is out)."""
        self._need_batch("on_cancel")
        self._cancel = self._async("cancel", fn)
        return fn

    def _need_batch(self, what: str) -> None:
        if self.mode != "batch":
            raise PipelineError(f"stage {self.id!r} is not a batch stage; it has no {what}")

    def _async(self, what: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """Refuse a plain `def` when declared: awaited later, it would fail only after its
        work (a provider call) was done."""
        if not inspect.iscoroutinefunction(fn):
            args = "(state, ctx)" if what == "check" else "(state)"
            raise PipelineError(
                f"batch stage {self.id!r}: its {what} must be an `async def {what}{args}`, "
                f"got {fn!r}"
            )
        return fn


@overload
def stage(fn: Callable[..., Awaitable[O]], /) -> Stage[Any, O, Any]: ...


@overload
def stage(
    *,
    id: str,
    output: type[O],
    input: type[I] | None = None,
    config: type[C] | None = None,
    name: str | None = None,
    description: str | None = None,
    dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
) -> Callable[[Callable[..., Awaitable[O]]], Stage[I, O, C]]: ...


@overload
def stage(
    *,
    id: str | None = None,
    input: type[I] | None = None,
    config: type[C] | None = None,
    name: str | None = None,
    description: str | None = None,
    dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
) -> Callable[[Callable[..., Awaitable[O]]], Stage[I, O, C]]: ...


def stage(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    id: str | None = None,
    output: type[Any] | None = None,
    input: type[Any] | None = None,
    config: type[Any] | None = None,
    name: str | None = None,
    description: str | None = None,
    dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
) -> Any:
    """Declare a stage: ``@tether.stage(id="extract", input=Doc, output=Text)`` on an
    ``async def extract(ctx) -> Text``, or bare ``@tether.stage``: its id is then the
    function's name and its output the model it is annotated to return. Without
    `input`, the stage reads earlier outputs with ``ctx.require(...)``; `dependencies`
    names the stages it reads, so a pipeline that does not run them earlier is
    refused when built. ``@tether.stage(input=Doc)`` without `id` or `output` takes
    those from the function, as the bare form does."""
    if fn is not None:
        return _bare(fn)
    if id is None or output is None:

        def inferred(fn: Callable[..., Awaitable[Any]]) -> Stage[Any, Any, Any]:
            sid, out, said = _from_function(fn, id, output)
            made = _declared(sid, out, input, config, name, description, dependencies)(fn)
            made.output_from = said
            return made

        return inferred
    return _declared(id, output, input, config, name, description, dependencies)


def _declared(
    sid: str | None,
    output: Any,
    input: Any,
    config: Any,
    name: str | None,
    description: str | None,
    dependencies: Any,
    **batch: Any,
) -> Callable[[Callable[..., Awaitable[Any]]], Stage[Any, Any, Any]]:
    """The decorator making a stage of this declaration, which is checked here, where it
    is written; `batch` holds a batch stage's mode, check and cancel."""
    deps = _check_declaration(sid, output, input, config, dependencies)
    assert sid is not None  # refused above when missing
    return functools.partial(
        Stage, id=sid, output=output, input=input, config=config, name=name,
        description=description, dependencies=deps, **batch,
    )  # fmt: skip


def _bare(fn: Any) -> Stage[Any, Any, Any]:
    """Bare ``@stage``: the id is the function's name and the output the model its
    return annotation names, so a stage needs no more than its function."""
    sid, output, said = _from_function(fn, None, None)
    made: Stage[Any, Any, Any] = Stage(fn, id=sid, output=output)
    made.output_from = said
    return made


def _from_function(fn: Any, sid: str | None, output: Any) -> tuple[str, Any, str]:
    """The stage's id (`sid`, else the function's name), output model (`output`, else
    the one its return annotation names) and where that model was declared."""
    if not callable(fn):
        raise PipelineError(
            f"@stage got {fn!r}; use it bare on an `async def`, or as "
            "@stage(id='extract', output=Text)"
        )
    sid = sid if sid is not None else getattr(fn, "__name__", repr(fn))
    if output is not None:
        return sid, output, "output="
    try:
        output = typing.get_type_hints(fn).get("return")
    except Exception as exc:  # an annotation naming what its module cannot see
        raise PipelineError(
            f"stage {sid!r}: its return annotation cannot be read ({exc}); declare it "
            f"as @stage(id={sid!r}, output=Text)"
        ) from None
    if output is None:
        raise PipelineError(
            f"stage {sid!r}: without output=, @stage takes its output model from the "
            f"return annotation, and it has none; write `async def {sid}(ctx) -> Text`, or "
            f"@stage(id={sid!r}, output=Text)"
        )
    return sid, output, "return annotation"


@overload
def batch_stage(fn: Callable[..., Awaitable[Any]], /) -> NoReturn: ...


@overload
def batch_stage(
    *,
    id: str,
    output: type[O],
    input: type[I] | None = None,
    config: type[C] | None = None,
    check: Callable[..., Awaitable[Any]] | None = None,
    cancel: Callable[..., Awaitable[Any]] | None = None,
    name: str | None = None,
    description: str | None = None,
    dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
) -> Callable[[Callable[..., Awaitable[Any]]], Stage[I, O, C]]: ...


def batch_stage(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    id: str | None = None,
    output: type[O] | None = None,
    input: type[I] | None = None,
    config: type[C] | None = None,
    check: Callable[..., Awaitable[Any]] | None = None,
    cancel: Callable[..., Awaitable[Any]] | None = None,
    name: str | None = None,
    description: str | None = None,
    dependencies: Iterable[Stage[Any, Any, Any] | str] = (),
) -> Any:
    """Declare an async-batch stage on its ``async def submit(ctx) -> tether.Suspend``.

    `check(state, ctx)` (or ``@the_stage.check``) answers `Ready(output)`,
    `NotReady(next_check_in=)` or `Failed(error)`; it runs as a step, on a durable
    timer, outside any database transaction, on whichever worker takes the run.
    `cancel(state)` (or ``@the_stage.on_cancel``) stops the batch when the run is
    cancelled or `max_wait` passes.

    Unlike `stage`, it is not used bare: its function returns `Suspend`, so its
    output model cannot be read from the function and is given as ``output=``.
    """
    if fn is not None:
        _refuse_bare_batch(fn)
    return _declared(
        id, output, input, config, name, description, dependencies,
        mode="batch", check=check, cancel=cancel,
    )  # fmt: skip


def _refuse_bare_batch(fn: Any) -> NoReturn:
    """Bare ``@batch_stage``: it failed with a TypeError (no positional argument) naming
    neither the stage nor what to write. Its output model is needed, and cannot be read
    from a submit function, which returns `Suspend`."""
    sid = getattr(fn, "__name__", None)
    sid = sid if isinstance(sid, str) and _ID.fullmatch(sid) else "submit"
    raise PipelineError(
        f"batch stage {sid!r}: @batch_stage needs its output model (its function returns "
        f"a Suspend, not its output), so it is not used bare; write "
        f"@batch_stage(id={sid!r}, output=Text), Text being the model its check's "
        "Ready(...) holds"
    )
