"""Verbs of `RunVerbs`: forgetting the locks of holders gone silent for good; a run's
latest event of a type."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tether.store import Fence, NewEvent, NewRun, Store, kept_detail

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86400.0


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _announce(store: Store, owner: str, at: datetime, ttl: float = 30.0) -> None:
    await store.acquire_lock("process", owner, owner, ttl=ttl, now=at, at=at)


async def _keys(store: Store, scope: str) -> list[str]:
    return [lock.key for lock in await store.list_locks(scope)]


async def test_only_locks_silent_past_the_bound_and_no_longer_held_are_deleted(
    store: Store,
) -> None:
    await _announce(store, "killed", T0)  # lapsed at T0 + 30 s, never renewed
    await _announce(store, "stopped", T0)
    await store.release_lock("process", "stopped", "stopped", now=_at(10), at=_at(10))
    await _announce(store, "stopped-lately", _at(DAY))
    await store.release_lock("process", "stopped-lately", "stopped-lately", now=_at(DAY), at=T0)
    await _announce(store, "live", T0)
    await _announce(store, "live", _at(2 * DAY))  # renewed: live again
    await _announce(store, "slow", T0, ttl=3 * DAY)  # silent, but its lease still runs
    await store.acquire_lock("chore", "timers", "killed", ttl=30, now=T0, at=T0)  # other scope

    assert await store.forget_silent_locks("process", silent_for=DAY, now=_at(DAY)) == 0
    now = _at(2 * DAY)
    assert await store.forget_silent_locks("process", silent_for=DAY, now=now) == 2
    assert await _keys(store, "process") == ["live", "slow", "stopped-lately"]
    assert await _keys(store, "chore") == ["timers"]
    await _announce(store, "killed", now)  # a process that only stalled comes back
    assert await _keys(store, "process") == ["killed", "live", "slow", "stopped-lately"]


async def test_a_holder_that_owns_a_run_under_a_live_claim_keeps_its_lock(store: Store) -> None:
    await store.create_run(NewRun("r1", "wf", state="null"), T0)
    await store.claim_run("r1", "owner", T0, NewEvent("workflow.running"), lease=3 * DAY, now=T0)
    await _announce(store, "owner", T0)
    assert await store.forget_silent_locks("process", silent_for=DAY, now=_at(2 * DAY)) == 0
    assert await store.forget_silent_locks("process", silent_for=DAY, now=_at(4 * DAY)) == 1


async def test_a_lock_a_parked_run_keeps_is_never_deleted(store: Store) -> None:
    await store.create_run(NewRun("r1", "wf", state="null"), T0)
    gen = (await store.claim_run("r1", "o", T0, NewEvent("workflow.running"))).generation
    fence = Fence("r1", gen)
    await store.acquire_lock(
        "mutex", "issue-1", "r1", ttl=30, now=T0, fence=fence, detail=kept_detail(1), at=T0
    )
    assert await store.forget_silent_locks("mutex", silent_for=DAY, now=_at(9 * DAY)) == 0
    assert await _keys(store, "mutex") == ["issue-1"]


async def test_last_event_is_the_latest_of_its_type_however_many_came_after(
    store: Store,
) -> None:
    await store.create_run(NewRun("r1", "wf", state="null"), T0)
    assert await store.last_event("r1", "remote.invoked") is None
    fence = Fence("r1", None)
    for n in (1, 2):
        await store.append_events(
            fence, [NewEvent("remote.invoked", f"invocation {n}", f'{{"invocation": {n}}}')], T0
        )
    await store.append_events(fence, [NewEvent("remote.unanswered", "x")] * 40, _at(1))
    latest = await store.last_event("r1", "remote.invoked")
    assert latest is not None and latest.message == "invocation 2"
    assert json.loads(latest.detail or "null") == {"invocation": 2}
    assert await store.last_event("r1", "nothing.like.it") is None
    assert await store.last_event("no-such-run", "remote.invoked") is None


async def test_latest_events_are_each_runs_newest_read_at_once(store: Store) -> None:
    """The agents page read each run's whole history to show its last event."""
    for wid in ("r1", "r2", "r3"):
        await store.create_run(NewRun(wid, "wf", state="null"), T0)
    await store.append_events(Fence("r1", None), [NewEvent("a", f"{n}") for n in range(30)], T0)
    await store.append_events(Fence("r2", None), [NewEvent("b", "only")], _at(1))
    latest = await store.latest_events(["r1", "r2", "r3", "no-such-run"])
    assert {wid: (e.type, e.message) for wid, e in latest.items() if wid != "r3"} == {
        "r1": ("a", "29"),
        "r2": ("b", "only"),
    }
    assert "no-such-run" not in latest
    assert await store.latest_events([]) == {}


async def test_newest_generations_gives_each_name_its_highest_surviving_run(
    store: Store,
) -> None:
    """One query for many names: `<base>:10` after `<base>:9`, a name whose first runs
    were deleted still found, ids of other names (longer, or not `:<n>`) never taken."""
    for wid in ("a", "a:2", "a:9", "a:10", "ab:99", "a:x", "b:3", "b:4", "c"):
        await store.create_run(NewRun(wid, "w"), T0)
    newest = await store.newest_generations(["a", "b", "c", "missing", "a"])
    assert {k: r.workflow_id for k, r in newest.items()} == {"a": "a:10", "b": "b:4", "c": "c"}
    assert await store.newest_generations([]) == {}
