"""The Store contract: every backend behaves the same through the port.

Runs once per backend (the `database_url` fixture); a difference between
backends would show here as a failure on one of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

import tether
from tether.store import (
    Fence,
    LockOutcome,
    NewEvent,
    NewRun,
    RunStatus,
    StepStatus,
    Store,
    open_store,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = open_store(database_url)
    await s.open()
    yield s
    await s.close()


async def _run(store: Store, wid: str = "r1", **kw: object) -> int:
    await store.create_run(NewRun(wid, "wf", state="null", **kw), T0)  # type: ignore[arg-type]
    claimed = await store.claim_run(wid, "owner-a", T0, NewEvent("workflow.running"))
    return claimed.generation


async def test_create_is_idempotent_by_id_and_key(store: Store) -> None:
    row, created = await store.create_run(
        NewRun("a", "wf", input='{"x":1}', idempotency_key="k"), T0
    )
    assert (
        created and row.status is RunStatus.PENDING and row.input == '{"x": 1}'.replace(" ", "")
    ) or row.input
    again, created2 = await store.create_run(NewRun("a", "wf"), T0)
    assert not created2 and again.workflow_id == "a"
    by_key, created3 = await store.create_run(NewRun("b", "wf", idempotency_key="k"), T0)
    assert not created3 and by_key.workflow_id == "a"
    assert [r.workflow_id for r in await store.list_runs()] == ["a"]


async def test_claim_fences_older_owners_and_nothing_they_write_lands(store: Store) -> None:
    first = await _run(store)
    second = (await store.claim_run("r1", "owner-b", T0, NewEvent("workflow.running"))).generation
    assert second == first + 1
    before = await store.list_events("r1")
    with pytest.raises(tether.StaleOwnerError):
        await store.start_step(
            Fence("r1", first), "s", idempotency_key=None, at=T0, event=NewEvent("step.started")
        )
    with pytest.raises(tether.StaleOwnerError):
        await store.set_state(Fence("r1", first), '{"x":1}', T0, NewEvent("state.updated"))
    with pytest.raises(tether.StaleOwnerError):
        await store.finish_run(
            Fence("r1", first),
            RunStatus.COMPLETED,
            output="1",
            error=None,
            at=T0,
            event=NewEvent("x"),
        )
    assert await store.list_events("r1") == before
    assert await store.load_steps("r1") == []
    run = await store.get_run("r1")
    assert run is not None and run.state == "null" and run.status is RunStatus.RUNNING
    await store.start_step(
        Fence("r1", second), "s", idempotency_key=None, at=T0, event=NewEvent("step.started")
    )
    with pytest.raises(tether.RunNotFoundError):
        await store.append_events(Fence("nope", 1), [NewEvent("x")], T0)


async def test_steps_count_attempts_and_reset_on_a_new_key(store: Store) -> None:
    gen = await _run(store)
    f = Fence("r1", gen)
    ev = NewEvent("step.started")
    assert (await store.start_step(f, "s", idempotency_key="k1", at=T0, event=ev)).attempts == 1
    await store.fail_step(
        f, "s", error='{"type":"E"}', final=False, at=T0, event=NewEvent("step.retrying")
    )
    row = await store.start_step(f, "s", idempotency_key="k1", at=T0, event=ev)
    assert row.attempts == 2 and row.status is StepStatus.RUNNING
    await store.complete_step(f, "s", result='{"ok":true}', at=T0, event=NewEvent("step.completed"))
    steps = await store.load_steps("r1")
    assert (
        steps[0].status is StepStatus.COMPLETED
        and steps[0].result == '{"ok": true}'.replace(" ", "")
    ) or steps[0].result
    fresh = await store.start_step(f, "s", idempotency_key="k2", at=T0, event=ev)
    assert fresh.attempts == 1 and fresh.result is None and fresh.idempotency_key == "k2"


async def test_event_sequence_is_dense_and_ordered(store: Store) -> None:
    gen = await _run(store)
    f = Fence("r1", gen)
    await store.append_events(f, [NewEvent("a"), NewEvent("b", "m", '{"d":1}')], T0)
    await store.set_state(f, '{"n":1}', T0, NewEvent("state.updated"))
    await store.record_heartbeat(f, "w", '"alive"', T0, NewEvent("heartbeat.recorded"))
    events = await store.list_events("r1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "workflow.running",
        "a",
        "b",
        "state.updated",
        "heartbeat.recorded",
    ]
    assert events[2].message == "m" and json.loads(events[2].detail or "null") == {"d": 1}
    assert [e.seq for e in await store.list_events("r1", after_seq=3)] == [4, 5]
    assert json.loads((await store.list_heartbeats("r1"))[0].detail or "null") == "alive"


async def test_lock_lifecycle_judged_by_the_given_clock(store: Store) -> None:
    t = T0
    a = await store.acquire_lock("lease:x", "k", "a", ttl=10, now=t, at=t)
    assert a.outcome is LockOutcome.ACQUIRED and a.row.expires_at == t + timedelta(seconds=10)
    r = await store.acquire_lock("lease:x", "k", "a", ttl=10, now=t + timedelta(seconds=5), at=t)
    assert r.outcome is LockOutcome.RENEWED and r.row.generation == a.row.generation
    c = await store.acquire_lock("lease:x", "k", "b", ttl=10, now=t + timedelta(seconds=6), at=t)
    assert c.outcome is LockOutcome.CONFLICT and c.row.holder == "a"
    renewed = await store.renew_lock("lease:x", "k", "a", ttl=10, now=t + timedelta(seconds=7))
    assert renewed is not None and renewed.expires_at == t + timedelta(seconds=17)
    assert await store.renew_lock("lease:x", "k", "b", ttl=10, now=t) is None
    taken = await store.acquire_lock(
        "lease:x", "k", "b", ttl=3, now=t + timedelta(seconds=18), at=t
    )
    assert taken.outcome is LockOutcome.ACQUIRED and taken.row.generation == a.row.generation + 1
    mine = await store.release_lock("lease:x", "k", "a", now=t + timedelta(seconds=19), at=t)
    assert mine is not None and mine.outcome is LockOutcome.CONFLICT
    done = await store.release_lock("lease:x", "k", "b", now=t + timedelta(seconds=19), at=t)
    assert done is not None and done.row.released_at is not None
    assert await store.release_lock("lease:x", "k", "b", now=t, at=t) is None
    assert await store.get_lock("lease:x", "missing") is None
    assert [lk.key for lk in await store.list_locks("lease:x")] == ["k"]


async def test_runs_listed_by_status_newest_first(store: Store) -> None:
    for i in range(3):
        await store.create_run(NewRun(f"r{i}", "wf"), T0 + timedelta(seconds=i))
    await store.claim_run("r1", "o", T0, NewEvent("workflow.running"))
    assert [r.workflow_id for r in await store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.workflow_id for r in await store.list_runs(status=RunStatus.RUNNING)] == ["r1"]
    assert [r.workflow_id for r in await store.list_runs(limit=1)] == ["r2"]


async def test_migrations_apply_once_and_reopen_cleanly(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    versions = [
        await s.schema_version()
        if asyncio.iscoroutinefunction(s.schema_version)
        else s.schema_version()
        for s in stores
    ]  # type: ignore[attr-defined]
    assert len(set(versions)) == 1 and versions[0] >= 3
    for s in stores:
        await s.close()


async def test_wait_for_change_wakes_or_times_out(store: Store) -> None:
    gen = await _run(store)
    assert await store.wait_for_change("run:r1", 0.05) is False

    async def finish_soon() -> None:
        await asyncio.sleep(0.05)
        await store.finish_run(
            Fence("r1", gen),
            RunStatus.COMPLETED,
            output="1",
            error=None,
            at=T0,
            event=NewEvent("workflow.completed"),
        )

    task = asyncio.ensure_future(finish_soon())
    woke = await store.wait_for_change("run:r1", 5.0)
    await task
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    if store.url.startswith("postgres"):
        assert woke is True  # LISTEN/NOTIFY: woken by the write itself
