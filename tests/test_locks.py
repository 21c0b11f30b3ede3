"""Mutexes, leases and heartbeats within one process (cross-process: test_processes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

import tether
from tether import App, FakeClock, RunStatus, Workflow


async def test_lease_lifecycle_on_fake_clock(app: App, clock: FakeClock) -> None:
    wf = await app.aopen("leases")
    first = await wf.touch_lease("slot", holder="worker-a", ttl=30, detail={"pid": 1})
    assert first.holder == "worker-a"
    assert first.expires_at == clock.now() + timedelta(seconds=30)

    clock.advance(10)
    renewed = await wf.touch_lease("slot", holder="worker-a", ttl=30)
    assert renewed.expires_at == clock.now() + timedelta(seconds=30)
    assert renewed.acquired_at == first.acquired_at  # renewed in place

    with pytest.raises(tether.LeaseConflictError) as info:
        await wf.touch_lease("slot", holder="worker-b", ttl=30)
    err = info.value
    assert (err.key, err.holder, err.current_holder) == ("slot", "worker-b", "worker-a")
    assert err.expires_at == renewed.expires_at

    clock.advance(31)  # worker-a stopped renewing: its lease expired
    taken = await wf.touch_lease("slot", holder="worker-b", ttl=5)
    assert taken.holder == "worker-b"

    with pytest.raises(tether.LeaseConflictError):
        await wf.release_lease("slot", holder="worker-a")
    assert await wf.release_lease("slot", holder="worker-b") is True
    assert await wf.release_lease("slot", holder="worker-b") is False

    again = await wf.touch_lease("slot", holder="worker-c", ttl=5)  # released: free
    assert again.holder == "worker-c"

    rec = await wf.get_record()
    assert rec.leases["slot"].holder == "worker-c"
    types = [e.type for e in rec.events]
    assert types == [
        "lease.acquired",
        "lease.renewed",
        "lease.acquired",
        "lease.released",
        "lease.acquired",
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"holder": "", "ttl": 5}, "lease holder must be a non-empty string"),
        ({"holder": "   ", "ttl": 5}, "lease holder must be a non-empty string"),
        ({"holder": "a", "ttl": 0}, "ttl must be a number of seconds above 0"),
        ({"holder": "a", "ttl": -3}, "ttl must be a number of seconds above 0"),
        ({"holder": "a", "ttl": "10"}, "ttl must be a number of seconds above 0"),
        # these overflowed a datetime with a raw OverflowError
        ({"holder": "a", "ttl": math.inf}, "ttl must be a number of seconds above 0"),
        ({"holder": "a", "ttl": 1e300}, "ttl must be a number of seconds above 0"),
        ({"holder": "a", "ttl": math.nan}, "ttl must be a number of seconds above 0"),
    ],
)
async def test_lease_bad_input(app: App, kwargs: dict[str, object], match: str) -> None:
    wf = await app.aopen("lease-bad")
    with pytest.raises(tether.InvalidArgumentError, match=match):
        await wf.touch_lease("slot", **kwargs)  # type: ignore[arg-type]
    # nothing was recorded for the bad call
    assert (await wf.get_record()).leases == {}


async def test_heartbeat_persisted(app: App, clock: FakeClock) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.heartbeat("worker-1", {"phase": "apply", "done": 3})
        clock.advance(5)
        await wf.heartbeat("worker-1", {"phase": "apply", "done": 4})

    await app.arun(flow, workflow_id="hb")
    rec = await app.aget_record("hb")
    hb = rec.heartbeats["worker-1"]
    assert hb.detail == {"phase": "apply", "done": 4}
    assert hb.at == clock.now()
    assert [e.type for e in rec.events].count("heartbeat.recorded") == 2
    exported = rec.to_dict()["heartbeats"]["worker-1"]
    assert exported["detail"] == {"phase": "apply", "done": 4}


async def test_mutex_excludes_tasks_and_releases(app: App) -> None:
    inside = 0
    peak = 0

    async def flow(wf: Workflow) -> None:
        async def critical() -> None:
            nonlocal inside, peak
            async with wf.mutex("company:role", timeout=5):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(critical() for _ in range(5)))

    await app.arun(flow, workflow_id="mx")
    assert peak == 1
    rec = await app.aget_record("mx")
    assert [e.type for e in rec.events].count("mutex.acquired") == 5


async def test_mutex_timeout_names_holder(app: App) -> None:
    holder = await app.aopen("mx-holder")  # another run holds it (the same run would be refused)

    async def flow(wf: Workflow) -> None:
        with pytest.raises(tether.MutexTimeoutError) as info:
            async with wf.mutex("busy", timeout=0.05, poll=0.01):
                pass
        assert info.value.key == "busy"
        assert info.value.holder is not None

    async with holder.mutex("busy"):
        await app.arun(flow, workflow_id="mx-timeout")


async def test_with_mutex_returns_value(app: App) -> None:
    async def flow(wf: Workflow) -> int:
        return await wf.with_mutex("k", lambda: 41) + 1

    assert (await app.arun(flow, workflow_id="mx-with")).value == 42


async def test_stale_mutex_holder_is_evicted(app: App, clock: FakeClock) -> None:
    # a holder that stopped renewing (its process died) is evicted after stale_after
    from tether.store import NewEvent

    await app.store.open()
    wf = await app.aopen("mx-stale")
    dead = await app.store.acquire_lock(
        "mutex",
        "entity",
        "dead-process",
        ttl=10,
        now=clock.now(),
        on_acquire=NewEvent("x"),
        at=clock.now(),
    )
    assert dead.row.holder == "dead-process"
    with pytest.raises(tether.MutexTimeoutError):
        async with wf.mutex("entity", timeout=0.05, poll=0.01, stale_after=10):
            pass
    clock.advance(11)
    async with wf.mutex("entity", timeout=0.05, poll=0.01, stale_after=10) as handle:
        assert handle.holder != "dead-process"


async def test_release_checks_the_holder(app: App, clock: FakeClock) -> None:
    # a mutex taken over after expiry is not released by the old holder's exit
    wf = await app.aopen("mx-holder")
    async with wf.mutex("k", stale_after=5) as old:
        clock.advance(6)  # fake time jumps past the expiry before renewal
        new = await app.store.acquire_lock(
            "mutex", "k", "someone-else", ttl=5, now=clock.now(), at=clock.now()
        )
        assert new.row.holder == "someone-else"
    lock = await app.store.get_lock("mutex", "k")
    assert lock is not None
    assert lock.holder == "someone-else" and lock.released_at is None
    assert old.holder != "someone-else"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": ""}, "mutex key must be a non-empty string"),
        ({"key": "k", "timeout": -1}, "timeout must be a number of seconds from 0"),
        ({"key": "k", "poll": 0}, "poll must be a number of seconds above 0"),
        ({"key": "k", "stale_after": 0}, "stale_after must be a number of seconds above 0"),
        # a NaN left the run running, failing on every resume with a database error; an
        # infinity overflowed; a string raised a TypeError; a NaN timeout never came
        ({"key": "k", "stale_after": math.nan}, "stale_after must be a number of seconds"),
        ({"key": "k", "stale_after": math.inf}, "stale_after must be a number of seconds"),
        ({"key": "k", "timeout": "5"}, "timeout must be a number of seconds"),
        ({"key": "k", "timeout": math.nan}, "timeout must be a number of seconds"),
    ],
)
async def test_mutex_bad_input(app: App, kwargs: dict[str, object], match: str) -> None:
    wf = await app.aopen("mx-bad")
    with pytest.raises(tether.InvalidArgumentError, match=match):
        async with wf.mutex(**kwargs):  # type: ignore[arg-type]
            pass


def _contender(key: str) -> Callable[[Workflow], Awaitable[str]]:
    """A run that tries `key` once, briefly, and says what it got."""

    async def contend(wf: Workflow) -> str:
        try:
            async with wf.mutex(key, timeout=0.05, poll=0.01):
                return "acquired"
        except tether.MutexTimeoutError as exc:
            return f"refused: {exc}"

    return contend


async def _keeper(wf: Workflow) -> str:
    async with wf.mutex("job:42", stale_after=10):
        who = await wf.wait_for_signal("approve")  # parks the run inside the block
        await wf.step("apply", lambda: f"applied for {who}")
    return "done"


async def test_a_run_parked_inside_a_mutex_keeps_it_until_it_leaves_the_block(
    app: App, clock: FakeClock
) -> None:
    # a job application waits days for a person's approval inside its mutex: no other
    # run may work on the same job meanwhile, though no process renews the mutex
    assert (await app.arun(_keeper, workflow_id="keeper")).status is RunStatus.WAITING
    clock.advance(7 * 86400)  # far past stale_after: a parked run is not a dead process
    got = (await app.arun(_contender("job:42"), workflow_id="contender-1")).value
    assert got.startswith("refused:") and "'keeper'" in got and "parked inside its block" in got
    await app.asignal("keeper", "approve", "ada")
    assert (await app.aresume("keeper")).value == "done"  # its replay takes the mutex back
    assert (await app.arun(_contender("job:42"), workflow_id="contender-2")).value == "acquired"
    types = [e.type for e in (await app.aget_record("keeper")).events]
    assert types.count("mutex.kept") == 1 and types.count("mutex.taken_back") == 1
    assert types[-3:] == ["step.completed", "mutex.released", "workflow.completed"]


async def test_a_mutex_kept_by_a_parked_run_is_free_once_the_run_ends(
    app: App, clock: FakeClock
) -> None:
    await app.arun(_keeper, workflow_id="keeper")
    await app.acancel("keeper")  # it never resumes: its end lets the mutex go
    assert (await app.arun(_contender("job:42"), workflow_id="after")).value == "acquired"


async def test_a_wait_outside_the_block_keeps_nothing(app: App) -> None:
    async def polite(wf: Workflow) -> None:
        async with wf.mutex("job:7"):
            await wf.step("draft", lambda: 1)
        await wf.wait_for_signal("approve")

    assert (await app.arun(polite, workflow_id="polite")).status is RunStatus.WAITING
    assert (await app.arun(_contender("job:7"), workflow_id="next")).value == "acquired"


async def test_a_step_given_up_inside_a_mutex_keeps_the_key_until_it_returns(
    database_url: str,
) -> None:
    # a sync step cannot be stopped at its timeout: its thread runs on, and the next
    # holder got the key beside the side effect still under way
    app, other = App(database_url), App(database_url)
    done, ledger = threading.Event(), []

    def charge() -> None:
        ledger.append("charge started")
        done.wait(60)
        ledger.append("charge ended")

    @app.workflow(name="charges")
    async def charges(wf: Workflow) -> str:
        async with wf.mutex("acct-1"):
            with contextlib.suppress(tether.StepTimeoutError):
                await wf.step("charge", charge, timeout=0.2, retry=tether.RetryPolicy(attempts=1))
        return "left the block"

    async def next_holder(wf: Workflow, wait: float) -> None:
        async with wf.mutex("acct-1", timeout=wait):
            await wf.step("refund", lambda: ledger.append("refund"))

    other.workflow(name="next-holder")(next_holder)
    try:
        assert (await app.arun(charges, workflow_id="c")).value == "left the block"
        with pytest.raises(tether.MutexTimeoutError):  # the charge still runs
            await other.arun(next_holder, 0.5, workflow_id="early")
        done.set()
        await other.arun(next_holder, 30.0, workflow_id="late")  # the key freed at its end
        assert ledger == ["charge started", "charge ended", "refund"]
    finally:
        done.set()
        await other.aclose()
        await app.aclose()


# -- a child run asking for a mutex its waiting parent holds -----------------------------------


async def test_a_child_asking_for_its_awaiting_parents_mutex_fails_at_once(app: App) -> None:
    """The parent lets go only once the child ends: the child waited for itself until its
    mutex timeout, then failed with a timeout that did not say why."""

    @app.workflow
    async def kid(wf: Workflow) -> str:
        async with wf.mutex("acct", timeout=3):
            return "never"

    @app.workflow
    async def parent(wf: Workflow) -> str:
        async with wf.mutex("acct"):
            return await wf.child(kid, workflow_id="kid-inline")

    with pytest.raises(tether.ChildRunError):
        await app.arun(parent, workflow_id="parent-inline")
    error = (await app.aget_record("kid-inline")).last_error
    assert error is not None and error.type == "InvalidArgumentError", error
    assert "which run 'parent-inline' holds while it waits for 'kid-inline'" in error.message


async def test_a_child_woken_later_asking_for_its_parked_parents_mutex_fails_at_once(
    app: App,
) -> None:
    @app.workflow
    async def kid(wf: Workflow) -> str:
        await wf.wait_for_signal("go")
        async with wf.mutex("acct", timeout=3):
            return "never"

    @app.workflow
    async def parent(wf: Workflow) -> str:
        async with wf.mutex("acct"):
            return await wf.child(kid, workflow_id="kid-parked")

    assert (await app.arun(parent, workflow_id="parent-parked")).status is RunStatus.WAITING
    await app.asignal("kid-parked", "go", True)
    done = await app.aresult("parent-parked", timeout=10)
    assert done.status is RunStatus.FAILED
    error = (await app.aget_record("kid-parked")).last_error
    assert error is not None and error.type == "InvalidArgumentError", error
    assert "which run 'parent-parked' holds, parked, while it waits" in error.message


async def test_a_child_started_inside_its_parents_mutex_waits_for_it(app: App) -> None:
    """Not awaited, the child is no deadlock: it gets the mutex once the parent lets go."""
    order: list[str] = []
    parent_done = asyncio.Event()

    @app.workflow
    async def kid(wf: Workflow) -> str:
        async with wf.mutex("acct", timeout=30, poll=0.01):
            order.append("kid")
        return "ok"

    @app.workflow
    async def parent(wf: Workflow) -> str:
        async with wf.mutex("acct"):
            cid = await wf.start_child(kid, workflow_id="kid-detached")
            await asyncio.sleep(0.2)  # the child runs meanwhile, and waits for the mutex
            order.append("parent")
        parent_done.set()
        return cid

    assert (await app.arun(parent, workflow_id="parent-detached")).value == "kid-detached"
    assert (await app.aresult("kid-detached", timeout=20)).value == "ok"
    assert order == ["parent", "kid"]


async def test_a_child_awaited_after_its_parent_left_the_block_gets_the_mutex(app: App) -> None:
    """A task started inside the block carries a copy of the block's context; the parent
    has let go by the time its child asks: no deadlock, and the child gets the key."""

    @app.workflow
    async def kid(wf: Workflow) -> str:
        async with wf.mutex("acct", timeout=10, poll=0.01):
            return "got it"

    @app.workflow
    async def parent(wf: Workflow) -> str:
        gate = asyncio.Event()

        async def later() -> str:
            await gate.wait()
            return str(await wf.child(kid, workflow_id="kid-later"))

        async with wf.mutex("acct"):
            task = asyncio.ensure_future(later())
        gate.set()
        return await task

    assert (await app.arun(parent, workflow_id="parent-later")).value == "got it"


async def test_a_wait_for_a_parked_holder_times_out_when_the_fake_clock_passes_it(
    app: App, clock: FakeClock
) -> None:
    """The wait was timed by the loop's clock alone: a test on a FakeClock whose run
    waited (60 s) for a holder parked inside its block spent 60 real seconds, however
    far it moved the clock."""
    assert (await app.arun(_keeper, workflow_id="keeper")).status is RunStatus.WAITING

    async def patient(wf: Workflow) -> str:
        async with wf.mutex("job:42", timeout=60, poll=0.01):
            return "acquired"

    waiting = asyncio.ensure_future(app.arun(patient, workflow_id="patient"))
    for _ in range(50):  # until the wait has begun (and timed the clock): 10 s at most
        clock.advance(61)
        await asyncio.wait([waiting], timeout=0.2)
        if waiting.done():
            break
    else:
        waiting.cancel()
        pytest.fail("the wait did not end as the fake clock passed its timeout")
    with pytest.raises(tether.MutexTimeoutError, match="'keeper'"):
        waiting.result()
