"""The Store contract: every backend behaves the same through the port.

Runs once per backend (the `database_url` fixture); a difference between
backends would show here as a failure on one of them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tether
from tether.store import (
    Fence,
    JobStatus,
    LockOutcome,
    NewEvent,
    NewJob,
    NewRun,
    NewWait,
    QueueLimit,
    RunClaim,
    RunFilter,
    RunStatus,
    StepStatus,
    Store,
    WaitKind,
    WaitStatus,
    open_store,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=1)


async def _run(store: Store, wid: str = "r1", **kw: object) -> int:
    await store.create_run(NewRun(wid, "wf", state="null", **kw), T0)  # type: ignore[arg-type]
    claimed = await store.claim_run(wid, "owner-a", T0, NewEvent("workflow.running"))
    return claimed.generation


async def test_create_is_idempotent_by_id_and_key(store: Store) -> None:
    row, created = await store.create_run(
        NewRun("a", "wf", input='{"x":1}', idempotency_key="k"), T0
    )
    assert created and row.status is RunStatus.PENDING and json.loads(row.input or "") == {"x": 1}
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
    assert steps[0].status is StepStatus.COMPLETED and json.loads(steps[0].result or "") == {
        "ok": True
    }
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


async def test_a_runs_history_is_read_at_once_with_only_its_own_leases(store: Store) -> None:
    gen = await _run(store)
    f = Fence("r1", gen)
    ev = NewEvent("step.started", "s")
    await store.start_step(f, "s", idempotency_key=None, at=T0, event=ev)
    await store.complete_step(f, "s", result="7", at=T0, event=NewEvent("step.completed", "s"))
    await store.record_heartbeat(f, "w", '"alive"', T0, NewEvent("heartbeat.recorded"))
    await _run(store, "r2")
    await store.acquire_lock("lease", "mine", "r1", ttl=60, now=T0, fence=f, at=T0)
    await store.acquire_lock("lease", "theirs", "r2", ttl=60, now=T0, fence=Fence("r2"), at=T0)
    await store.acquire_lock("lease:r1", "inner", "r1", ttl=60, now=T0, at=T0)
    await store.acquire_lock("lease:r2", "inner", "r2", ttl=60, now=T0, at=T0)

    h = await store.run_history("r1", lease_scopes=("lease", "lease:r1"))
    assert h is not None and h.run == await store.get_run("r1")
    assert h.steps == await store.load_steps("r1") and [s.result for s in h.steps] == ["7"]
    assert h.events == await store.list_events("r1")
    assert h.heartbeats == await store.list_heartbeats("r1")
    assert [(lk.scope, lk.key) for lk in h.locks] == [("lease", "mine"), ("lease:r1", "inner")]
    assert h.usage == []  # no AI calls: no row per model
    assert await store.run_history("nope", lease_scopes=("lease", "lease:nope")) is None


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


async def test_runs_counted_by_workflow_and_status_under_a_filter(store: Store) -> None:
    for i in range(4):
        tags = ("odd",) if i % 2 else ("even",)
        await store.create_run(NewRun(f"r{i}", "wf", tags=tags), T0 + timedelta(hours=i))
    await store.create_run(NewRun("other", "wf2"), T0)
    await store.claim_run("r1", "o", T0, NewEvent("workflow.running"))
    assert await store.run_counts() == [
        ("wf", "pending", 3),
        ("wf", "running", 1),
        ("wf2", "pending", 1),
    ]
    odd = RunFilter(workflow="wf", tag="odd")
    assert await store.run_counts(odd) == [("wf", "pending", 1), ("wf", "running", 1)]
    window = RunFilter(
        created_after=T0 + timedelta(hours=1), created_before=T0 + timedelta(hours=3)
    )
    assert await store.run_counts(window) == [("wf", "pending", 1), ("wf", "running", 1)]
    tenant = RunFilter(tenant="nobody")
    assert await store.run_counts(tenant) == []


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


# -- waits, the inbox, cancellation ------------------------------------------------------


async def _status(store: Store, wid: str) -> RunStatus:
    run = await store.get_run(wid)
    assert run is not None
    return run.status


async def test_a_signal_kept_in_the_inbox_resolves_the_wait_registered_later(store: Store) -> None:
    gen = await _run(store)
    assert await store.send_signal("r1", "go", '{"n":1}', at=T0, expires_at=LATER) == []
    w = await store.register_wait(Fence("r1", gen), NewWait("w1", WaitKind.SIGNAL, "go"), T0)
    assert w.status is WaitStatus.RESOLVED and json.loads(w.payload or "") == {"n": 1}
    again = await store.register_wait(Fence("r1", gen), NewWait("w1", WaitKind.SIGNAL, "go"), T0)
    assert again.id == w.id  # registered once
    assert not await store.park_run(Fence("r1", gen), ["w1"], compute_seconds=0, at=T0)
    assert await _status(store, "r1") is RunStatus.RUNNING


async def test_an_event_wakes_the_parked_run_whose_match_it_fits(store: Store) -> None:
    gen = await _run(store)
    wait = NewWait("w1", WaitKind.EVENT, "paid", match='{"order":7}')
    assert (await store.register_wait(Fence("r1", gen), wait, T0)).status is WaitStatus.PENDING
    assert await store.park_run(Fence("r1", gen), ["w1"], compute_seconds=1.5, at=T0)
    assert await _status(store, "r1") is RunStatus.WAITING
    assert await store.send_event("paid", '{"order":8}', at=T0, expires_at=LATER) == []
    assert await store.send_event("paid", '{"order":7}', at=T0, expires_at=LATER) == ["r1"]
    assert await _status(store, "r1") is RunStatus.PENDING
    (w,) = await store.list_waits("r1")
    assert w.status is WaitStatus.RESOLVED and json.loads(w.payload or "") == {"order": 7}


async def test_a_token_completes_once_and_timers_fire_when_due(store: Store) -> None:
    gen = await _run(store)
    f = Fence("r1", gen)
    await store.register_wait(f, NewWait("t", WaitKind.TOKEN, wait_id="tok-1"), T0)
    due = T0 + timedelta(seconds=5)
    await store.register_wait(f, NewWait("sleep", WaitKind.TIMER, due_at=due), T0)
    await store.register_wait(f, NewWait("sig", WaitKind.SIGNAL, "x", due_at=due), T0)
    assert await store.complete_token("tok-1", '"ok"', at=T0) == "r1"
    with pytest.raises(tether.InvalidArgumentError):
        await store.complete_token("tok-1", '"ok"', at=T0)
    with pytest.raises(tether.TokenNotFoundError):
        await store.complete_token("nope", None, at=T0)
    assert await store.fire_due(now=T0 + timedelta(seconds=4), at=T0) == []
    await store.fire_due(now=due, at=due)
    by_key = {w.key: w.status for w in await store.list_waits("r1")}
    assert by_key == {
        "t": WaitStatus.RESOLVED,
        "sleep": WaitStatus.RESOLVED,
        "sig": WaitStatus.TIMED_OUT,
    }


async def test_next_due_is_the_earliest_pending_timer_or_timeout(store: Store) -> None:
    assert await store.next_due() is None
    f = Fence("r1", await _run(store))
    await store.register_wait(f, NewWait("t", WaitKind.TOKEN, wait_id="tok-1"), T0)
    assert await store.next_due() is None  # a token has no time
    late, soon = T0 + timedelta(hours=2), T0 + timedelta(seconds=90, microseconds=250)
    await store.register_wait(f, NewWait("nap", WaitKind.TIMER, due_at=late), T0)
    await store.register_wait(f, NewWait("sig", WaitKind.SIGNAL, "x", due_at=soon), T0)
    assert await store.next_due() == soon
    await store.fire_due(now=soon, at=soon)  # the signal's wait timed out
    assert await store.next_due() == late
    await store.fire_due(now=late, at=late)
    assert await store.next_due() is None


async def test_finish_run_wakes_the_waiting_parent_in_the_same_transaction(store: Store) -> None:
    parent = await _run(store, "p", queue="q")
    await store.create_run(NewRun("c", "wf", state="null", parent_id="p"), T0)
    child = (await store.claim_run("c", "o", T0, NewEvent("workflow.running"))).generation
    await store.register_wait(Fence("p", parent), NewWait("child", WaitKind.RUN, "c"), T0)
    assert await store.park_run(Fence("p", parent), ["child"], compute_seconds=0, at=T0)
    await store.finish_run(
        Fence("c", child), RunStatus.COMPLETED, output='{"v":2}', error=None, at=T0,
        event=NewEvent("workflow.completed"),
    )  # fmt: skip
    # no maintenance pass in between: the parent is runnable and queued already
    assert await _status(store, "p") is RunStatus.PENDING
    (w,) = await store.list_waits("p")
    assert json.loads(w.payload or "") == {"status": "completed", "output": {"v": 2}, "error": None}
    jobs = await store.list_jobs(workflow_id="p")
    assert [j.status for j in jobs] == [JobStatus.QUEUED]
    assert await store.fire_due(now=T0, at=T0) == []  # nothing left to repair


async def test_cancel_reaches_the_children_waited_on_and_refuses_twice(store: Store) -> None:
    parent = await _run(store, "p")
    await store.create_run(NewRun("c", "wf", state="null", parent_id="p"), T0)
    await store.register_wait(Fence("p", parent), NewWait("child", WaitKind.RUN, "c"), T0)
    assert await store.cancel_run("p", reason="stop", compensate=False, at=T0) == ["p", "c"]
    assert await _status(store, "c") is RunStatus.CANCELLED
    with pytest.raises(tether.RunFinishedError):
        await store.cancel_run("p", reason=None, compensate=False, at=T0)
    with pytest.raises(tether.RunFinishedError):
        await store.send_signal("p", "x", None, at=T0, expires_at=LATER)
    with pytest.raises(tether.RunFinishedError):
        await store.claim_run("p", "o", T0, NewEvent("workflow.running"))
    with pytest.raises(tether.RunCancelledError):
        await store.set_state(Fence("p", parent), "1", T0, NewEvent("state.updated"))


async def test_a_run_marked_failing_refuses_a_cancel_and_is_left_out_of_its_parents(
    store: Store,
) -> None:
    parent = await _run(store, "p")
    await store.create_run(NewRun("c", "wf", state="null", parent_id="p"), T0)
    child = (await store.claim_run("c", "o", T0, NewEvent("workflow.running"))).generation
    await store.register_wait(Fence("p", parent), NewWait("child", WaitKind.RUN, "c"), T0)
    with pytest.raises(tether.StaleOwnerError):  # fenced like every write for a run
        await store.mark_failing(
            Fence("c", child + 1), error='{"type":"KeyError"}', reason=tether.EndReason.FAILED,
            at=T0, event=NewEvent("workflow.compensating"),
        )  # fmt: skip
    await store.mark_failing(
        Fence("c", child), error='{"type":"KeyError","message":"x"}',
        reason=tether.EndReason.FAILED, at=T0, event=NewEvent("workflow.compensating", "x"),
    )  # fmt: skip
    run = await store.get_run("c")
    assert run is not None and run.status is RunStatus.RUNNING
    assert run.end_reason is tether.EndReason.FAILED and "KeyError" in (run.error or "")
    assert (await store.list_events("c"))[-1].type == "workflow.compensating"
    with pytest.raises(tether.RunFinishedError, match="running its compensations"):
        await store.cancel_run("c", reason=None, compensate=True, at=T0)
    assert await store.cancel_run("p", reason="stop", compensate=False, at=T0) == ["p"]
    assert await _status(store, "c") is RunStatus.RUNNING  # it ends on its own
    await store.finish_run(
        Fence("c", child), RunStatus.COMPENSATED, output=None, error=None, at=T0,
        event=NewEvent("workflow.failed"), reason=tether.EndReason.FAILED,
    )  # fmt: skip
    assert await _status(store, "c") is RunStatus.COMPENSATED


# -- runs: leases, release, orphans ------------------------------------------------------


async def test_a_live_claim_is_refused_and_a_lapsed_one_taken_over(store: Store) -> None:
    await store.create_run(NewRun("r1", "wf"), T0)
    await store.claim_run("r1", "a", T0, NewEvent("workflow.running"), lease=10, now=T0)
    with pytest.raises(tether.RunAlreadyRunningError):
        await store.claim_run("r1", "b", T0, NewEvent("workflow.running"), lease=10, now=T0)
    assert await store.renew_owner("a", ["r1", "r9"], lease=10, now=T0 + timedelta(seconds=5)) == {
        "r1": RunStatus.RUNNING
    }
    late = T0 + timedelta(seconds=16)
    got = await store.claim_run("r1", "b", T0, NewEvent("workflow.running"), lease=10, now=late)
    assert got.owner == "b"
    assert not await store.release_run(Fence("r1", got.generation - 1), at=T0, event=NewEvent("x"))
    assert await store.release_run(Fence("r1", got.generation), at=T0, event=NewEvent("x"))
    assert await _status(store, "r1") is RunStatus.PENDING


async def test_a_run_lifecycle_numbers_its_events_with_its_changes(store: Store) -> None:
    """Claim, release, claim again, end: each change and its event, numbered densely, in
    one step (PostgreSQL runs each as one statement, the shared body as a transaction)."""
    at = [T0 + timedelta(seconds=i) for i in range(5)]
    with pytest.raises(tether.RunNotFoundError):
        await store.claim_run("r1", "a", at[0], NewEvent("workflow.running"))
    await store.create_run(NewRun("r1", "wf", state="null"), at[0])
    first = await store.claim_run("r1", "a", at[1], NewEvent("workflow.running", "m", '{"d":1}'))
    assert (first.owner, first.status, first.updated_at) == ("a", RunStatus.RUNNING, at[1])
    assert first.started_at == at[1] and first.state == "null"
    assert await store.release_run(Fence("r1", first.generation), at=at[2], event=NewEvent("x"))
    assert not await store.release_run(Fence("r1", first.generation), at=at[2], event=NewEvent("y"))
    again = await store.claim_run("r1", "b", at[3], NewEvent("workflow.running"))
    assert again.generation == first.generation + 1 and again.started_at == at[1]
    with pytest.raises(tether.StaleOwnerError):
        await store.set_state(Fence("r1", first.generation), "1", at[3], NewEvent("state.updated"))
    await store.set_state(
        Fence("r1", again.generation), '{"n":1}', at[3], NewEvent("state.updated")
    )
    await store.finish_run(
        Fence("r1", again.generation), RunStatus.COMPLETED, output="2", error=None, at=at[4],
        event=NewEvent("workflow.completed"), compute_seconds=1.5,
    )  # fmt: skip
    run = await store.get_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED and run.output == "2"
    assert (run.finished_at, run.updated_at, run.compute_seconds) == (at[4], at[4], 1.5)
    assert json.loads(run.state or "") == {"n": 1}
    events = await store.list_events("r1")
    assert [(e.seq, e.type, e.at) for e in events] == [
        (1, "workflow.running", at[1]),
        (2, "x", at[2]),
        (3, "workflow.running", at[3]),
        (4, "state.updated", at[3]),
        (5, "workflow.completed", at[4]),
    ]
    assert events[0].message == "m" and json.loads(events[0].detail or "") == {"d": 1}


async def test_a_compensating_claim_keeps_the_run_cancelled(store: Store) -> None:
    gen = await _run(store)
    assert await store.cancel_run("r1", reason="stop", compensate=True, at=T0) == ["r1"]
    with pytest.raises(tether.RunFinishedError):
        await store.claim_run("r1", "b", T0, NewEvent("workflow.running"))
    got = await store.claim_run(
        "r1", "b", T0, NewEvent("compensation.started"), compensating=True, force=True
    )
    assert got.status is RunStatus.CANCELLED and got.generation == gen + 1 and got.owner == "b"
    fence = Fence("r1", got.generation, compensating=True)
    await store.finish_run(
        fence, RunStatus.COMPENSATED, output=None, error=None, at=T0,
        event=NewEvent("workflow.compensated"),
    )  # fmt: skip
    assert await _status(store, "r1") is RunStatus.COMPENSATED
    events = [(e.seq, e.type) for e in await store.list_events("r1")]
    assert events[0] == (1, "workflow.running") and events[-2:] == [
        (len(events) - 1, "compensation.started"),
        (len(events), "workflow.compensated"),
    ]
    assert [e[0] for e in events] == list(range(1, len(events) + 1))


async def test_a_job_whose_run_was_handed_back_goes_back_with_its_attempt_uncounted(
    store: Store,
) -> None:
    """A worker stopped gracefully hands its run back and closes the job: the job goes
    back to the queue, and its attempt is not one of those `max_attempts` counts (for
    workers that died): it was, and one kill after a SIGTERM failed the run."""
    await store.submit_run(NewRun("h1", "wf", state="null"), NewJob("q", max_attempts=2), T0)
    (job,) = await store.claim_jobs("w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    assert job.attempt == 1
    run = await store.claim_run("h1", "w", T0, NewEvent("workflow.running"))
    fence = Fence("h1", run.generation)
    assert await store.release_run(fence, at=T0, event=NewEvent("workflow.handed_back"))
    await store.finish_job(job.id, "w", error=None, ghost=False, at=T0)
    (back,) = await store.list_jobs(workflow_id="h1")
    assert back.status is JobStatus.QUEUED and back.attempt == 0


async def test_a_queued_run_cancelled_with_compensation_gets_a_job_for_it(store: Store) -> None:
    """A worker drives a queued run's compensation: the cancel queues a job for it
    (none for a run driven in its process, none twice), and that job goes back to the
    queue while the compensation is still due, as a woken run's does."""
    await store.submit_run(NewRun("q1", "wf", state="null"), NewJob("q"), T0)
    (first,) = await store.claim_jobs("w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    await store.claim_run("q1", "w", T0, NewEvent("workflow.running"))
    await store.finish_job(first.id, "w", error=None, ghost=False, at=T0)  # it parked
    await _run(store, "local")
    await store.cancel_run("q1", reason=None, compensate=True, at=T0)
    await store.cancel_run("local", reason=None, compensate=True, at=T0)
    jobs = await store.list_jobs(workflow_id="q1")
    assert [j.status for j in jobs] == [JobStatus.DONE, JobStatus.QUEUED]
    assert await store.list_jobs(workflow_id="local") == []
    (job,) = await store.claim_jobs("w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    assert job.id == jobs[1].id
    await store.finish_job(job.id, "w", error=None, ghost=False, at=T0)  # not compensated yet
    assert (await store.list_jobs(workflow_id="q1"))[1].status is JobStatus.QUEUED
    (job,) = await store.claim_jobs("w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    got = await store.claim_run("q1", "w", T0, NewEvent("workflow.compensating"), compensating=True)
    await store.finish_run(
        Fence("q1", got.generation, compensating=True), RunStatus.COMPENSATED, output=None,
        error=None, at=T0, event=NewEvent("workflow.compensated"),
    )  # fmt: skip
    await store.finish_job(job.id, "w", error=None, ghost=False, at=T0)
    assert [j.status for j in await store.list_jobs(workflow_id="q1")] == [JobStatus.DONE] * 2


async def test_orphans_are_adopted_once_onto_a_queue(store: Store) -> None:
    await store.create_run(NewRun("o1", "wf"), T0)
    later = T0 + timedelta(seconds=60)
    found = await store.orphaned_runs(["wf"], grace=30, now=later)
    assert [r.workflow_id for r in found] == ["o1"]
    assert await store.orphaned_runs(["other"], grace=30, now=later) == []
    assert await store.adopt_orphans(["wf"], queue="q", grace=30, now=later, at=later) == ["o1"]
    assert await store.adopt_orphans(["wf"], queue="q", grace=30, now=later, at=later) == []
    assert [j.queue for j in await store.list_jobs(workflow_id="o1")] == ["q"]


# -- the job queue -----------------------------------------------------------------------


async def test_a_jobs_run_is_claimed_with_it_for_a_workflow_its_host_drives(
    store: Store,
) -> None:
    """With a `RunClaim`, each claimed job's run is claimed too (owner, generation,
    running, its event), in the claim's transaction: on the one-statement claim of
    keyless jobs and on the general one (a concurrency key). A run of a workflow
    or version the host does not drive, or claimed without a `RunClaim`, is not."""
    await store.submit_run(NewRun("mine", "wf", state="null"), NewJob("q", priority=3), T0)
    await store.submit_run(NewRun("keyed", "wf"), NewJob("q", priority=2, concurrency_key="k"), T0)
    await store.submit_run(NewRun("v2", "wf", workflow_version="2"), NewJob("q", priority=1), T0)
    await store.submit_run(NewRun("theirs", "other"), NewJob("q"), T0)
    await store.submit_run(NewRun("plain", "wf"), NewJob("p"), T0)
    runs = RunClaim("host-a", 30.0, (("wf", None), ("wf", "1")))
    got = await store.claim_jobs(
        "w", ["q"], limit=4, visibility=30, limits={}, now=T0, at=T0, runs=runs
    )
    claimed = {j.workflow_id: j.run for j in got}
    assert set(claimed) == {"mine", "keyed", "v2", "theirs"}
    for wid in ("mine", "keyed"):
        run = claimed[wid]
        assert run is not None and run == await store.get_run(wid)
        assert (run.status, run.owner, run.generation) == (RunStatus.RUNNING, "host-a", 1)
        events = await store.list_events(wid)
        assert [(e.seq, e.type) for e in events] == [
            (1, "workflow.submitted"),
            (2, "workflow.running"),
        ]
        await store.start_step(  # the claim's fence holds for its owner
            Fence(wid, 1), "s", idempotency_key=None, at=T0, event=NewEvent("step.started")
        )
    for wid in ("v2", "theirs"):
        assert claimed[wid] is None
        run = await store.get_run(wid)
        assert run is not None and (run.status, run.owner) == (RunStatus.PENDING, None)
    (job,) = await store.claim_jobs("w", ["p"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    assert job.run is None and (await store.get_run("plain")).status is RunStatus.PENDING  # type: ignore[union-attr]


async def test_jobs_are_claimed_once_and_closed_by_their_worker(store: Store) -> None:
    for i in range(3):
        await store.submit_run(NewRun(f"j{i}", "wf"), NewJob("q", priority=i), T0)
    row, created = await store.submit_run(NewRun("j0", "wf"), NewJob("q"), T0)
    assert not created and row.queue == "q"
    got = await store.claim_jobs("w1", ["q"], limit=2, visibility=30, limits={}, now=T0, at=T0)
    assert [j.workflow_id for j in got] == ["j2", "j1"]
    assert all(j.status is JobStatus.CLAIMED and j.worker == "w1" for j in got)
    rest = await store.claim_jobs("w2", ["q"], limit=5, visibility=30, limits={}, now=T0, at=T0)
    assert [j.workflow_id for j in rest] == ["j0"]
    assert await store.renew_job(got[0].id, "w1", visibility=30, now=T0)
    assert not await store.renew_job(got[0].id, "w2", visibility=30, now=T0)
    await store.claim_run("j2", "w1", T0, NewEvent("workflow.running"))  # no longer pending
    await store.finish_job(got[0].id, "w1", error=None, ghost=False, at=T0)
    await store.finish_job(got[1].id, "w1", error='"boom"', ghost=True, at=T0)
    await store.release_job(rest[0].id, "w2", at=T0)
    by_run = {j.workflow_id: j.status for j in await store.list_jobs()}
    assert by_run == {"j2": JobStatus.DONE, "j1": JobStatus.FAILED, "j0": JobStatus.QUEUED}
    assert "job.ghost" in [e.type for e in await store.list_events("j1")]


async def test_a_claim_says_whether_it_left_ready_jobs(store: Store) -> None:
    """`Claimed.more`: a claim that took as many jobs as asked says whether ready ones
    of its workflows were left, so a worker whose slots all filled claims again when
    one frees only then (a claim after the last job came back empty). On the one-
    statement claim (keyless jobs) and the general one (a capped queue, a key)."""
    of = [("wf", None)]

    async def claim(queues: list[str], limit: int, **kw: Any) -> tuple[list[str], bool]:
        got = await store.claim_jobs(
            "w", queues, limit=limit, visibility=30, now=T0, at=T0, workflows=of, **kw
        )
        return [j.workflow_id for j in got], got.more

    for i in range(3):
        await store.submit_run(NewRun(f"f{i}", "wf"), NewJob("free", priority=-i), T0)
    await store.submit_run(NewRun("theirs", "other"), NewJob("free"), T0)
    later = T0 + timedelta(hours=1)
    await store.submit_run(NewRun("later", "wf"), NewJob("free", run_after=later), T0)
    assert await claim(["free"], 2, limits={}) == (["f0", "f1"], True)
    assert await claim(["free"], 1, limits={}) == (["f2"], False)  # the last ready one
    assert await claim(["free"], 1, limits={}) == ([], False)
    cap = {"capped": QueueLimit(concurrency=5)}
    for i in range(2):
        await store.submit_run(NewRun(f"c{i}", "wf"), NewJob("capped", priority=-i), T0)
    assert await claim(["capped"], 1, limits=cap) == (["c0"], True)
    assert await claim(["capped"], 1, limits=cap) == (["c1"], False)
    await store.submit_run(NewRun("k0", "wf"), NewJob("keyed", concurrency_key="k"), T0)
    await store.submit_run(NewRun("k1", "wf"), NewJob("keyed", concurrency_key="j"), T0)
    assert await claim(["keyed"], 1, limits={}) == (["k0"], True)
    assert await claim(["keyed"], 5, limits={}) == (["k1"], False)  # fewer than asked


async def test_a_run_ended_by_its_function_closes_its_claimed_job_with_it(
    database_url: str,
) -> None:
    # the run's end and its job's end are one transaction: the worker's finish_job then
    # writes nothing (no transaction at all), and its lease renewal still holds
    calls: list[str] = []
    base: Any = type(open_store(database_url))

    class Counting(base):  # type: ignore[misc]
        async def _tx(self, mode: str, body: Any, *, single: bool = False) -> Any:
            calls.append(mode)
            return await super()._tx(mode, body, single=single)

    store: Store = Counting(database_url)
    await store.open()
    try:
        for wid, status, error in (
            ("e1", RunStatus.COMPLETED, None),
            ("e2", RunStatus.FAILED, '{"type":"ValueError","message":"no"}'),
        ):
            await store.submit_run(NewRun(wid, "wf"), NewJob(f"q-{wid}"), T0)
            (job,) = await store.claim_jobs(
                "w", [f"q-{wid}"], limit=1, visibility=30, limits={}, now=T0, at=T0
            )
            run = await store.claim_run(wid, "w", T0, NewEvent("workflow.running"), force=True)
            await store.finish_run(
                Fence(wid, run.generation), status, output=None if error else "1",
                error=error, at=LATER, event=NewEvent("workflow.ended"),
            )  # fmt: skip
            (closed,) = await store.list_jobs(workflow_id=wid)
            assert closed.status is JobStatus.DONE and closed.locked_until is None
            assert closed.run_after == T0  # when it was due: its wait counts from there
            assert await store.renew_job(job.id, "w", visibility=30, now=T0)
            assert not await store.renew_job(job.id, "w2", visibility=30, now=T0)
            calls.clear()
            await store.finish_job(job.id, "w", error=None, ghost=False, at=LATER)
            assert calls == [], f"{wid}: finish_job wrote again"
            assert [j.status for j in await store.list_jobs(workflow_id=wid)] == [JobStatus.DONE]
        # a run cancelled under its job and ended by its compensations keeps the job
        # claimed: its worker closes it as a ghost
        await store.submit_run(NewRun("c", "wf"), NewJob("q-c"), T0)
        (job,) = await store.claim_jobs(
            "w", ["q-c"], limit=1, visibility=30, limits={}, now=T0, at=T0
        )
        await store.claim_run("c", "w", T0, NewEvent("workflow.running"), force=True)
        await store.cancel_run("c", reason=None, compensate=True, at=T0)
        comp = await store.claim_run("c", "w", T0, NewEvent("x"), compensating=True, force=True)
        await store.finish_run(
            Fence("c", comp.generation, compensating=True), RunStatus.COMPENSATED,
            output=None, error=None, at=T0, event=NewEvent("workflow.compensated"),
        )  # fmt: skip
        assert [j.status for j in await store.list_jobs(workflow_id="c")] == [JobStatus.CLAIMED]
        await store.finish_job(job.id, "w", error=None, ghost=True, at=T0)
        assert [j.status for j in await store.list_jobs(workflow_id="c")] == [JobStatus.DONE]
        assert "job.ghost" in [e.type for e in await store.list_events("c")]
    finally:
        await store.close()


async def test_a_submitted_run_keeps_its_own_priority_and_its_job_the_jobs(store: Store) -> None:
    # the run's priority is what `runs list` shows; the job's orders claims (PostgreSQL's
    # one-statement submit once gave the run the job's)
    await store.submit_run(NewRun("p1", "wf", priority=3), NewJob("q", priority=7), T0)
    run = await store.get_run("p1")
    assert run is not None and run.priority == 3
    assert [j.priority for j in await store.list_jobs(workflow_id="p1")] == [7]


async def test_leases_expire_and_keys_and_caps_limit_claims(store: Store) -> None:
    for i in range(3):
        await store.submit_run(NewRun(f"k{i}", "wf"), NewJob("q", concurrency_key="same"), T0)
    await store.submit_run(NewRun("c0", "wf"), NewJob("capped"), T0)
    await store.submit_run(NewRun("c1", "wf"), NewJob("capped"), T0)
    caps = {"capped": QueueLimit(concurrency=1)}
    got = await store.claim_jobs(
        "w", ["q", "capped"], limit=10, visibility=5, limits=caps, now=T0, at=T0
    )
    assert sorted(j.workflow_id for j in got) == ["c0", "k0"]
    assert await store.reap_jobs(now=T0 + timedelta(seconds=4), at=T0) == 0
    assert await store.reap_jobs(now=T0 + timedelta(seconds=6), at=T0) == 2
    again = await store.claim_jobs(
        "w", ["q"], limit=10, visibility=5, limits={}, now=T0 + timedelta(seconds=7), at=T0
    )
    assert len(again) == 1 and again[0].attempt == 2
    await store.retry_job(again[0].id, "w", error="db down", run_after=LATER, at=T0)
    (job,) = [j for j in await store.list_jobs() if j.id == again[0].id]
    assert job.status is JobStatus.QUEUED and job.run_after == LATER
    assert job.attempt == 1  # a database failure is not counted against the run


async def test_stuck_runs_are_requeued_and_rerun_forgets_later_steps(store: Store) -> None:
    await store.submit_run(NewRun("s1", "wf", state="null"), NewJob("q"), T0)
    (job,) = await store.claim_jobs("w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    gen = (await store.claim_run("s1", "w", T0, NewEvent("workflow.running"))).generation
    f = Fence("s1", gen)
    for key in ("a", "b"):
        await store.start_step(
            f, key, idempotency_key=None, at=T0, event=NewEvent("step.started", key)
        )
        await store.complete_step(f, key, result="1", at=T0, event=NewEvent("step.completed"))
    await store.finish_job(job.id, "w", error=None, ghost=False, at=T0)
    late = T0 + timedelta(seconds=100)
    assert await store.reap_stuck_runs(idle_for=10, now=late, at=late) == ["s1"]
    assert await store.reap_stuck_runs(idle_for=10, now=late, at=late) == []
    with pytest.raises(tether.InvalidArgumentError):
        await store.rerun_from("s1", "b", at=T0)  # still running
    await store.finish_run(
        f, RunStatus.COMPLETED, output="1", error=None, at=T0, event=NewEvent("x")
    )
    with pytest.raises(tether.InvalidArgumentError):
        await store.rerun_from("s1", "nope", at=T0)
    await store.rerun_from("s1", "b", at=T0)
    assert [s.key for s in await store.load_steps("s1")] == ["a"]
    assert await _status(store, "s1") is RunStatus.PENDING


# -- outbox and idempotency --------------------------------------------------------------


async def test_outbox_delivers_in_order_retries_and_replays_the_dead(store: Store) -> None:
    gen = await _run(store)
    await store.append_events(Fence("r1", gen), [NewEvent("a"), NewEvent("b")], T0)
    pending = await store.outbox_pending(limit=10, now=T0)
    assert [(o.workflow_id, o.seq) for o in pending] == [("r1", 1), ("r1", 2), ("r1", 3)]
    retry_at = T0 + timedelta(seconds=30)
    await store.outbox_mark(delivered=[("r1", 1)], failed=[("r1", 2, "sink down", retry_at)], at=T0)
    assert await store.outbox_pending(limit=10, now=T0) == []  # seq 3 waits behind seq 2
    assert [o.seq for o in await store.outbox_pending(limit=10, now=retry_at)] == [2, 3]
    await store.outbox_mark(delivered=[], failed=[("r1", 2, "gone", None)], at=T0)
    assert [o.seq for o in await store.outbox_dead(limit=10)] == [2]
    assert await store.outbox_replay_dead(limit=10, at=T0) == 1
    assert await store.outbox_dead(limit=10) == []


async def test_a_failure_recorded_after_the_delivery_leaves_the_event_delivered(
    store: Store,
) -> None:
    # two passes over the same event (an `outbox.flush` dispatched by two processes,
    # which share no lock): one delivered it, the other's attempt failed and is
    # recorded after; the event stays delivered, not dead-lettered
    gen = await _run(store)
    await store.append_events(Fence("r1", gen), [NewEvent("a")], T0)
    await store.outbox_mark(delivered=[("r1", 2)], failed=[], at=T0)
    await store.outbox_mark(delivered=[], failed=[("r1", 2, "sink down", None)], at=T0)
    assert await store.outbox_dead(limit=10) == []
    assert [o.seq for o in await store.outbox_pending(limit=10, now=T0)] == [1]


async def test_outbox_marks_many_deliveries_of_many_runs_at_once(store: Store) -> None:
    for wid in ("r1", "r2", "r3"):
        gen = await _run(store, wid)
        await store.append_events(Fence(wid, gen), [NewEvent("a"), NewEvent("b")], T0)
    first = await store.outbox_pending(limit=10, now=T0)
    assert len(first) == 9
    picked = [("r1", 2), ("r3", 1), ("r3", 3), ("r2", 2), ("r9", 1)]  # r9: no such event
    await store.outbox_mark(delivered=picked, failed=[], at=T0)
    left = await store.outbox_pending(limit=10, now=T0)
    assert [(o.workflow_id, o.seq) for o in left] == [
        ("r1", 1), ("r1", 3), ("r2", 1), ("r2", 3), ("r3", 2)
    ]  # fmt: skip
    assert {o.attempts for o in left} == {0}
    await store.outbox_mark(delivered=[(o.workflow_id, o.seq) for o in left], failed=[], at=T0)
    assert await store.outbox_pending(limit=10, now=T0) == []


async def test_outbox_claims_a_batch_for_its_lease_and_takes_back_what_was_released(
    store: Store,
) -> None:
    # a claim holds its rows, and its runs' later ones, from any other claim until its
    # lease runs out; a release hands them back at once, but only while still its claim
    for wid in ("r1", "r2"):
        gen = await _run(store, wid)
        await store.append_events(Fence(wid, gen), [NewEvent("a"), NewEvent("b")], T0)
    first = await store.outbox_claim(limit=4, lease=60, now=T0)
    assert [(o.workflow_id, o.seq) for o in first] == [("r1", 1), ("r1", 2), ("r1", 3), ("r2", 1)]
    assert {o.claimed_until for o in first} == {T0 + timedelta(seconds=60)}
    assert await store.outbox_claim(limit=10, lease=60, now=T0 + timedelta(seconds=59)) == []
    later = T0 + timedelta(seconds=60)
    again = await store.outbox_claim(limit=1, lease=60, now=later)  # the first lapsed
    assert [(o.workflow_id, o.seq) for o in again] == [("r1", 1)]
    await store.outbox_mark(delivered=[("r2", 1)], failed=[], at=T0, released=first)
    # r1:1 is the second claim's now, not released by the first: r1 waits behind it
    rest = await store.outbox_claim(limit=10, lease=60, now=later)
    assert [(o.workflow_id, o.seq) for o in rest] == [("r2", 2), ("r2", 3)]
    await store.outbox_mark(delivered=[], failed=[], at=later, released=again)
    back = await store.outbox_claim(limit=10, lease=60, now=later)
    assert [(o.workflow_id, o.seq) for o in back] == [("r1", 1), ("r1", 2), ("r1", 3)]


async def test_idempotency_reserves_returns_and_takes_over_stale(store: Store) -> None:
    assert await store.idempotency_begin("cmd", "k", at=T0, stale_after=60) is None
    with pytest.raises(tether.IdempotencyInProgressError):
        await store.idempotency_begin("cmd", "k", at=T0, stale_after=60)
    late = T0 + timedelta(seconds=61)
    assert await store.idempotency_begin("cmd", "k", at=late, stale_after=60) is None
    await store.idempotency_finish("cmd", "k", result='{"workflow_id":"r1"}', at=late)
    earlier = await store.idempotency_begin("cmd", "k", at=late, stale_after=60)
    assert json.loads(earlier or "") == {"workflow_id": "r1"}
    await store.idempotency_finish("cmd", "k2", result=None, at=late)  # nothing to release


# -- pruning -----------------------------------------------------------------------------


async def _finished(store: Store, wid: str, status: RunStatus, at: datetime, **kw: object) -> None:
    await store.create_run(NewRun(wid, "wf", state="null", **kw), at)  # type: ignore[arg-type]
    gen = (await store.claim_run(wid, "o", at, NewEvent("workflow.running"))).generation
    await store.finish_run(
        Fence(wid, gen), status, output="1", error=None, at=at, event=NewEvent("x")
    )


async def test_prunable_runs_are_terminal_and_finished_before_the_cutoff(store: Store) -> None:
    await _finished(store, "old-ok", RunStatus.COMPLETED, T0)
    await _finished(store, "old-bad", RunStatus.FAILED, T0 + timedelta(seconds=1))
    await _finished(store, "new", RunStatus.COMPLETED, LATER)
    await _run(store, "live")
    cutoff = T0 + timedelta(hours=1)
    assert await store.prunable_runs(cutoff, None, 10) == ["old-ok", "old-bad"]
    assert await store.prunable_runs(cutoff, [RunStatus.FAILED], 10) == ["old-bad"]
    assert await store.prunable_runs(cutoff, [RunStatus.RUNNING], 10) == []
    assert await store.prunable_runs(cutoff, None, 1) == ["old-ok"]


async def test_delete_runs_takes_everything_of_finished_runs_only(store: Store) -> None:
    await _finished(store, "p", RunStatus.COMPLETED, T0)
    await _finished(store, "c", RunStatus.COMPLETED, T0, parent_id="p")
    await store.acquire_lock("mutex", "m", "o", ttl=60, now=T0, fence=Fence("p"), at=T0)
    await store.idempotency_begin("run.signal", "k", at=T0, stale_after=60)
    await store.idempotency_finish("run.signal", "k", result='{"workflow_id":"p"}', at=T0)
    await _finished(store, "p2", RunStatus.COMPLETED, T0)
    await store.create_run(NewRun("c2", "wf", parent_id="p2"), T0)  # a child still pending
    await _run(store, "live")
    await store.submit_run(NewRun("q", "wf"), NewJob("q"), T0)
    assert await store.delete_runs(["p", "p2", "live", "missing", "p"]) == 2
    assert await store.get_run("p") is None and await store.get_run("c") is None
    for wid in ("p2", "c2", "live", "q"):
        assert await store.get_run(wid) is not None
    assert await store.list_events("p") == [] and await store.load_steps("c") == []
    assert await store.list_locks("mutex") == []
    assert await store.idempotency_begin("run.signal", "k", at=T0, stale_after=60) is None
    assert [j.workflow_id for j in await store.list_jobs()] == ["q"]
    assert await store.delete_runs([]) == 0


async def test_a_jobs_wait_counts_once_it_ended_from_its_last_due_time(store: Store) -> None:
    # a job handed back (due again later than its claim) gave a negative wait, and a
    # wait histogram whose sum went down on a scrape without any prune
    await store.submit_run(NewRun("w0", "wf"), NewJob("q"), T0)
    (job,) = await store.claim_jobs("w1", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0)
    later = T0 + timedelta(seconds=60)
    await store.release_job(job.id, "w1", at=T0, run_after=later)
    waits = await store.latency_histogram("job_wait_seconds")
    assert (waits.count, waits.total) == (0, 0)
    at = later + timedelta(seconds=2)
    (job,) = await store.claim_jobs("w2", ["q"], limit=1, visibility=30, limits={}, now=at, at=at)
    assert (await store.latency_histogram("job_wait_seconds")).count == 0  # still claimed
    await store.claim_run("w0", "w2", at, NewEvent("workflow.running"))
    await store.finish_job(job.id, "w2", error=None, ghost=False, at=at)
    waits = await store.latency_histogram("job_wait_seconds")
    assert waits.count == 1 and abs(waits.total - 2.0) < 1e-6


async def test_a_keyed_job_is_claimed_in_its_priority_order(store: Store) -> None:
    # on PostgreSQL the one-statement claim took keyless jobs first: a priority-10 job
    # with a concurrency key waited behind every keyless job of any priority
    jobs = [("p10-keyed", 10, "k1"), ("p7", 7, None), ("p5-keyed", 5, "k2"), ("p1", 1, None),
            ("p0", 0, None), ("p-5", -5, None)]  # fmt: skip
    for wid, priority, key in reversed(jobs):
        await store.submit_run(NewRun(wid, "wf"), NewJob("q", priority=priority,
                                                        concurrency_key=key), T0)  # fmt: skip
    order = []
    for _ in jobs:
        (job,) = await store.claim_jobs(
            "w", ["q"], limit=1, visibility=30, limits={}, now=T0, at=T0
        )
        order.append(job.workflow_id)
    assert order == [wid for wid, _, _ in jobs]
    claimed = await store.claim_jobs("w", ["q"], limit=6, visibility=30, limits={}, now=T0, at=T0)
    assert claimed == []


@pytest.mark.parametrize("capped", [False, True], ids=["free", "capped"])
async def test_a_worker_of_several_queues_takes_the_best_priority_among_them(
    store: Store, capped: bool
) -> None:
    # SQLite served the queues in the order named (a priority-0 job of the first before
    # a priority-100 job of the last); PostgreSQL sorted uncapped queues by priority
    jobs = [("low", "q-low", 0, None), ("high", "q-high", 100, None), ("mid", "q-mid", 50, "k"),
            ("low-2", "q-low", 0, None)]  # fmt: skip
    for wid, queue, priority, key in jobs:
        await store.submit_run(NewRun(wid, "wf"), NewJob(queue, priority=priority,
                                                        concurrency_key=key), T0)  # fmt: skip
    queues = ["q-low", "q-mid", "q-high"]
    limits = {q: QueueLimit(concurrency=5) for q in queues} if capped else {}
    order = []
    for _ in jobs:
        (job,) = await store.claim_jobs("w", queues, limit=1, visibility=30, limits=limits,
                                        now=T0, at=T0)  # fmt: skip
        order.append(job.workflow_id)
    assert order == ["high", "mid", "low", "low-2"]
