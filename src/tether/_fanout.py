"""Bounded fan-out: `for_each` and its summary."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ._control import Suspend
from ._failure import error_text
from .errors import InvalidArgumentError, StoreError, TetherError

__all__ = ["ForEachError", "ForEachSummary", "ItemResult", "ItemStatus", "run_for_each"]

# the for_each item indexes a step is called under (outermost first): steps named alike
# in concurrent items get identities by item index, not by who got there first
ITEM_PATH: ContextVar[tuple[int, ...]] = ContextVar("tether_item_path", default=())

T = TypeVar("T")
R = TypeVar("R")


class ItemStatus(StrEnum):
    FULFILLED = "fulfilled"
    REJECTED = "rejected"
    SKIPPED = "skipped"  # never started because an earlier item failed (stop_on_error)


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[T, R]):
    """The outcome of one item, at its input position."""

    index: int
    item: T
    status: ItemStatus
    value: R | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ForEachSummary(Generic[T, R]):
    """Every item's outcome in input order, with counts."""

    results: tuple[ItemResult[T, R], ...]

    @property
    def fulfilled(self) -> int:
        return sum(1 for r in self.results if r.status is ItemStatus.FULFILLED)

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.results if r.status is ItemStatus.REJECTED)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.status is ItemStatus.SKIPPED)

    @property
    def values(self) -> list[R | None]:
        return [r.value for r in self.results]


async def run_for_each(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R] | R],
    *,
    max_parallel: int,
    mutex_key: Callable[[T], str] | None,
    stop_on_error: bool,
    hold: Callable[[str], AbstractAsyncContextManager[Any]],
) -> ForEachSummary[T, R]:
    """Run `fn` over `items`, at most `max_parallel` at once.

    Items whose `mutex_key` is equal never overlap: an item whose key is busy
    is passed over (not waited on) so a free item can use the slot, and each
    item runs inside `hold(key)` (the durable mutex), which also keeps out
    other processes working on the same key.
    """
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InvalidArgumentError(f"max_parallel must be an integer >= 1, got {max_parallel!r}")
    if mutex_key is not None and not callable(mutex_key):
        raise InvalidArgumentError("mutex_key must be a function of the item returning a str")
    seq = list(items)
    fan = _FanOut(seq, _item_keys(seq, mutex_key), fn, hold, max_parallel, stop_on_error)
    await fan.run()
    return fan.summary()


def _item_keys(seq: list[T], mutex_key: Callable[[T], str] | None) -> list[str | None]:
    """Each item's mutex key (None: no mutex), checked."""
    if mutex_key is None:
        return [None] * len(seq)
    keys: list[str | None] = []
    for item in seq:
        key = mutex_key(item)
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(
                f"mutex_key({item!r}) returned {key!r}; it must return a non-empty str"
            )
        keys.append(key)
    return keys


class _FanOut(Generic[T, R]):
    """One `for_each`: which items wait, which run, what each came to."""

    def __init__(
        self,
        seq: list[T],
        keys: list[str | None],
        fn: Callable[[T], Awaitable[R] | R],
        hold: Callable[[str], AbstractAsyncContextManager[Any]],
        max_parallel: int,
        stop_on_error: bool,
    ) -> None:
        self.seq, self.keys, self.fn, self.hold = seq, keys, fn, hold
        self.max_parallel, self.stop_on_error = max_parallel, stop_on_error
        self.outcomes: list[ItemResult[T, R] | None] = [None] * len(seq)
        self.waiting = list(range(len(seq)))
        self.busy: set[str] = set()
        self.running: dict[asyncio.Task[R], int] = {}
        self.first_error: BaseException | None = None
        self.suspended: Suspend | None = None
        self.store_error: StoreError | None = None  # the database failed, not the item

    async def run(self) -> None:
        """Run the items to the end (or until one suspends or the store fails)."""
        try:
            while self.waiting or self.running:
                if self._may_start():
                    self._start_free()
                if not self.running:
                    break
                done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._collect(task)
        finally:
            for task in self.running:
                task.cancel()
            if self.running:
                await asyncio.gather(*self.running, return_exceptions=True)
        if self.store_error is not None:
            raise self.store_error
        if self.suspended is not None and not (self.stop_on_error and self.first_error):
            # a failure that stops the rest is not put off by a sibling's wait: parked,
            # the run would hide it for as long as the wait lasts, then run the item again
            raise self.suspended

    def _may_start(self) -> bool:
        return (
            self.suspended is None
            and self.store_error is None
            and (self.first_error is None or not self.stop_on_error)
        )

    def _start_free(self) -> None:
        """Start waiting items, in order, while there is a slot and their key is free."""
        for i in list(self.waiting):
            if len(self.running) >= self.max_parallel:
                break
            key = self.keys[i]
            if key is not None and key in self.busy:
                continue
            self.waiting.remove(i)
            if key is not None:
                self.busy.add(key)
            self.running[asyncio.ensure_future(self._one(i))] = i

    async def _one(self, i: int) -> R:
        ITEM_PATH.set((*ITEM_PATH.get(), i))  # this task's own context: steps inside know i
        key = self.keys[i]
        if key is None:
            return await self._call(i)
        async with self.hold(key):
            return await self._call(i)

    async def _call(self, i: int) -> R:
        out = self.fn(self.seq[i])
        if inspect.isawaitable(out):
            return await out
        return out

    def _collect(self, task: asyncio.Task[R]) -> None:
        i = self.running.pop(task)
        key = self.keys[i]
        if key is not None:
            self.busy.discard(key)
        exc = task.exception()
        if exc is None:
            self.outcomes[i] = ItemResult(i, self.seq[i], ItemStatus.FULFILLED, value=task.result())
        elif isinstance(exc, StoreError):
            # infrastructure, not the item's failure: start no more, and raise it
            # as it is, so the run stays running and is retried (not failed)
            self.store_error = self.store_error or exc
        elif isinstance(exc, Exception):
            self.outcomes[i] = ItemResult(i, self.seq[i], ItemStatus.REJECTED, error=exc)
            if self.first_error is None:
                self.first_error = exc
        elif isinstance(exc, Suspend):
            # an item must wait: start no more, but let the running ones reach
            # their own waits too, so the run parks on all of them at once
            self.suspended = self.suspended or exc
        else:
            raise exc

    def summary(self) -> ForEachSummary[T, R]:
        """Every item's outcome; `ForEachError` if one failed and that stops the rest."""
        summary = ForEachSummary(
            tuple(
                out if out is not None else ItemResult(i, self.seq[i], ItemStatus.SKIPPED)
                for i, out in enumerate(self.outcomes)
            )
        )
        if self.stop_on_error and self.first_error is not None:
            raise ForEachError(summary, self.first_error)
        return summary


class ForEachError(TetherError):
    """At least one item of a for_each failed; `summary` holds every item's outcome."""

    def __init__(self, summary: ForEachSummary[Any, Any], first_error: BaseException) -> None:
        self.summary = summary
        self.first_error = first_error
        super().__init__(
            f"for_each: {summary.rejected} item(s) failed, {summary.fulfilled} succeeded; "
            f"first error: {type(first_error).__name__}: {error_text(first_error)}"
        )
