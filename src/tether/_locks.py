"""Mutexes, leases and heartbeats of a run: the store's locks as a workflow uses them."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401 -- its exit hook must run after `_release_at_exit`
import inspect
import logging
import os
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ._control import HandBack, Suspend
from ._durations import check_seconds
from ._floors import at_least
from ._mutex_guard import (
    check_not_held,
    deadlock,
    held_above,
    holding,
    lock_order_hint,
    mutex_block,
)
from ._names import check_name
from ._owners import owner_is_dead, owner_pid
from ._run_state import RunState
from ._runtime import Runtime, Waker
from ._step_threads import watching_abandoned
from ._steps import is_async
from .clock import Clock
from .errors import (
    InvalidArgumentError,
    LeaseConflictError,
    MutexTimeoutError,
    RunCancelledError,
    StaleOwnerError,
)
from .record import LeaseRecord
from .serde import dump_json
from .store import (
    LockOutcome,
    LockResult,
    LockRow,
    NewEvent,
    RunStatus,
    Store,
    WaitKind,
    WaitStatus,
    kept_attempt,
    kept_detail,
    open_store,
)

__all__ = ["LEASE_SCOPE", "Locks", "MutexHandle", "lease_scope"]

T = TypeVar("T")

MUTEX_SCOPE = "mutex"
DEFAULT_MUTEX_TTL = 30.0
MUTEX_NOTE_EVERY = 5.0  # seconds between log lines while a mutex is awaited
CANCEL_CHECK_EVERY = 1.0  # seconds between looks, while a mutex is awaited, for a cancel
_MAX_ANCESTORS = 64  # how far up a deadlocked wait for a mutex is looked for

LEASE_SCOPE = "lease"  # leases are exclusive across runs and processes by default

# the least each lock timing may be: (its floor in seconds, why not less, what to pass).
# 1e-9 s passed the check for "above 0": a poll that small spun a CPU against the
# database, and a claim that short lapsed between two writes of a live holder.
MUTEX_POLL_FLOOR = (
    0.005,
    "a waiter asks the database again every poll (a release in this process wakes "
    "its waiters at once anyway); a shorter poll only keeps a CPU and the database busy",
    "poll=0.05 (the default)",
)
MUTEX_STALE_FLOOR = (
    0.3,
    "the holder renews its claim every third of stale_after, and another process may "
    "take the mutex once a renewal is that late; a shorter one lapses within a database "
    "round trip or a busy event loop, letting another holder in beside a live one",
    f"stale_after={DEFAULT_MUTEX_TTL:g} (the default)",
)
LEASE_TTL_FLOOR = (
    1.0,
    "nothing renews a lease but the holder's next touch_lease, a recorded write; a "
    "shorter one lapses between two writes of a live holder, and another takes it",
    "ttl=30 (then touch the lease again well within it)",
)

log = logging.getLogger("tether")


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


# releases put off until a block's abandoned steps return (kept from garbage collection)
_LATER: set[asyncio.Future[None]] = set()


@dataclass(frozen=True, slots=True)
class _Kept:
    """A mutex kept past its block for the sync steps it gave up on, until they return."""

    url: str  # the database it is held in
    key: str
    holder: str
    clock: Clock
    pid: int  # the process whose steps it waits for (a forked child inherits the entry)


# by holder: the keys to release if the process exits before those steps return
_KEPT: dict[str, _Kept] = {}


@dataclass(slots=True)
class MutexHandle:
    """A held mutex. `lost` turns true if renewal found another holder."""

    key: str
    holder: str
    lost: bool = False


def _check_mutex_args(key: str, timeout: float, poll: float, stale_after: float | None) -> float:
    """The mutex's ttl, once its arguments are checked."""
    check_name("mutex key", key)
    check_seconds("mutex timeout", timeout)
    at_least("mutex poll", check_seconds("mutex poll", poll, positive=True), *MUTEX_POLL_FLOOR)
    if stale_after is None:
        return DEFAULT_MUTEX_TTL
    stale = check_seconds("stale_after", stale_after, positive=True)
    return at_least("stale_after", stale, *MUTEX_STALE_FLOOR)


class Locks:
    """The lock verbs of one run's context (see `Workflow.mutex` and friends)."""

    def __init__(self, rt: Runtime, run: RunState) -> None:
        self._rt = rt
        self._run = run

    # -- mutexes -------------------------------------------------------------------

    @mutex_block
    async def mutex(
        self, key: str, timeout: float, poll: float, stale_after: float | None
    ) -> AsyncIterator[MutexHandle]:
        ttl = _check_mutex_args(key, timeout, poll, stale_after)
        check_not_held(self._run.workflow_id, key)
        handle = MutexHandle(key, self._mutex_holder())
        await self._acquire(handle, ttl, timeout, poll)
        self._run.emit("mutex.acquired", key)
        renewer = asyncio.ensure_future(self._renew(handle, ttl))
        parked = False
        try:
            with holding(self._run.workflow_id, key), watching_abandoned() as stragglers:
                yield handle
        except Suspend as exc:  # the run parks inside the block: it keeps the mutex
            parked = not isinstance(exc, HandBack)
            raise
        finally:
            running = [f for f in stragglers if not f.done()]
            if running and not parked:  # its steps still run: the key is kept till they end
                self._release_later(handle, renewer, running)
            else:
                renewer.cancel()
                await asyncio.gather(renewer, return_exceptions=True)
                leave = self._keep_parked(handle, ttl) if parked else self._release_mutex(handle)
                await asyncio.shield(leave)

    def _release_later(
        self, handle: MutexHandle, renewer: asyncio.Future[None], running: list[Any]
    ) -> None:
        """Leave the block, but keep its key (renewed) until the sync steps it gave up on
        (a step timeout) have returned: a thread cannot be stopped, and releasing at
        once let the next holder in beside a side effect still under way. Nor is it
        released when the loop ends first (the App closed): the process, and those
        steps with it, may live on. It is released when the process exits (the steps
        die with it: `_release_at_exit`), or lapses `stale_after` after its last
        renewal if the process outlives its loop."""
        log.warning(
            "run %s left mutex %r with %d timed-out step(s) still running: the mutex is "
            "released when they return (or when this process exits)",
            self._run.workflow_id,
            handle.key,
            len(running),
        )
        url = getattr(self._rt.store, "url", None)
        if isinstance(url, str) and ":memory:" not in url:  # (a memory database dies too)
            kept = _Kept(url, handle.key, handle.holder, self._rt.clock, os.getpid())
            _KEPT[handle.holder] = kept

        async def release() -> None:
            try:
                await asyncio.gather(*running, return_exceptions=True)
            finally:  # (cancelled: the loop ends while they run; the key stays held)
                renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._release_mutex(handle)
            _KEPT.pop(handle.holder, None)

        _LATER.add(task := asyncio.ensure_future(release()))
        task.add_done_callback(_LATER.discard)

    async def _acquire(self, handle: MutexHandle, ttl: float, timeout: float, poll: float) -> None:
        """Try until the mutex is ours (`MutexTimeoutError` after `timeout` seconds; on a
        fake clock also once it is moved past them, as a holder's lease lapses: a test
        waited out `timeout` real seconds for a holder parked on the fake clock).
        Waiters of this process try in the order they came (`_in_line`): a task that
        released the key and asked again at once took it back before any waiter woke,
        and starved them until they timed out."""
        loop = asyncio.get_running_loop()
        waited = _stopwatch(self._rt.clock, loop)
        looks = _Looks(loop)
        with _in_line(self._rt.waker, handle.key) as place:
            while True:
                tried = place.first() or waited() >= timeout
                if tried:
                    async with self._let_go_unless_done(handle):
                        res = await self._lock(handle, ttl, NewEvent("mutex.acquired", handle.key))
                    if res.outcome is not LockOutcome.CONFLICT:
                        return
                    row: LockRow | None = res.row
                else:  # another waiter here goes first: look at the holder, take nothing
                    row = await self._rt.store.get_lock(MUTEX_SCOPE, handle.key)
                if await self._between_tries(handle, ttl, row, looks, place):
                    continue
                remaining = timeout - waited()
                if remaining <= 0 and tried and row is not None:
                    raise self._timed_out(handle.key, timeout, row)
                await self._rt.waker.wait(handle.key, max(0.0, min(poll, remaining)))

    async def _between_tries(
        self, handle: MutexHandle, ttl: float, row: LockRow | None, looks: _Looks, place: _Place
    ) -> bool:
        """What a waiter does while `row`'s holder keeps the key: stop if the App drains
        or the run is cancelled, or at once on a deadlock; True if it took the key back
        (from this run's dead incarnation) or freed it (a process gone): try again."""
        key = handle.key
        if self._rt.draining:
            raise self._run.unwind(HandBack())
        if looks.due("check", CANCEL_CHECK_EVERY):
            await self._check_not_cancelled()
        if row is None or row.released_at is not None:
            return False
        if self._earlier_self(row):  # the run's own: it goes on in its block, ahead of all
            place.to_front()  # (its next try, a renewal, is this waiter's)
            async with self._let_go_unless_done(handle):
                if await self._take_back(handle, ttl, row):
                    return True
        if await self._evict_dead(row):
            return True
        if not looks.asked_above:  # (once: a holder awaiting this run holds on till it ends)
            looks.asked_above = True
            how = await self._awaited_by(row)
            if how is not None:
                raise deadlock(self._run.workflow_id, key, str(row.run_id), how)
        if looks.due("note", MUTEX_NOTE_EVERY):
            self._note_waiting(key, row)
        return False

    async def _check_not_cancelled(self) -> None:
        """Stop waiting for a mutex once the run is cancelled (from any process): a
        refused try writes nothing, so no fence told the waiter, which went on asking
        until its timeout (an hour for a `for_each` item) and only then ended cancelled."""
        run = await self._rt.store.get_run(self._run.workflow_id)
        if run is not None and run.status is RunStatus.CANCELLED:
            raise RunCancelledError(self._run.workflow_id)

    def _timed_out(self, key: str, timeout: float, row: LockRow) -> MutexTimeoutError:
        """The error of a wait for `key` that ran out. Asked inside another mutex's block,
        it says the two may be a deadlock (nested mutexes taken in opposite orders):
        the bare timeout left a user hunting for a holder that never releases."""
        parked = kept_attempt(row.detail) is not None
        hint = None if parked else lock_order_hint(self._run.workflow_id, key, row.run_id)
        return MutexTimeoutError(
            key, timeout, row.holder, run_id=row.run_id, parked=parked, hint=hint or None
        )

    async def _awaited_by(self, row: LockRow) -> str | None:
        """How the run holding the mutex waits for this one to end ("": it drives this run
        inline, in this task; ", parked,": parked in its block), else None."""
        holder = row.run_id
        if holder is None or holder == self._run.workflow_id:
            return None
        if held_above(self._run.workflow_id, row.key) == holder and await self._ancestor(holder):
            return ""
        if kept_attempt(row.detail) is not None and await self._awaits_this(holder):
            return ", parked,"
        return None

    async def _ancestor(self, run_id: str) -> bool:
        """Whether `run_id` is this run's parent, or its parent's, and so on up."""
        async for _, above in self._lineage():
            if above == run_id:
                return True
        return False

    async def _awaits_this(self, holder: str) -> bool:
        """Whether `holder` is an ancestor of this run that waits, child by child down
        to this run, for it to end (so a mutex it keeps while parked is never let go)."""
        async for below, above in self._lineage():
            if not any(
                w.kind is WaitKind.RUN and w.name == below and w.status is WaitStatus.PENDING
                for w in await self._rt.store.list_waits(above)
            ):
                return False
            if above == holder:
                return True
        return False

    async def _lineage(self) -> AsyncIterator[tuple[str, str]]:
        """(a run, its parent) from this run up, read as far as the caller goes."""
        below, above = self._run.workflow_id, self._run.run.parent_id
        for _ in range(_MAX_ANCESTORS):
            if above is None:
                return
            yield below, above
            run = await self._rt.store.get_run(above)
            below, above = above, run.parent_id if run is not None else None

    def _note_waiting(self, key: str, row: LockRow) -> None:
        until = (
            "kept while that run is parked inside its block"
            if kept_attempt(row.detail) is not None
            else f"until {row.expires_at.isoformat()} unless renewed"
        )
        log.info(
            "run %s waits for mutex %r held by %s%s (%s)",
            self._run.workflow_id,
            key,
            row.holder,
            f" of run {row.run_id}" if row.run_id else "",
            until,
        )

    def _mutex_holder(self) -> str:
        """Who holds a mutex: this process, this run's owner generation, this hold."""
        generation = self._run.fence.generation
        gen = "" if generation is None else f"/g{generation}"
        return f"{self._rt.owner}{gen}/{uuid.uuid4().hex[:8]}"

    def _earlier_self(self, row: LockRow) -> bool:
        """Whether `row` is held by an earlier owner generation of this same run."""
        generation = self._run.fence.generation
        if row.run_id != self._run.workflow_id or generation is None:
            return False
        parts = row.holder.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].startswith("g") or not parts[1][1:].isdigit():
            return False
        return int(parts[1][1:]) < generation  # (not a concurrent branch of this one)

    async def _take_back(self, handle: MutexHandle, ttl: float, row: LockRow) -> bool:
        """A mutex held by an earlier owner generation of this same run belongs to the
        run: its holder died (we own the run now), so the hold passes to `handle` at
        once instead of waiting out its claim, in one change (a release, then an
        acquire, let a waiter of another process polling in between take the key while
        the resumed run went on in its block). True if it is ours."""
        if not self._earlier_self(row):
            return False
        taken = NewEvent("mutex.taken_back", row.key, dump_json({"from": row.holder}, what="event"))
        res = await self._lock(
            handle, ttl, NewEvent("mutex.acquired", row.key), take_from=row.holder, on_take=taken
        )
        return res.outcome is not LockOutcome.CONFLICT

    @asynccontextmanager
    async def _let_go_unless_done(self, handle: MutexHandle) -> AsyncIterator[None]:
        """Release `handle`'s key if a try to take it ends in an error or a cancel: the
        store may have committed it before the reply came (a task cancelled in
        between), and nothing would renew or release it: it stayed held, by nobody,
        until `stale_after`. Shielded; by holder alone (frees no one else's)."""
        try:
            yield
        except BaseException:
            await asyncio.shield(self._let_go(handle))
            raise

    async def _let_go(self, handle: MutexHandle) -> None:
        try:
            await self._release_by_holder(handle)
        except Exception as exc:  # (the database is down: the key lapses instead)
            log.warning(
                "run %s: letting go of mutex %r failed: %s", self._run.workflow_id, handle.key, exc
            )
        self._rt.waker.notify(handle.key)

    async def _evict_dead(self, row: LockRow) -> bool:
        """Release at once, rather than `stale_after` after its last renewal, a mutex
        whose holder's process is known to be gone (on this machine: `owner_is_dead`):
        its block, and any step given up on inside it, died with that process. Not a
        mutex kept by a parked run (the run holds it, not a process), nor one of this
        process (the steps of a closed App may still run here). True if released."""
        owner = row.holder.split("/", 1)[0]
        if kept_attempt(row.detail) is not None or owner_pid(owner) == os.getpid():
            return False
        if not owner_is_dead(owner):
            return False
        released = await self._rt.store.release_lock(
            MUTEX_SCOPE,
            row.key,
            row.holder,
            now=self._rt.clock.store_time(),
            at=self._rt.clock.now(),
        )
        if released is None or released.outcome is LockOutcome.CONFLICT:
            return False
        log.info(
            "run %s: mutex %r was held by %s, a process that is gone: released",
            self._run.workflow_id,
            row.key,
            owner,
        )
        return True

    async def _renew(self, handle: MutexHandle, ttl: float) -> None:
        """Push the claim out every third of `ttl` while the block runs. A renewal that
        fails (the database blinked) is tried again sooner, never given up: a renewer
        that died on one error let the claim lapse under a live holder, and let
        another process into the block beside it."""
        delay = ttl / 3
        while True:
            await asyncio.sleep(delay)
            try:
                row = await self._rt.store.renew_lock(
                    MUTEX_SCOPE, handle.key, handle.holder, ttl=ttl, now=self._rt.clock.store_time()
                )
            except Exception as exc:
                log.warning(
                    "run %s: renewing mutex %r failed (%s); trying again",
                    self._run.workflow_id,
                    handle.key,
                    exc,
                )
                delay = ttl / 6
                continue
            delay = ttl / 3
            if row is None:
                handle.lost = True
                log.warning(
                    "run %s: mutex %r was taken by another holder while its block ran",
                    self._run.workflow_id,
                    handle.key,
                )
                return

    async def _keep_parked(self, handle: MutexHandle, ttl: float) -> None:
        """Keep the mutex for the run, which parks inside the block: no process renews
        it, yet nobody takes it until the run, resumed, leaves the block (its replay
        takes it back, `_take_back`) or ends. A holder evicted meanwhile keeps nothing."""
        kept = NewEvent("mutex.kept", handle.key)
        res = await self._lock(handle, ttl, kept, kept, kept_detail(self._run.run.attempt))
        if res.outcome is not LockOutcome.CONFLICT:
            self._run.emit("mutex.kept", handle.key)

    async def _lock(
        self,
        handle: MutexHandle,
        ttl: float,
        on_acquire: NewEvent,
        on_renew: NewEvent | None = None,
        detail: str | None = None,
        take_from: str | None = None,
        on_take: NewEvent | None = None,
    ) -> LockResult:
        """`acquire_lock` of the mutex for this run (fenced): taken, renewed or refused
        (`take_from`: the hold of this run's dead incarnation, passed on in one change)."""
        return await self._rt.store.acquire_lock(
            MUTEX_SCOPE,
            handle.key,
            handle.holder,
            ttl=ttl,
            now=self._rt.clock.store_time(),
            fence=self._run.fence,
            detail=detail,
            on_acquire=on_acquire,
            on_renew=on_renew,
            take_from=take_from,
            on_take=on_take,
            at=self._rt.clock.now(),
        )

    async def _release_mutex(self, handle: MutexHandle) -> None:
        """Release the mutex, with its event. A run cancelled (or taken over) meanwhile
        refuses the event; the mutex is still released, by its holder alone, so the
        key is free at once rather than after `stale_after` of nobody renewing it."""
        try:
            await self._rt.store.release_lock(
                MUTEX_SCOPE,
                handle.key,
                handle.holder,
                now=self._rt.clock.store_time(),
                fence=self._run.fence,
                event=NewEvent("mutex.released", handle.key),
                at=self._rt.clock.now(),
            )
        except (RunCancelledError, StaleOwnerError):
            # the run's next write says so; a holder-checked release frees no one else's
            await self._release_by_holder(handle)
            return
        finally:
            self._rt.waker.notify(handle.key)
        self._run.emit("mutex.released", handle.key)

    async def _release_by_holder(self, handle: MutexHandle) -> None:
        """Release `handle`'s key with no event and no fence: checked by holder alone,
        it frees no one else's."""
        await self._rt.store.release_lock(
            MUTEX_SCOPE,
            handle.key,
            handle.holder,
            now=self._rt.clock.store_time(),
            at=self._rt.clock.now(),
        )

    async def with_mutex(
        self,
        key: str,
        fn: Callable[[], Awaitable[T]] | Callable[[], T],
        timeout: float,
        poll: float,
        stale_after: float | None,
    ) -> T:
        if not callable(fn):  # refused before the key is taken, not inside the block
            if inspect.iscoroutine(fn):
                fn.close()  # (no "never awaited" warning on top of the error)
            raise InvalidArgumentError(
                f"with_mutex needs a function to call while it holds mutex {key!r}, got "
                f"{type(fn).__name__} {fn!r}; pass the function itself, not its result: "
                f"wf.with_mutex({key!r}, do_work), not wf.with_mutex({key!r}, do_work())"
            )
        async with self.mutex(key, timeout, poll, stale_after):
            if is_async(fn):
                return await cast(Callable[[], Awaitable[T]], fn)()
            # in a step thread: given up on while it runs (an enclosing step's timeout),
            # it keeps the key until it returns, as a sync step in the block does
            out = await self._rt.threads.run(fn)
            if inspect.isawaitable(out):
                return cast(T, await out)
            return cast(T, out)

    # -- heartbeats and leases ---------------------------------------------------------

    async def heartbeat(self, key: str, detail: Any) -> None:
        check_name("heartbeat key", key)
        text = None if detail is None else dump_json(detail, what=f"heartbeat {key!r} detail")
        await self._rt.store.record_heartbeat(
            self._run.fence,
            key,
            text,
            self._rt.clock.now(),
            NewEvent("heartbeat.recorded", key, text),
        )
        self._run.emit("heartbeat.recorded", key, detail)

    async def touch_lease(
        self, key: str, holder: str, ttl: float, detail: Any, scope: str
    ) -> LeaseRecord:
        where = _lease_scope(scope, self._run.workflow_id)
        check_name("lease key", key)
        check_name("lease holder", holder)
        ttl = at_least(
            "lease ttl", check_seconds("lease ttl", ttl, positive=True), *LEASE_TTL_FLOOR
        )
        text = None if detail is None else dump_json(detail, what=f"lease {key!r} detail")
        who = dump_json({"holder": holder}, what="event")
        res = await self._rt.store.acquire_lock(
            where,
            key,
            holder,
            ttl=float(ttl),
            now=self._rt.clock.store_time(),
            fence=self._run.fence,
            detail=text,
            on_acquire=NewEvent("lease.acquired", key, who),
            on_renew=NewEvent("lease.renewed", key, who),
            at=self._rt.clock.now(),
        )
        if res.outcome is LockOutcome.CONFLICT:
            raise LeaseConflictError(key, holder, res.row.holder, res.row.expires_at)
        self._run.emit(f"lease.{res.outcome.value}", key, {"holder": holder})
        return LeaseRecord.from_row(res.row)

    async def release_lease(self, key: str, holder: str | None, scope: str) -> bool:
        where = _lease_scope(scope, self._run.workflow_id)
        check_name("lease key", key)
        if holder is not None:
            check_name("lease holder", holder)
        res = await self._rt.store.release_lock(
            where,
            key,
            holder,
            now=self._rt.clock.store_time(),
            fence=self._run.fence,
            event=NewEvent("lease.released", key),
            at=self._rt.clock.now(),
        )
        if res is None:
            return False
        if res.outcome is LockOutcome.CONFLICT:
            raise LeaseConflictError(
                key, holder or "", res.row.holder, res.row.expires_at, releasing=True
            )
        self._run.emit("lease.released", key)
        return True


async def _release_kept(kept: list[_Kept]) -> None:
    """Release each kept key, held by its holder still (a holder-checked release frees
    nobody else's), through a store of its own: the App's is closed by now."""
    for url in dict.fromkeys(k.url for k in kept):
        store: Store = open_store(url)
        try:
            for k in (k for k in kept if k.url == url):
                done = await store.release_lock(
                    MUTEX_SCOPE, k.key, k.holder, now=k.clock.store_time(), at=k.clock.now()
                )
                if done is not None and done.outcome is not LockOutcome.CONFLICT:
                    log.info("released mutex %r at exit: its timed-out steps end here", k.key)
        finally:
            await store.close()


def _release_at_exit() -> None:
    """The process exits: the sync steps that mutex blocks gave up on die with it, so
    the keys kept for them are released now rather than left held until their claim
    lapses (`stale_after`, 30 s by default, after the process is gone). Runs once the
    Apps' loops are closed (their exit hook is registered later, and runs first) and
    before the executors shut down (a SQLite store opens through one)."""
    kept = [k for k in _KEPT.values() if k.pid == os.getpid()]
    _KEPT.clear()
    if not kept:
        return
    try:
        asyncio.run(asyncio.wait_for(_release_kept(kept), EXIT_RELEASE_TIMEOUT))
    except Exception as exc:  # the database is gone too: the keys lapse instead
        log.warning("releasing %d kept mutex(es) at exit failed: %s", len(kept), exc)


EXIT_RELEASE_TIMEOUT = 10.0  # seconds the exit may wait for the database
_register = getattr(threading, "_register_atexit", None)  # before executors shut down
(_register or atexit.register)(_release_at_exit)


def _stopwatch(clock: Clock, loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """Seconds passed since now by the loop's monotonic time, or, on a clock the store
    is told the time of (a `FakeClock`), by that clock if it moved on further."""
    start = loop.time()
    if clock.store_time() is None:
        return lambda: loop.time() - start
    began = clock.now()
    return lambda: max(loop.time() - start, (clock.now() - began).total_seconds())


class _Looks:
    """When a waiter for a mutex next looks for a cancel or logs that it waits (each
    first after its period), and whether it asked if the holder awaits its run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._next: dict[str, float] = {}
        self.asked_above = False

    def due(self, what: str, every: float) -> bool:
        now = self._loop.time()
        at = self._next.setdefault(what, now + every)
        if now < at:
            return False
        self._next[what] = now + every
        return True


# by App (its waker): the waiters of this process for each key, in the order they came
_LINES: weakref.WeakKeyDictionary[Waker, dict[str, list[object]]] = weakref.WeakKeyDictionary()


class _Place:
    """A waiter's place in its key's line: the first one tries the key, the rest wait."""

    __slots__ = ("_line", "_ticket")

    def __init__(self, line: list[object]) -> None:
        self._line = line
        self._ticket = object()
        line.append(self._ticket)

    def first(self) -> bool:
        return self._line[0] is self._ticket

    def to_front(self) -> None:
        """Go first: the run takes back its own key and goes on in its block."""
        self._line.remove(self._ticket)
        self._line.insert(0, self._ticket)

    def leave(self) -> None:
        self._line.remove(self._ticket)


@contextmanager
def _in_line(waker: Waker, key: str) -> Iterator[_Place]:
    """Queue for `key` behind this process's earlier waiters. Leaving the line wakes
    the next one."""
    lines = _LINES.setdefault(waker, {})
    line = lines.setdefault(key, [])
    place = _Place(line)
    try:
        yield place
    finally:
        place.leave()
        if not line and lines.get(key) is line:
            del lines[key]
        waker.notify(key)
