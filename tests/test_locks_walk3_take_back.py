"""A resumed run takes back the mutex its dead earlier owner held in one change, and
a try to take a mutex that fails after the store may have committed it lets go."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, cast

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.store import LockOutcome, NewEvent, Store, open_store

MUTEX = "mutex"


def _events_of(kwargs: dict[str, Any]) -> list[str]:
    return [v.type for v in kwargs.values() if isinstance(v, NewEvent)]


class Intruding:
    """A store that, right after the change taking a run's mutex back commits, lets a
    waiter of another process try the key (what a poll between two changes can do)."""

    def __init__(self, inner: Store, clock: FakeClock) -> None:
        self.inner = inner
        self.clock = clock
        self.intruder: list[LockOutcome] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("acquire_lock", "release_lock"):
            return attr

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = await attr(*args, **kwargs)
            if "mutex.taken_back" in _events_of(kwargs):
                await self._intrude(args[1])
            return out

        return wrapped

    async def _intrude(self, key: str) -> None:
        t = {"now": self.clock.store_time(), "at": self.clock.now()}
        got = await self.inner.acquire_lock(MUTEX, key, "other-process/x", ttl=60, **t)
        self.intruder.append(got.outcome)
        if got.outcome is not LockOutcome.CONFLICT:  # (let the run go on; the test says so)
            await self.inner.release_lock(MUTEX, key, "other-process/x", **t)


async def _keeper(wf: Workflow) -> str:
    async with wf.mutex("job:42", stale_after=10):
        who = await wf.wait_for_signal("approve")  # parks the run inside the block
        await wf.step("apply", lambda: f"applied for {who}")
    return "done"


async def test_a_resumed_run_takes_its_mutex_back_with_no_gap_for_another_waiter(
    database_url: str,
) -> None:
    # the take-back was a release, then an acquire: a waiter of another process polling
    # in between got the key while the resumed run went on in its block
    clock = FakeClock()
    store = Intruding(open_store(database_url), clock)
    app = App(store=cast(Store, store), clock=clock)
    try:
        assert (await app.arun(_keeper, workflow_id="keeper")).status is RunStatus.WAITING
        await app.asignal("keeper", "approve", "ada")
        assert (await app.aresume("keeper")).value == "done"
        assert store.intruder == [LockOutcome.CONFLICT]
        types = [e.type for e in (await app.aget_record("keeper")).events]
        i = types.index("mutex.taken_back")
        assert types[i + 1] == "mutex.acquired" and types.count("mutex.acquired") == 2
        lock = await store.inner.get_lock(MUTEX, "job:42")
        assert lock is not None and lock.released_at is not None
    finally:
        await app.aclose()


class CancelledAfterCommit:
    """A store whose first mutex acquire commits, then its caller's task is cancelled
    before the reply reaches it (`cancelled` set once that happened)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.cancelled = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != "acquire_lock" or not inspect.iscoroutinefunction(attr):
            return attr

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = await attr(*args, **kwargs)
            if args[0] == MUTEX and not self.cancelled:
                self.cancelled = True
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                await asyncio.sleep(0)  # the cancel lands here, after the commit
            return out

        return wrapped


async def test_a_mutex_taken_as_its_waiter_is_cancelled_is_let_go(database_url: str) -> None:
    # the acquire committed, then the task was cancelled before the reply came: the key
    # stayed held by a holder nobody renewed or released, until stale_after
    store = CancelledAfterCommit(open_store(database_url))
    app = App(store=cast(Store, store), clock=FakeClock())

    async def guarded(wf: Workflow) -> str:
        async with wf.mutex("k", stale_after=600):
            return "in"

    try:
        with pytest.raises(asyncio.CancelledError):
            await app.arun(guarded, workflow_id="w")
        assert store.cancelled
        lock = await store.inner.get_lock(MUTEX, "k")
        assert lock is not None and lock.released_at is not None, lock
        other = await app.arun(guarded, workflow_id="w2")
        assert other.value == "in"
    finally:
        await app.aclose()
