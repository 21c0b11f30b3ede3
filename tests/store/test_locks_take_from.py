"""`acquire_lock(take_from=...)`: a run's mutex passes from its dead earlier holder to
its new one in one change, with no moment where the key is free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tether.store import Fence, LockOutcome, NewEvent, NewRun, Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TAKEN = NewEvent("mutex.taken_back", "k")
GOT = NewEvent("mutex.acquired", "k")


async def _running(store: Store, wid: str) -> Fence:
    await store.create_run(NewRun(wid, "wf", state="null"), T0)
    claimed = await store.claim_run(wid, "owner-a", T0, NewEvent("workflow.running"))
    return Fence(wid, claimed.generation)


async def test_the_named_holder_of_the_run_hands_the_key_over_in_one_change(
    store: Store,
) -> None:
    fence = await _running(store, "r")
    await store.acquire_lock("mutex", "k", "old", ttl=60, now=T0, fence=fence, at=T0)
    later = T0 + timedelta(seconds=5)
    got = await store.acquire_lock(
        "mutex", "k", "new", ttl=60, now=later, fence=fence, on_acquire=GOT,
        take_from="old", on_take=TAKEN, at=later,
    )  # fmt: skip
    assert (got.outcome, got.row.holder, got.row.released_at) == (LockOutcome.ACQUIRED, "new", None)
    assert got.row.generation == 2 and got.row.expires_at == later + timedelta(seconds=60)
    types = [e.type for e in await store.list_events("r")]
    assert types[-2:] == ["mutex.taken_back", "mutex.acquired"]


async def test_take_from_takes_nothing_from_another_holder_or_another_run(store: Store) -> None:
    fence = await _running(store, "r")
    other = await _running(store, "s")
    await store.acquire_lock("mutex", "k", "theirs", ttl=60, now=T0, fence=other, at=T0)
    for named in ("theirs", "old"):  # held by run s: not r's to take, whoever is named
        got = await store.acquire_lock(
            "mutex", "k", "new", ttl=60, now=T0, fence=fence, take_from=named, at=T0
        )
        assert (got.outcome, got.row.holder) == (LockOutcome.CONFLICT, "theirs")
    assert "mutex.taken_back" not in [e.type for e in await store.list_events("r")]
