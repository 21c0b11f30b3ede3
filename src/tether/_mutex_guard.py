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

__all__ = ["check_not_held", "deadlock", "held_above", "holding", "lock_order_hint"]

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


def held_above(workflow_id: str, key: str) -> str | None:
    """The run other than `workflow_id` that holds `key` in this task's code: one whose
    drive awaits this run (a parent calling ``wf.child`` inside ``wf.mutex(key)``, its
    held keys in this context), which lets go only once this run ends."""
    for holder, held in _HELD.get():
        if held == key and holder != workflow_id:
            return holder
    return None


def deadlock(workflow_id: str, key: str, holder: str, how: str) -> InvalidArgumentError:
    """The error of a child run asking for a mutex its waiting ancestor holds."""
    return InvalidArgumentError(
        f"run {workflow_id!r} asks for mutex {key!r}, which run {holder!r} holds{how} "
        f"while it waits for {workflow_id!r} to end (wf.child called inside its "
        f"wf.mutex({key!r})): it would wait for itself until the mutex timeout. Take the "
        "mutex in one of the two: drop the child's (it runs under its parent's), or call "
        "the child outside the parent's block"
    )


def lock_order_hint(workflow_id: str, key: str, holder: str | None) -> str:
    """What to tell a run whose wait for `key` timed out while this code path holds
    other mutexes: the holder may be waiting for one of them (a deadlock), or "" if
    it holds none."""
    held = sorted(k for w, k in _HELD.get() if w == workflow_id and k != key)
    if not held:
        return ""
    mine = ", ".join(repr(k) for k in held)
    what, which = ("mutex", mine) if len(held) == 1 else ("mutexes", f"one of {mine}")
    who = f"run {holder!r}" if holder else "its holder"
    return (
        f"run {workflow_id!r} holds {what} {mine} here while it waits for {key!r}: if "
        f"{who} waits in turn for {which} (nested mutexes taken in opposite orders), each "
        "waits for the other until one times out, a deadlock. Take nested mutexes in one "
        "fixed order everywhere (e.g. sorted keys)"
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
