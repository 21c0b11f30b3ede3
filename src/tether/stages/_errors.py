"""Errors of the stage layer (part of the `tether.TetherError` tree)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ..errors import InvalidArgumentError, TetherError

__all__ = [
    "PipelineError",
    "StageError",
    "StageFailedError",
    "StageTimeoutError",
    "close_to",
    "did_you_mean",
    "not_json",
]


class PipelineError(InvalidArgumentError):
    """A pipeline that cannot run as built (caught when it is built, not at run time)."""


class StageError(TetherError):
    """A stage could not produce its output (the message names the stage)."""


class StageFailedError(StageError):
    """A batch stage's check answered `Failed`."""


class StageTimeoutError(StageError, TimeoutError):
    """A batch stage was still not ready after its `max_wait`."""


def close_to(name: str, known: Iterable[str]) -> str | None:
    """The one of `known` that `name` likely meant, or None. Case is ignored: difflib
    scores 'qa' and 'QA', or 'SUMMARISE' and 'Summarise', as nothing alike, and a stage
    id differing only in case was refused with no guess."""
    by_folded = {k.casefold(): k for k in known}
    folded = name.strip().casefold()
    if folded in by_folded:
        return by_folded[folded]
    close = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def did_you_mean(name: str, known: Iterable[str], what: str = "") -> str:
    """``did you mean 'Summarise'? `` (a space after it; `what` before the name, as in
    ``stage 'Summarise'``) for a misspelt name, else ""."""
    meant = close_to(name, known)
    return "" if meant is None else f"did you mean {what}{meant!r}? "


def not_json(stage_id: str, model: str, out: Any, exc: Exception) -> str:
    """Why a stage's output cannot be recorded, naming the field that holds what JSON
    cannot (the generic message says "at $" of a model, and suggests returning a model
    to someone who did)."""
    found = _unjsonable(out, "", 0)
    if found is None:
        return f"stage {stage_id!r} returned an output that cannot be stored as JSON: {exc}"
    path, tp = found
    return (
        f"stage {stage_id!r} returned an output that cannot be stored as JSON: {path or '$'} "
        f"of its {model} holds a {tp.__module__}.{tp.__qualname__}; declare that field with "
        "a type pydantic dumps to JSON (str, numbers, lists, dicts, models), or give it a "
        "@field_serializer"
    )


def _unjsonable(value: Any, path: str, depth: int) -> tuple[str, type] | None:
    """The path and type of the first part of `value` that does not dump to JSON."""
    if isinstance(value, BaseModel):
        items = [(f"{path}.{k}" if path else k, getattr(value, k, None))
                 for k in type(value).model_fields]  # fmt: skip
    elif isinstance(value, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        try:
            to_jsonable_python(value)
        except Exception:
            return (path, type(value))
        return None
    for where, v in items if depth < 50 else ():
        found = _unjsonable(v, where, depth + 1)
        if found is not None:
            return found
    return None
