"""`acquire_lock` under a fence: an owner whose run was taken over (its generation
superseded) neither takes nor keeps a lock for the run, with an event or without one.
A renewal with no event (a mutex's acquire retried after its reply was lost) skipped
the fence check and kept the old owner's hold alive beside the new owner's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import tether
from tether.store import Fence, LockOutcome, NewEvent, NewRun, Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _taken_over(store: Store) -> tuple[int, int]:
    """The run's old owner's generation and the new owner's."""
    await store.create_run(NewRun("r1", "wf", state="null"), T0)
    old = (await store.claim_run("r1", "owner-a", T0, NewEvent("workflow.running"))).generation
    new = await store.claim_run("r1", "owner-b", T0, NewEvent("workflow.running"), force=True)
    return old, new.generation


async def _lock(store: Store, holder: str, gen: int, **events: NewEvent) -> LockOutcome:
    res = await store.acquire_lock(
        "mutex", "k", holder, ttl=60, now=None, fence=Fence("r1", gen), at=T0, **events
    )
    return res.outcome


async def test_a_superseded_owner_renews_no_lock_of_its_run(store: Store) -> None:
    old, new = await _taken_over(store)
    acquired = NewEvent("mutex.acquired", "k")
    assert await _lock(store, "a-hold", new, on_acquire=acquired) is LockOutcome.ACQUIRED
    (before,) = [r for r in await store.list_locks("mutex") if r.key == "k"]
    with pytest.raises(tether.StaleOwnerError):  # before: RENEWED, the hold kept alive
        await _lock(store, "a-hold", old, on_acquire=acquired)
    (after,) = [r for r in await store.list_locks("mutex") if r.key == "k"]
    assert after == before  # nothing written
    assert await _lock(store, "a-hold", new) is LockOutcome.RENEWED  # the owner renews


async def test_a_superseded_owner_takes_no_lock_without_an_event(store: Store) -> None:
    old, new = await _taken_over(store)
    with pytest.raises(tether.StaleOwnerError):  # before: ACQUIRED, the fence unread
        await _lock(store, "stale", old)
    assert [r for r in await store.list_locks("mutex") if r.key == "k"] == []
    assert await _lock(store, "owner", new) is LockOutcome.ACQUIRED
    # held by the owner: a conflict, as for anyone, nothing written
    assert await _lock(store, "stale", old) is LockOutcome.CONFLICT
