"""Which mutexes the current task already holds for its run.

A tether mutex is not re-entrant: a run that asks again for a mutex it holds
(``wf.mutex(k)`` inside a ``for_each`` item that holds `k` through
``mutex_key``, or inside ``async with wf.mutex(k)``) would wait for itself
until its timeout. The held keys live in a context variable, so they follow
the task and the tasks it starts, and never mistake a concurrent branch of the
same run (which may wait for the holder) for the holder itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import InvalidArgumentError

__all__ = ["check_not_held", "holding"]

_HELD: ContextVar[frozenset[tuple[str, str]]] = ContextVar("tether_held", default=frozenset())


def check_not_held(workflow_id: str, key: str) -> None:
    """Refuse to wait for a mutex that this very code path of the run holds."""
    if (workflow_id, key) in _HELD.get():
        raise InvalidArgumentError(
            f"run {workflow_id!r} already holds mutex {key!r} here (taken by an enclosing "
            f"wf.mutex({key!r}) or by for_each's mutex_key for this item), and tether mutexes "
            "are not re-entrant: acquiring it again would wait for itself. Drop the inner "
            "acquisition; the code already runs under that mutex"
        )


@contextmanager
def holding(workflow_id: str, key: str) -> Iterator[None]:
    """Mark `key` as held by this task (and the tasks it starts) while the block runs."""
    before = _HELD.get()
    _HELD.set(before | {(workflow_id, key)})
    try:
        yield
    finally:
        _HELD.set(before)
