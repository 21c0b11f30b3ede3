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
    keys: list[str | None] = []
    for item in seq:
        if mutex_key is None:
            keys.append(None)
            continue
        key = mutex_key(item)
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(
                f"mutex_key({item!r}) returned {key!r}; it must return a non-empty str"
            )
        keys.append(key)

    async def one(i: int) -> R:
        ITEM_PATH.set((*ITEM_PATH.get(), i))  # this task's own context: steps inside know i

        async def call() -> R:
            out = fn(seq[i])
            if inspect.isawaitable(out):
                return await out
            return out

        key = keys[i]
        if key is None:
            return await call()
        async with hold(key):
            return await call()

    outcomes: list[ItemResult[T, R] | None] = [None] * len(seq)
    waiting = list(range(len(seq)))
    busy: set[str] = set()
    running: dict[asyncio.Task[R], int] = {}
    first_error: BaseException | None = None
    suspended: Suspend | None = None
    store_error: StoreError | None = None  # the database failed, not the item
    try:
        while waiting or running:
            if (
                suspended is None
                and store_error is None
                and (first_error is None or not stop_on_error)
            ):
                for i in list(waiting):
                    if len(running) >= max_parallel:
                        break
                    if keys[i] is not None and keys[i] in busy:
                        continue
                    waiting.remove(i)
                    if keys[i] is not None:
                        busy.add(keys[i])  # type: ignore[arg-type]
                    running[asyncio.ensure_future(one(i))] = i
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = running.pop(task)
                if keys[i] is not None:
                    busy.discard(keys[i])
                exc = task.exception()
                if exc is None:
                    outcomes[i] = ItemResult(i, seq[i], ItemStatus.FULFILLED, value=task.result())
                elif isinstance(exc, StoreError):
                    # infrastructure, not the item's failure: start no more, and raise it
                    # as it is, so the run stays running and is retried (not failed)
                    store_error = store_error or exc
                elif isinstance(exc, Exception):
                    outcomes[i] = ItemResult(i, seq[i], ItemStatus.REJECTED, error=exc)
                    if first_error is None:
                        first_error = exc
                elif isinstance(exc, Suspend):
                    # an item must wait: start no more, but let the running ones reach
                    # their own waits too, so the run parks on all of them at once
                    suspended = suspended or exc
                else:
                    raise exc
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    if store_error is not None:
        raise store_error
    if suspended is not None:
        raise suspended
    summary = ForEachSummary(
        tuple(
            out if out is not None else ItemResult(i, seq[i], ItemStatus.SKIPPED)
            for i, out in enumerate(outcomes)
        )
    )
    if stop_on_error and first_error is not None:
        raise ForEachError(summary, first_error)
    return summary


class ForEachError(TetherError):
    """At least one item of a for_each failed; `summary` holds every item's outcome."""

    def __init__(self, summary: ForEachSummary[Any, Any], first_error: BaseException) -> None:
        self.summary = summary
        self.first_error = first_error
        super().__init__(
            f"for_each: {summary.rejected} item(s) failed, {summary.fulfilled} succeeded; "
            f"first error: {type(first_error).__name__}: {first_error}"
        )
