"""The `Workflow` context handed to workflow code.

A workflow function runs from the top on every resume (checkpoint, don't
replay code): a step that completed returns its recorded result at once; only
unfinished work runs again. Completed steps are loaded once when the run is
opened, so a cached step costs a dictionary lookup and a fresh step costs two
small transactions (start marker, completion), whatever the run's length.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from ._control import HandBack
from ._failure import error_json
from ._mutex_guard import check_not_held, holding
from ._names import check_name as _check_key
from ._owners import new_owner
from ._results import dump_result, load_result
from ._step_threads import StepThreads
from .clock import Clock
from .errors import (
    InvalidArgumentError,
    LeaseConflictError,
    MutexTimeoutError,
    RunCancelledError,
    StaleOwnerError,
    StepFailedError,
    StepTimeoutError,
    StoreError,
)
from .fanout import ITEM_PATH, ForEachSummary, run_for_each
from .record import LeaseRecord, RunRecord
from .retry import RetryPolicy, as_policy
from .serde import dump_json, load_json, return_type_of
from .store import Fence, LockOutcome, LockRow, NewEvent, RunRow, StepRow, StepStatus, Store
from .waiting import Host, WaitsMixin

__all__ = ["MutexHandle", "StepContext", "Workflow"]

T = TypeVar("T")
R = TypeVar("R")

MUTEX_SCOPE = "mutex"
DEFAULT_MUTEX_TTL = 30.0
MUTEX_NOTE_EVERY = 5.0  # seconds between log lines while a mutex is awaited
COMPLETION_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)  # seconds, ~6 s in all

log = logging.getLogger("tether")


LEASE_SCOPE = "lease"  # leases are exclusive across runs and processes by default


def lease_scope(workflow_id: str) -> str:
    """The scope of leases kept inside one run (``scope="run"``)."""
    return f"lease:{workflow_id}"


def _lease_scope(scope: str, workflow_id: str) -> str:
    if scope == "global":
        return LEASE_SCOPE
    if scope == "run":
        return lease_scope(workflow_id)
    raise InvalidArgumentError(
        f'lease scope must be "global" (exclusive across runs) or "run", got {scope!r}'
    )


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step function that accepts one argument."""

    name: str
    attempt: int
    max_attempts: int
    workflow_id: str


@dataclass(slots=True)
class MutexHandle:
    """A held mutex. `lost` turns true if renewal found another holder."""

    key: str
    holder: str
    lost: bool = False


class Waker:
    """Wakes in-process mutex waiters when a holder in this process releases.

    Waiters in other processes fall back to polling; this only saves the
    common case of contention between tasks of one process from spinning.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def wait(self, key: str, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: str) -> None:
        for fut in self._waiters.get(key, ()):
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class Runtime:
    """What every Workflow of one App shares."""

    store: Store
    clock: Clock
    owner: str = field(default_factory=new_owner)
    waker: Waker = field(default_factory=Waker)
    draining: bool = False  # the process is shutting down: start no more steps
    # sync step functions run here; `threads.shutdown(wait, timeout)` waits for them at exit
    threads: StepThreads = field(default_factory=StepThreads)


EventHook = Callable[[str, str, "str | None", Any], None]


@functools.lru_cache(maxsize=4096)
def _accepts_context(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(params) >= 1


def _wants_context(fn: Callable[..., Any]) -> bool:
    try:
        return _accepts_context(fn)
    except TypeError:  # unhashable callable
        return _accepts_context.__wrapped__(fn)


def _is_async_uncached(fn: Callable[..., Any]) -> bool:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004
    )


_is_async_cached = functools.lru_cache(maxsize=4096)(_is_async_uncached)


def _is_async(fn: Callable[..., Any]) -> bool:
    try:
        return _is_async_cached(fn)
    except TypeError:  # unhashable callable
        return _is_async_uncached(fn)


def _ended(
    row: StepRow,
    status: StepStatus,
    result: str | None,
    error: str | None,
    completed_at: datetime | None,
) -> StepRow:
    """`row` after the step ended (what `dataclasses.replace` gives, without its cost)."""
    return StepRow(
        row.workflow_id,
        row.key,
        row.name,
        status,
        row.attempts,
        row.idempotency_key,
        result,
        error,
        row.started_at,
        completed_at if completed_at is not None else row.completed_at,
        row.updated_at,
    )


async def _call_step(
    fn: Callable[..., Any], args: tuple[Any, ...], is_async: bool, threads: StepThreads
) -> Any:
    if is_async:
        return await fn(*args)
    result = await threads.run(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Workflow(WaitsMixin):
    """The durable context of one run: steps, waits, mutexes, leases, heartbeats, state."""

    def __init__(
        self,
        runtime: Runtime,
        run: RunRow,
        *,
        generation: int | None,
        steps: Iterable[StepRow] = (),
        on_event: EventHook | None = None,
        owns_store: bool = False,
        host: Host | None = None,
        timeout: float | None = None,
        compensating: bool = False,
    ) -> None:
        self._rt = runtime
        self._store = runtime.store
        self._clock = runtime.clock
        self._run = run
        self._fence = Fence(run.workflow_id, generation, compensating)
        self._steps: dict[str, StepRow] = {s.key: s for s in steps}
        self._step_locks: dict[str, asyncio.Lock] = {}
        self._state: Any = load_json(run.state)
        self._on_event = on_event
        self._owns_store = owns_store
        self._host = host
        self._counters: dict[str, int] = {}
        self._blocked_on: list[str] = []
        self._compensations: list[tuple[str, Callable[[Any], Any], Any]] = []
        self._compensating = compensating
        self._timeout = timeout
        self._compute_before = run.compute_seconds
        self._exec_started = runtime.clock.now()
        self.in_flight: set[str] = set()  # steps whose function is running now
        self._occurrences: dict[str, int] = {}  # step name -> calls so far in this drive

    # -- identity ------------------------------------------------------------------

    @property
    def workflow_name(self) -> str:
        return self._run.workflow_name

    @property
    def workflow_version(self) -> str | None:
        return self._run.workflow_version

    @property
    def generation(self) -> int | None:
        """The owner generation this context writes with (None: unfenced observer)."""
        return self._fence.generation

    @property
    def state(self) -> Any:
        """The durable state as last written by this context (or loaded)."""
        return self._state

    def _emit(self, type_: str, message: str | None = None, detail: Any = None) -> None:
        if self._on_event is not None:
            self._on_event(self.workflow_id, type_, message, detail)

    # -- steps ---------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *,
        idempotency_key: str | None = None,
        retry: int | RetryPolicy | None = None,
        compensate: Callable[..., Any] | None = None,
        timeout: float | None = None,
        result_type: Any = None,
    ) -> T:
        """Run `fn` once for this run and record its result; return the record on replay.

        A step is identified by its name and its occurrence: the second
        ``step("call-llm", ...)`` of a run is a new step, recorded as
        ``call-llm#2`` (inside `for_each` item i, ``call-llm[i]``), so a loop
        gets a fresh answer each turn and a replay gets them back in order.
        With an `idempotency_key` the identity is the name and the key
        (``name@key``): a second call with both equal returns the first
        call's result without calling `fn`.

        `fn` may be sync (run in a step thread) or async, and receives a
        `StepContext` if it takes an argument. The result must be JSON data, a
        pydantic model or anything pydantic can dump; if `fn` declares its
        return type, a cached result is validated back into that type.

        `compensate` undoes the step if the run later fails (or is cancelled
        with compensation): compensations of completed steps run in reverse
        order, each once, recorded like steps. Like `fn`, it takes what it
        declares: nothing, the step's result, or a `StepContext` and the result.

        The first run returns exactly what a replay will: the result typed by
        `fn`'s declared return type or `result_type`, a pydantic model or
        dataclass revived as its class, or plain JSON; a value that would come
        back different (a tuple, a set, a date, a dict with int keys) without
        a declared type is refused with `NotSerializableError`.

        `timeout` (seconds) ends an attempt that runs longer as a failed attempt
        with `StepTimeoutError`, retried as the policy says: an async `fn` is
        cancelled; a sync one cannot be, and its late result is discarded.
        """
        if not callable(fn):
            raise InvalidArgumentError(
                f"step {name!r}: fn must be callable (a function, a lambda or an async def), "
                f"got {type(fn).__name__} {fn!r}; e.g. wf.step({name!r}, lambda: value)"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise InvalidArgumentError(
                f"timeout of step {name!r} must be a number of seconds > 0, got {timeout!r}"
            )
        tp = return_type_of(fn) if result_type is None else result_type
        _check_key("step name", name)
        if idempotency_key is not None:
            _check_key(f"idempotency_key of step {name!r}", idempotency_key)
        name = self._identity(name, idempotency_key)
        done = self._steps.get(name)
        if (
            done is not None
            and done.status is StepStatus.COMPLETED
            and done.idempotency_key == idempotency_key
        ):
            value = cast(T, load_result(done.result, tp))
            if compensate is not None:
                self._compensations.append((name, compensate, value))
            return value
        if compensate is not None and not callable(compensate):
            raise InvalidArgumentError(f"compensate of step {name!r} must be callable")
        if self._compensating:
            raise RunCancelledError(self.workflow_id)
        self._check_budget()
        policy = as_policy(retry)
        lock = self._step_locks.get(name)
        if lock is None:
            lock = self._step_locks[name] = asyncio.Lock()
        async with lock:
            value = cast(T, await self._execute(name, fn, idempotency_key, policy, tp, timeout))
        if compensate is not None:
            self._compensations.append((name, compensate, value))
        return value

    def _identity(self, name: str, idempotency_key: str | None) -> str:
        """The step's key in the run's record: its name and occurrence (``name``,
        ``name#2``, ...; ``name[i]`` inside `for_each` item i), or its name and
        idempotency key (``name@key``: a second call with both equal is answered
        from the record). Runs recorded before this rule name a step by its name."""
        if self._run.step_rule < 2:
            return name
        if idempotency_key is not None:
            return f"{name}@{idempotency_key}"
        base = name + "".join(f"[{i}]" for i in ITEM_PATH.get())
        n = self._occurrences.get(base, 0) + 1
        self._occurrences[base] = n
        return base if n == 1 else f"{base}#{n}"

    async def _execute(
        self,
        name: str,
        fn: Callable[..., Any],
        idempotency_key: str | None,
        policy: RetryPolicy,
        tp: Any,
        timeout: float | None = None,
    ) -> Any:
        prior_row = self._steps.get(name)
        if prior_row is not None and prior_row.idempotency_key == idempotency_key:
            if prior_row.status is StepStatus.COMPLETED:  # finished while we waited
                return load_result(prior_row.result, tp)
            prior = prior_row.attempts
            interrupted = prior_row.status is StepStatus.RUNNING
        else:
            prior, interrupted = 0, False
        budget = policy.attempts + (policy.interrupted_reruns if interrupted else 0)
        if prior >= budget and prior_row is not None:
            err = load_json(prior_row.error) or {}
            raise StepFailedError(
                name,
                prior,
                err.get("type", "Interrupted"),
                err.get("message", "attempts were used up by an earlier process"),
            )
        with_ctx = _wants_context(fn)
        is_async = _is_async(fn)
        while True:
            if self._rt.draining:  # shutting down: hand the run back, start nothing new
                raise HandBack()
            attempt = prior + 1
            row = await self._store.start_step(
                self._fence,
                name,
                idempotency_key=idempotency_key,
                at=self._clock.now(),
                event=NewEvent("step.started", name, f'{{"attempt":{attempt}}}'),
            )
            self._steps[name] = row
            attempt = row.attempts
            self._emit("step.started", name, {"attempt": attempt})
            args = (
                (StepContext(name, attempt, policy.attempts, self.workflow_id),) if with_ctx else ()
            )
            self.in_flight.add(name)
            try:
                if timeout is None:
                    result = await _call_step(fn, args, is_async, self._rt.threads)
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            result = await _call_step(fn, args, is_async, self._rt.threads)
                    except TimeoutError as exc:
                        raise StepTimeoutError(name, timeout) from exc
            except Exception as exc:
                self.in_flight.discard(name)
                again = attempt < policy.attempts and policy.retries(exc)
                err = error_json(exc)
                await self._store.fail_step(
                    self._fence,
                    name,
                    error=err,
                    final=not again,
                    at=self._clock.now(),
                    event=NewEvent(
                        "step.retrying" if again else "step.failed",
                        name,
                        dump_json(
                            {"attempt": attempt, "error": f"{type(exc).__name__}: {exc}"},
                            what="event detail",
                        ),
                    ),
                )
                self._steps[name] = _ended(row, StepStatus.FAILED, row.result, err, None)
                self._emit("step.retrying" if again else "step.failed", name, {"attempt": attempt})
                if not again:
                    raise
                await self._clock.sleep(policy.delay(attempt))
                prior = attempt
                continue
            self.in_flight.discard(name)
            try:
                text = dump_result(result, what=f"the result of step {name!r}", tp=tp)
            except Exception as exc:
                await self._store.fail_step(
                    self._fence,
                    name,
                    error=error_json(exc),
                    final=True,
                    at=self._clock.now(),
                    event=NewEvent("step.failed", name, f'{{"attempt":{attempt}}}'),
                )
                self._emit("step.failed", name, {"attempt": attempt})
                raise
            now = self._clock.now()
            await self._record_completion(name, text, now, attempt)
            self._steps[name] = _ended(row, StepStatus.COMPLETED, text, row.error, now)
            self._emit("step.completed", name, {"attempt": attempt})
            if type(result) in (str, int, bool, type(None)):
                return result  # comes back as itself
            return load_result(text, tp)  # what every replay will return

    async def _record_completion(self, name: str, text: str, at: Any, attempt: int) -> None:
        """Write the step's completion; a database blip here is retried, not given up:
        the side effect is done and its result is in hand, and losing it would make
        the step run again."""
        event = NewEvent("step.completed", name, f'{{"attempt":{attempt}}}')
        for delay in (*COMPLETION_RETRIES, None):
            try:
                await self._store.complete_step(self._fence, name, result=text, at=at, event=event)
                return
            except StaleOwnerError:
                raise  # another owner has the run: not ours to record
            except StoreError as exc:
                if delay is None:
                    raise
                log.warning(
                    "recording step %r of run %s failed (%s); retrying", name, self.workflow_id, exc
                )
                await asyncio.sleep(delay)

    # -- mutexes -----------------------------------------------------------------------

    @asynccontextmanager
    async def mutex(
        self,
        key: str,
        timeout: float = 30.0,
        poll: float = 0.05,
        stale_after: float | None = None,
    ) -> AsyncIterator[MutexHandle]:
        """Hold the keyed mutex `key` across every process sharing the store.

        The holder renews its claim every `stale_after / 3` seconds while the
        block runs; another process may evict it only once it stopped renewing
        for `stale_after` seconds (default 30), i.e. when it died.
        """
        _check_key("mutex key", key)
        check_not_held(self.workflow_id, key)
        if timeout < 0:
            raise InvalidArgumentError(f"mutex timeout must be >= 0 seconds, got {timeout!r}")
        if poll <= 0:
            raise InvalidArgumentError(f"mutex poll must be > 0 seconds, got {poll!r}")
        if stale_after is not None and stale_after <= 0:
            raise InvalidArgumentError(f"stale_after must be > 0 seconds, got {stale_after!r}")
        ttl = DEFAULT_MUTEX_TTL if stale_after is None else float(stale_after)
        handle = MutexHandle(key, self._mutex_holder())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_note = loop.time() + MUTEX_NOTE_EVERY
        while True:
            res = await self._store.acquire_lock(
                MUTEX_SCOPE,
                key,
                handle.holder,
                ttl=ttl,
                now=self._clock.store_time(),
                fence=self._fence,
                on_acquire=NewEvent("mutex.acquired", key),
                at=self._clock.now(),
            )
            if res.outcome is not LockOutcome.CONFLICT:
                break
            if self._rt.draining:
                raise HandBack()
            if await self._take_back(res.row):
                continue  # this run's own dead incarnation held it
            if loop.time() >= next_note:
                next_note = loop.time() + MUTEX_NOTE_EVERY
                log.info(
                    "run %s waits for mutex %r held by %s%s (until %s unless renewed)",
                    self.workflow_id,
                    key,
                    res.row.holder,
                    f" of run {res.row.run_id}" if res.row.run_id else "",
                    res.row.expires_at.isoformat(),
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MutexTimeoutError(key, timeout, res.row.holder)
            await self._rt.waker.wait(key, min(poll, remaining))
        self._emit("mutex.acquired", key)
        renewer = asyncio.ensure_future(self._renew(handle, ttl))
        try:
            with holding(self.workflow_id, key):
                yield handle
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await asyncio.shield(self._release_mutex(handle))

    def _mutex_holder(self) -> str:
        """Who holds a mutex: this process, this run's owner generation, this hold."""
        gen = "" if self.generation is None else f"/g{self.generation}"
        return f"{self._rt.owner}{gen}/{uuid.uuid4().hex[:8]}"

    async def _take_back(self, row: LockRow) -> bool:
        """A mutex held by an earlier owner generation of this same run belongs to the
        run: its holder died (we own the run now), so release it at once instead of
        waiting out its claim. True if released."""
        if row.run_id != self.workflow_id or self.generation is None:
            return False
        parts = row.holder.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].startswith("g") or not parts[1][1:].isdigit():
            return False
        if int(parts[1][1:]) >= self.generation:
            return False  # a concurrent branch of this very incarnation
        released = await self._store.release_lock(
            MUTEX_SCOPE,
            row.key,
            row.holder,
            now=self._clock.store_time(),
            fence=self._fence,
            event=NewEvent(
                "mutex.taken_back", row.key, dump_json({"from": row.holder}, what="event")
            ),
            at=self._clock.now(),
        )
        return released is not None and released.outcome is not LockOutcome.CONFLICT

    async def _renew(self, handle: MutexHandle, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            row = await self._store.renew_lock(
                MUTEX_SCOPE, handle.key, handle.holder, ttl=ttl, now=self._clock.store_time()
            )
            if row is None:
                handle.lost = True
                return

    async def _release_mutex(self, handle: MutexHandle) -> None:
        try:
            await self._store.release_lock(
                MUTEX_SCOPE,
                handle.key,
                handle.holder,
                now=self._clock.store_time(),
                fence=self._fence,
                event=NewEvent("mutex.released", handle.key),
                at=self._clock.now(),
            )
        finally:
            self._rt.waker.notify(handle.key)
        self._emit("mutex.released", handle.key)

    async def with_mutex(
        self,
        key: str,
        fn: Callable[[], Awaitable[T]] | Callable[[], T],
        *,
        timeout: float = 30.0,
        poll: float = 0.05,
        stale_after: float | None = None,
    ) -> T:
        """Call `fn` while holding mutex `key`; sync `fn` runs in a worker thread."""
        async with self.mutex(key, timeout=timeout, poll=poll, stale_after=stale_after):
            if _is_async(fn):
                return await cast(Callable[[], Awaitable[T]], fn)()
            out = await asyncio.to_thread(fn)
            if inspect.isawaitable(out):
                return cast(T, await out)
            return cast(T, out)

    # -- heartbeats and leases --------------------------------------------------------

    async def heartbeat(self, key: str, detail: Any = None) -> None:
        """Record that `key` (a worker, a phase) is alive, with an optional detail."""
        _check_key("heartbeat key", key)
        text = None if detail is None else dump_json(detail, what=f"heartbeat {key!r} detail")
        await self._store.record_heartbeat(
            self._fence, key, text, self._clock.now(), NewEvent("heartbeat.recorded", key, text)
        )
        self._emit("heartbeat.recorded", key, detail)

    async def touch_lease(
        self, key: str, *, holder: str, ttl: float, detail: Any = None, scope: str = "global"
    ) -> LeaseRecord:
        """Acquire lease `key` for `holder` for `ttl` seconds, or renew it in place.

        Raises `LeaseConflictError` while another holder's lease is active. A
        lease is exclusive across every run and process sharing the store;
        with ``scope="run"`` it is kept inside this run only (the seed's
        record), and other runs may hold a lease of the same key.
        """
        where = _lease_scope(scope, self.workflow_id)
        _check_key("lease key", key)
        _check_key("lease holder", holder)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise InvalidArgumentError(f"lease ttl must be a number of seconds > 0, got {ttl!r}")
        text = None if detail is None else dump_json(detail, what=f"lease {key!r} detail")
        res = await self._store.acquire_lock(
            where,
            key,
            holder,
            ttl=float(ttl),
            now=self._clock.store_time(),
            fence=self._fence,
            detail=text,
            on_acquire=NewEvent("lease.acquired", key, dump_json({"holder": holder}, what="event")),
            on_renew=NewEvent("lease.renewed", key, dump_json({"holder": holder}, what="event")),
            at=self._clock.now(),
        )
        if res.outcome is LockOutcome.CONFLICT:
            raise LeaseConflictError(key, holder, res.row.holder, res.row.expires_at)
        self._emit(f"lease.{res.outcome.value}", key, {"holder": holder})
        return LeaseRecord.from_row(res.row)

    async def release_lease(
        self, key: str, holder: str | None = None, *, scope: str = "global"
    ) -> bool:
        """Release lease `key`; with `holder`, only if that holder holds it.

        Returns False when there was no active lease to release.
        """
        where = _lease_scope(scope, self.workflow_id)
        _check_key("lease key", key)
        if holder is not None:
            _check_key("lease holder", holder)
        res = await self._store.release_lock(
            where,
            key,
            holder,
            now=self._clock.store_time(),
            fence=self._fence,
            event=NewEvent("lease.released", key),
            at=self._clock.now(),
        )
        if res is None:
            return False
        if res.outcome is LockOutcome.CONFLICT:
            raise LeaseConflictError(key, holder or "", res.row.holder, res.row.expires_at)
        self._emit("lease.released", key)
        return True

    # -- fan-out -----------------------------------------------------------------------

    async def for_each(
        self,
        items: Iterable[T],
        fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
        *,
        max_parallel: int = 1,
        mutex_key: Callable[[T], str] | None = None,
        stop_on_error: bool = True,
        stale_after: float | None = None,
    ) -> ForEachSummary[T, R]:
        """Run `fn(item)` for each item, at most `max_parallel` at once.

        Items with equal `mutex_key(item)` never overlap (here or in any other
        process using the same key). Returns every outcome in input order; with
        `stop_on_error`, the first failure stops new items from starting and
        raises `ForEachError` carrying the summary. `stale_after` is passed to
        each item's mutex (see `mutex`).
        """
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise InvalidArgumentError(
                f"for_each needs an iterable of items (a list, a tuple, a generator), got "
                f"{type(items).__name__} {items!r}; e.g. wf.for_each([a, b], fn)"
            )
        if not callable(fn):
            raise InvalidArgumentError(
                f"for_each needs a function to call on each item, got {type(fn).__name__} "
                f"{fn!r}; e.g. wf.for_each(items, handle_item)"
            )
        return await run_for_each(
            items,
            fn,
            max_parallel=max_parallel,
            mutex_key=mutex_key,
            stop_on_error=stop_on_error,
            hold=lambda key: self.mutex(key, timeout=3600.0, stale_after=stale_after),
        )

    # -- state and events ----------------------------------------------------------------

    async def update_state(self, value_or_fn: Any) -> Any:
        """Replace the durable state with a value, or with `fn(current_state)`."""
        if callable(value_or_fn):
            new = value_or_fn(copy.deepcopy(self._state))
            if inspect.isawaitable(new):
                new = await new
        else:
            new = value_or_fn
        text = dump_json(new, what="workflow state")
        await self._store.set_state(self._fence, text, self._clock.now(), NewEvent("state.updated"))
        self._state = load_json(text)
        self._emit("state.updated")
        return self._state

    async def append_event(self, type: str, message: str | None = None, detail: Any = None) -> None:
        """Append a custom event to the run's history."""
        _check_key("event type", type)
        text = None if detail is None else dump_json(detail, what=f"event {type!r} detail")
        await self._store.append_events(
            self._fence, [NewEvent(type, message, text)], self._clock.now()
        )
        self._emit(type, message, detail)

    async def get_record(self) -> RunRecord:
        """Everything recorded about this run, read fresh from the store."""
        return await load_record(self._store, self.workflow_id)

    # -- lifecycle of a standalone context (open_workflow) ---------------------------

    async def aclose(self) -> None:
        if self._owns_store:
            await self._store.close()

    async def __aenter__(self) -> Workflow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def load_record(store: Store, workflow_id: str) -> RunRecord:
    from .errors import RunNotFoundError

    run = await store.get_run(workflow_id)
    if run is None:
        raise RunNotFoundError(workflow_id)
    steps, events, heartbeats, shared, own = await asyncio.gather(
        store.load_steps(workflow_id),
        store.list_events(workflow_id),
        store.list_heartbeats(workflow_id),
        store.list_locks(LEASE_SCOPE, run_id=workflow_id),
        store.list_locks(lease_scope(workflow_id)),
    )
    return RunRecord.build(run, steps, events, heartbeats, [*shared, *own])
