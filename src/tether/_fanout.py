"""Bounded fan-out: `for_each` and its summary."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ._control import StepExited, Suspend
from ._failure import MAX_ATTRIBUTE, ErrorRecord, error_text, revived, tagged, untagged
from .errors import InvalidArgumentError, StoreError, TetherError
from .serde import to_json_data

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
    _check_args(items, max_parallel, mutex_key, stop_on_error)
    seq = list(items)
    fan = _FanOut(seq, _item_keys(seq, mutex_key), fn, hold, max_parallel, stop_on_error)
    await fan.run()
    return fan.summary()


def _check_args(items: object, max_parallel: object, mutex_key: object, stop: object) -> None:
    """Refuse, before any item starts, what would misbehave only later (or on a resume)."""
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InvalidArgumentError(f"max_parallel must be an integer >= 1, got {max_parallel!r}")
    if mutex_key is not None and not callable(mutex_key):
        raise InvalidArgumentError("mutex_key must be a function of the item returning a str")
    if not isinstance(stop, bool):
        # a truthy "no" or a None would silently decide whether one failure stops the rest
        raise InvalidArgumentError(f"stop_on_error must be True or False, got {stop!r}")
    if isinstance(items, set | frozenset):
        # item i's steps are `name[i]`: a set's order changes between processes (str
        # hashes are salted per process), so a resumed run would hand item i another
        # item's recorded results
        raise InvalidArgumentError(
            f"for_each items must come in a fixed order, and a {type(items).__name__} has "
            "none (it may change in the process that resumes the run, and items would get "
            "each other's recorded steps); pass sorted(items) or a list"
        )


def _item_keys(seq: list[T], mutex_key: Callable[[T], str] | None) -> list[str | None]:
    """Each item's mutex key (None: no mutex), checked."""
    if mutex_key is None:
        return [None] * len(seq)
    keys: list[str | None] = []
    for i, item in enumerate(seq):
        try:
            key = mutex_key(item)
        except Exception as exc:
            raise InvalidArgumentError(
                f"mutex_key raised {type(exc).__name__}: {error_text(exc)} for item {i} "
                f"({item!r}); it must return a non-empty str for every item"
            ) from exc
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
        # items free to start (no key, or the first waiting one of a key none runs), as a
        # heap so they start in input order, and the rest of each key behind it: picking
        # the next item costs no scan of every waiting one (that was quadratic in items)
        self.ready: list[int] = []
        self.queued: dict[str, deque[int]] = {}
        for i, key in enumerate(keys):  # `ready` is built ascending: a heap already
            if key is None:
                self.ready.append(i)
            elif key in self.queued:
                self.queued[key].append(i)
            else:
                self.queued[key] = deque()
                self.ready.append(i)
        self.running: dict[asyncio.Task[R], int] = {}
        self.finished: list[asyncio.Task[R]] = []  # in the order they ended
        self.wake = asyncio.Event()
        self.first_error: BaseException | None = None
        self.suspended: Suspend | None = None
        self.store_error: StoreError | None = None  # the database failed, not the item

    async def run(self) -> None:
        """Run the items to the end (or until one suspends or the store fails)."""
        try:
            while self.ready or self.running:
                if self._may_start():
                    self._start_free()
                if not self.running:
                    break
                # told by each task as it ends: asyncio.wait over every running task
                # on each completion was quadratic in max_parallel
                await self.wake.wait()
                self.wake.clear()
                done, self.finished = self.finished, []
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
        while self.ready and len(self.running) < self.max_parallel:
            i = heapq.heappop(self.ready)
            task = asyncio.ensure_future(self._one(i))
            task.add_done_callback(self._ended)
            self.running[task] = i

    def _ended(self, task: asyncio.Task[R]) -> None:
        self.finished.append(task)
        self.wake.set()

    async def _one(self, i: int) -> R:
        ITEM_PATH.set((*ITEM_PATH.get(), i))  # this task's own context: steps inside know i
        key = self.keys[i]
        try:
            if key is None:
                return await self._call(i)
            async with self.hold(key):
                return await self._call(i)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the item was cancelled (the run stops, the process shuts down)
            # the item's code raised it (a library's, re-raised): its failure, as any
            # other error; as a cancel, it escaped `for_each` and left the run running
            raise _RaisedCancel(exc) from exc
        except (KeyboardInterrupt, SystemExit) as exc:  # the item's own code, not a step's:
            raise StepExited(None, exc) from exc  # as itself it ended the loop under the run

    async def _call(self, i: int) -> R:
        out = self.fn(self.seq[i])
        if inspect.isawaitable(out):
            return await out
        return out

    def _collect(self, task: asyncio.Task[R]) -> None:
        i = self.running.pop(task)
        key = self.keys[i]
        if key is not None and self.queued[key]:
            heapq.heappush(self.ready, self.queued[key].popleft())  # the key is free again
        exc = task.exception()
        if isinstance(exc, _RaisedCancel):
            exc = exc.cancel
        if exc is None:
            self.outcomes[i] = ItemResult(i, self.seq[i], ItemStatus.FULFILLED, value=task.result())
        elif isinstance(exc, StoreError):
            # infrastructure, not the item's failure: start no more, and raise it
            # as it is, so the run stays running and is retried (not failed)
            self.store_error = self.store_error or exc
        elif isinstance(exc, Exception | asyncio.CancelledError):
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


class _RaisedCancel(Exception):
    """Carries a `CancelledError` an item raised itself out of its task (which would
    otherwise end cancelled, as if stopped from outside) to `_collect`."""

    def __init__(self, cancel: asyncio.CancelledError) -> None:
        super().__init__(str(cancel))
        self.cancel = cancel


class ForEachError(TetherError):
    """At least one item of a for_each failed; `summary` holds every item's outcome.

    The first failure is also its ``__cause__``. Raised again from the failed run's
    record (`app.run` of the run's id, in this process or another) it has both: the
    summary comes back with every item's index, status and error (rebuilt as its own
    class where it can be imported, else an ``Exception`` naming it); an item and a
    value come back as the JSON data they were recorded as (a tuple as a tuple, a
    model as its dict), or None when that takes over `MAX_ATTRIBUTE` characters."""

    def __init__(self, summary: ForEachSummary[Any, Any], first_error: BaseException) -> None:
        self.summary = summary
        self.__cause__ = first_error
        super().__init__(
            f"for_each: {summary.rejected} item(s) failed, {summary.fulfilled} succeeded; "
            f"first error: {type(first_error).__name__}: {error_text(first_error)}"
        )

    @property
    def summary(self) -> ForEachSummary[Any, Any]:
        """Every item's outcome, in input order."""
        return getattr(self, "_summary", ForEachSummary(()))

    @summary.setter
    def summary(self, summary: ForEachSummary[Any, Any] | dict[str, Any]) -> None:
        # a dict: the summary's record, set back as the error is revived (`_failure`)
        self._summary = summary if isinstance(summary, ForEachSummary) else _summary_of(summary)

    def _recorded_attributes(self) -> dict[str, Any]:
        """The summary as JSON data, for the run's error record (`_failure`), within
        `SUMMARY_LIMIT` characters: past it the items and values are left out (each
        item's status and error stay), then the errors but the first `_ERRORS_KEPT`,
        then the summary itself; an error record of megabytes was read by every
        `runs show` and replay."""
        results = [_result_data(r) for r in self.summary.results]
        for lighter in (_without_values, _with_few_errors):
            if len(json.dumps(results)) <= SUMMARY_LIMIT:
                break
            results = lighter(results)
        else:
            if len(json.dumps(results)) > SUMMARY_LIMIT:
                return {}
        return {"summary": {"results": results}}

    @property
    def first_error(self) -> BaseException:
        """The first item's failure."""
        cause = self.__cause__
        if cause is None:  # raised again from a record whose cause's class is not here
            raise AttributeError("this ForEachError's first error could not be rebuilt")
        return cause


SUMMARY_LIMIT = 256 * 1024  # characters of JSON a ForEachError's recorded summary may take
_ERRORS_KEPT = 20  # item errors a summary over its limit keeps


def _without_values(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "item": None, "value": None} for r in results]


def _with_few_errors(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    failed = {i for i, r in enumerate(results) if r["error"] is not None}
    dropped = failed - set(sorted(failed)[:_ERRORS_KEPT])
    return [{**r, "error": None} if i in dropped else r for i, r in enumerate(results)]


def _result_data(result: ItemResult[Any, Any]) -> dict[str, Any]:
    error = result.error
    return {
        "index": result.index,
        "item": _value_data(result.item),
        "status": result.status.value,
        "value": _value_data(result.value),
        "error": None
        if error is None
        else replace(ErrorRecord.of(error), traceback=None).to_dict(),
    }


def _value_data(value: Any) -> Any:
    """`value` tagged (`tagged`: a tuple stays a tuple), as JSON data if it is not plain
    (a model); None if neither fits in `MAX_ATTRIBUTE` characters."""
    for plain in (True, False):
        with contextlib.suppress(Exception):
            data = tagged(value if plain else to_json_data(value, what="a for_each item"))
            if len(json.dumps(data, allow_nan=False)) <= MAX_ATTRIBUTE:
                return data
    return None


def _summary_of(data: Any) -> ForEachSummary[Any, Any]:
    """The summary `ForEachError._recorded_attributes` recorded; what does not read is
    left out (an old or hand-made record)."""
    results: list[ItemResult[Any, Any]] = []
    for one in data.get("results", []) if isinstance(data, dict) else []:
        with contextlib.suppress(Exception):
            error = None if one["error"] is None else ErrorRecord.from_dict(one["error"])
            results.append(
                ItemResult(
                    int(one["index"]),
                    untagged(one["item"]),
                    ItemStatus(one["status"]),
                    value=untagged(one["value"]),
                    error=None if error is None else _item_error(error),
                )
            )
    return ForEachSummary(tuple(results))


def _item_error(error: ErrorRecord) -> Exception:
    return revived(error) or Exception(f"{error.type}: {error.message}")
