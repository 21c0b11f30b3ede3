"""Rows a step writes with its own completion, in the same transaction.

A layer above the core (the AI call log) attaches rows while a step runs;
the step's completion (or its failed attempt) writes them with the step, so
they are recorded exactly when the step is, never twice and never lost to a
crash between two writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .errors import InvalidArgumentError

__all__ = ["attach", "attached", "collecting", "in_step", "outside_step"]

_CURRENT: ContextVar[list[Any] | None] = ContextVar("tether_step_rows", default=None)


def attach(row: Any) -> None:
    """Write `row` with the step that is running (only inside a step)."""
    rows = _CURRENT.get()
    if rows is None:
        raise InvalidArgumentError(
            "a call-log row can be attached only inside a step; call it from the "
            "function passed to wf.step(...)"
        )
    rows.append(row)


def attached() -> list[Any]:
    """What the running step has attached so far (its AI calls, its events): for an
    interceptor that reports on them after ``await proceed()``."""
    return list(_CURRENT.get() or ())


def in_step() -> bool:
    """Whether the code calling this runs inside a step (so `attach` would work)."""
    return _CURRENT.get() is not None


@contextmanager
def collecting() -> Iterator[list[Any]]:
    """Collect what the code run inside attaches (the step machinery uses this)."""
    rows: list[Any] = []
    token = _CURRENT.set(rows)
    try:
        yield rows
    finally:
        _CURRENT.reset(token)


@contextmanager
def outside_step() -> Iterator[None]:
    """Run code that is no step's own though a step's function called it (a child run
    driven from inside its parent's step): what it attaches is written with its own
    steps, not lost with, or counted in, the parent's."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)
