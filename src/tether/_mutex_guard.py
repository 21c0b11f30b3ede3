"""Which mutexes the current task already holds for its run.

A tether mutex is not re-entrant: a run that asks again for a mutex it holds
(``wf.mutex(k)`` inside a ``for_each`` item that holds `k` through
``mutex_key``, or inside ``async with wf.mutex(k)``) would wait for itself
until its timeout. The held keys live in a context variable, so they follow
the task and the tasks it starts, and never mistake a concurrent branch of the
same run (which may wait for the holder) for the holder itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from functools import wraps
from types import TracebackType
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar

from .errors import InvalidArgumentError

__all__ = [
    "MutexBlock",
    "check_not_held",
    "deadlock",
    "held_above",
    "holding",
    "holds_any_mutex",
    "lock_order_hint",
    "mutex_block",
]

T = TypeVar("T")
P = ParamSpec("P")

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


def holds_any_mutex() -> bool:
    """Whether the code running here holds a mutex (of its run or of one awaiting it)."""
    return bool(_HELD.get())


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


class MutexBlock(AbstractAsyncContextManager[T], Generic[T]):
    """What ``wf.mutex(key)`` returns: a block for ``async with``, and nothing else.
    Awaited, or entered with a plain ``with``, it raised a bare TypeError about an
    ``_AsyncGeneratorContextManager``; it now says how to write it. Nothing is taken
    until the block is entered."""

    __slots__ = ("_enter", "_key", "_open")

    def __init__(self, key: object, enter: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        self._key = key
        self._enter = enter
        self._open: AbstractAsyncContextManager[T] | None = None

    async def __aenter__(self) -> T:
        self._open = self._enter()
        return await self._open.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._open is not None, "__aexit__ without __aenter__"
        return await self._open.__aexit__(exc_type, exc, tb)

    def __await__(self) -> Generator[Any, None, NoReturn]:
        raise self._misused("`await wf.mutex(...)`", "awaiting it holds nothing")

    def __enter__(self) -> NoReturn:
        raise self._misused(
            "a plain `with wf.mutex(...)`", "it is taken and renewed on the event loop"
        )

    def __exit__(self, *exc: object) -> None:  # (never reached: `__enter__` raises)
        return None

    def _misused(self, how: str, why: str) -> InvalidArgumentError:
        key = self._key
        return InvalidArgumentError(
            f"{how} cannot hold mutex {key!r}: wf.mutex is an async context manager "
            f"({why}). Write `async with wf.mutex({key!r}):` around the code that needs "
            f"the mutex, or `await wf.with_mutex({key!r}, fn)` to call one function under it"
        )


def mutex_block(fn: Callable[P, AsyncIterator[T]]) -> Callable[P, MutexBlock[T]]:
    """`asynccontextmanager` for a mutex method ``(self, key, ...)``, whose result
    refuses `await` and a plain `with` with an error saying how to write it."""
    opened = asynccontextmanager(fn)

    @wraps(fn)
    def block(*args: P.args, **kwargs: P.kwargs) -> MutexBlock[T]:
        key = args[1] if len(args) > 1 else kwargs.get("key")
        return MutexBlock(key, lambda: opened(*args, **kwargs))

    return block
