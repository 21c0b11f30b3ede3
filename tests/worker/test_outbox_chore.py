"""The outbox chore is bounded: it starts no delivery once its time budget is spent,
keeps its lock while a delivery is in flight, never runs beside another worker's
pass over the same events, and a stopping worker hands its chores over at once."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

import tether
from tether import App, FakeClock, Workflow
from tether.kernel import CallableSink, CollectingSink, OutboxEvent
from tether.store import Fence, NewEvent, NewRun
from tether.testing import eventually, eventually_sync
from tether.worker import ServerlessHost
from tether.worker._maintenance import (
    CHORES,
    MaintenanceReport,
    maintenance_tick,
    release_chores,
)


async def _quick_runs(app: App, count: int) -> None:
    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    for i in range(count):
        await app.arun(quick, workflow_id=f"q{i}")


async def test_a_hanging_sink_costs_a_tick_one_delivery_not_one_per_run(
    app: App, clock: FakeClock
) -> None:
    """The budget was checked only between batches of 500: a receiver that never
    answers made each run's first event wait out the whole timeout, one run after the
    other, and the worker's due timers waited behind all of them."""
    calls: list[str] = []

    def hang(event: OutboxEvent) -> None:
        calls.append(f"{event.workflow_id}:{event.seq}")
        clock.advance(10)  # the webhook's timeout passes
        raise TimeoutError("timed out")

    @app.workflow(name="nap")
    async def nap(wf: Workflow) -> str:
        await wf.sleep(10)
        return "woke"

    assert (await app.arun(nap, workflow_id="nap")).status is tether.RunStatus.WAITING
    app.kernel.sinks.append(CallableSink(hang))
    await _quick_runs(app, 6)
    tick = await maintenance_tick(app, "w1", chore_ttl=15, outbox_budget=5)
    assert len(calls) == 1 and tick.outbox_failed == 1
    tick = await maintenance_tick(app, "w1", chore_ttl=15, outbox_budget=5)
    assert tick.timers_woken == ["nap"]  # due 10 s after it slept: woken at the next tick
    assert len(calls) == 2


async def test_the_budget_is_at_most_a_third_of_the_lock_ttl(app: App, clock: FakeClock) -> None:
    calls: list[str] = []

    def slow(event: OutboxEvent) -> None:
        calls.append(f"{event.workflow_id}:{event.seq}")
        clock.advance(2)

    app.kernel.sinks.append(CallableSink(slow))
    await _quick_runs(app, 3)
    tick = await maintenance_tick(app, "w1", chore_ttl=9, outbox_budget=60)
    assert tick.outbox_delivered == len(calls) == 2  # 3 s of budget: started at 0 s and 2 s


async def test_a_second_worker_never_delivers_what_a_slow_pass_is_delivering(
    app: App, clock: FakeClock
) -> None:
    """A pass ran through its whole batch, the lock (TTL 15 s) not renewed: with a
    receiver taking 2 s an event, the lock lapsed mid-pass, another worker took it and
    delivered the same (not yet marked) events again."""
    seen: Counter[str] = Counter()
    order: list[OutboxEvent] = []
    state = {"calls": 0}
    second: list[MaintenanceReport] = []

    async def slow(event: OutboxEvent) -> None:
        seen[f"{event.workflow_id}:{event.seq}"] += 1
        order.append(event)
        clock.advance(2)
        state["calls"] += 1
        if state["calls"] == 9:  # 18 s after the first worker's pass began
            second.append(await maintenance_tick(app, "w2", chore_ttl=15, outbox_budget=5))

    app.kernel.sinks.append(CallableSink(slow))
    await _quick_runs(app, 4)  # 4 runs x 4 events
    total = 0
    for i in range(4):
        total += len(await app.store.list_events(f"q{i}"))
    for _ in range(total):
        if sum(seen.values()) >= total:
            break
        await maintenance_tick(app, "w1", chore_ttl=15, outbox_budget=5)
    assert set(seen.values()) == {1} and len(seen) == total
    assert len(second) == 1 and "outbox" in second[0].skipped
    for i in range(4):
        seqs = [e.seq for e in order if e.workflow_id == f"q{i}"]
        assert seqs == sorted(seqs)


async def test_the_outbox_lock_is_renewed_while_a_delivery_is_in_flight(
    app: App, clock: FakeClock
) -> None:
    """One delivery may take a webhook's whole timeout: the lock must not lapse under
    it (another worker would deliver the same events meanwhile)."""
    renewed = asyncio.Event()
    ttl = 0.3  # renewed every 0.1 s of real time
    second: list[MaintenanceReport] = []

    async def in_flight(event: OutboxEvent) -> None:
        if renewed.is_set():
            return
        clock.advance(ttl * 0.9)  # the lock taken at the tick's start nearly lapsed

        async def lock_renewed() -> bool:
            lock = await app.store.get_lock("chore", "outbox")
            assert lock is not None and lock.holder == "w1"
            return lock.expires_at > clock.now() + timedelta(seconds=ttl * 0.5)

        await eventually(lock_renewed, timeout=30)
        renewed.set()
        clock.advance(ttl * 0.9)  # past the first lease: held only thanks to the renewal
        second.append(await maintenance_tick(app, "w2", chore_ttl=ttl, outbox_budget=0.1))

    app.kernel.sinks.append(CallableSink(in_flight))
    await _quick_runs(app, 1)
    await maintenance_tick(app, "w1", chore_ttl=ttl, outbox_budget=0.1)
    assert renewed.is_set()
    assert len(second) == 1 and "outbox" in second[0].skipped


async def test_a_tick_reaches_other_runs_past_a_failing_run_that_fills_a_batch(
    app: App, clock: FakeClock
) -> None:
    """A batch that delivered nothing ended the pass: a failing run whose retry came
    due filled the batch with its 500 oldest events each tick, and the other runs'
    events waited until its back-off outgrew the maintenance interval."""
    delivered: list[str] = []

    def publish(event: OutboxEvent) -> None:
        if event.workflow_id == "chatty":
            raise ConnectionError("the receiver rejects this run's events")
        delivered.append(f"{event.workflow_id}:{event.seq}")

    app.kernel.sinks.append(CallableSink(publish))
    store = app.store
    for wid, count in (("chatty", 600), ("small", 2)):
        await store.create_run(NewRun(wid, "wf", state="null"), clock.now())
        claimed = await store.claim_run(wid, "owner-a", clock.now(), NewEvent("workflow.running"))
        await store.append_events(
            Fence(wid, claimed.generation), [NewEvent("tick")] * (count - 1), clock.now()
        )
        clock.advance(1)
    tick = await maintenance_tick(app, "w1")
    assert (tick.outbox_delivered, tick.outbox_failed) == (2, 1)
    assert delivered == ["small:1", "small:2"]


async def test_released_chores_are_taken_by_another_worker_at_once(
    app: App, clock: FakeClock
) -> None:
    app.kernel.sinks.append(CollectingSink())  # an App with no sinks leaves the outbox be
    q = "default"  # the orphans chore adopts onto it
    await maintenance_tick(app, "w1", orphan_queue=q)
    all_but = set(CHORES) - {"schedules"}  # no schedules: nothing to hold
    assert set((await maintenance_tick(app, "w2", orphan_queue=q)).skipped) == all_but
    await release_chores(app, "w1")
    assert (await maintenance_tick(app, "w2", orphan_queue=q)).skipped == []
    await release_chores(app, "w1")  # not its locks any more: nothing released
    assert set((await maintenance_tick(app, "w1", orphan_queue=q)).skipped) == all_but


async def test_only_some_chores(app: App) -> None:
    app.kernel.sinks.append(CollectingSink())
    tick = await maintenance_tick(app, "w1", chores=("outbox",))
    assert tick.skipped == []
    assert set((await maintenance_tick(app, "w2")).skipped) == {"outbox"}
    with pytest.raises(tether.InvalidArgumentError, match="unknown chores"):
        await maintenance_tick(app, "w1", chores=("outbox", "laundry"))


async def test_a_tick_refuses_seconds_it_cannot_use(app: App) -> None:
    """A NaN (or text) lease made every chore fail on its lock, each with a bare store
    error in the log ("NOT NULL constraint failed"), and the tick reported nothing due:
    a cron-triggered host did no maintenance at all. Refused now, naming the argument."""
    app.kernel.sinks.append(CollectingSink())
    bad: list[tuple[str, object]] = [
        ("chore_ttl", math.nan),
        ("chore_ttl", "30"),
        ("chore_ttl", 0),
        ("stuck_after", -1),
        ("orphan_grace", math.inf),
        ("outbox_budget", math.nan),
    ]
    for name, value in bad:
        with pytest.raises(tether.InvalidArgumentError, match=f"{name} must be a number"):
            await maintenance_tick(app, "w1", **{name: value})  # type: ignore[arg-type]
    assert await app.store.list_locks("chore") == []  # no chore was tried


WORKER = textwrap.dedent(
    """
    import sys
    import tether
    from tether.worker import Worker
    app = tether.App(sys.argv[1])
    print("ready", flush=True)
    Worker(app, worker_id="stopping", poll_interval=0.05, maintenance_interval=5).serve()
    """
)


def test_a_worker_stopped_by_sigterm_releases_its_chore_locks(
    database_url: str, tmp_path: Path
) -> None:
    """A stopped worker left its chore locks to expire (3 maintenance intervals): the
    other workers' timers, leases and outbox waited that long."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    app = App(database_url)
    try:

        def held() -> bool:
            locks = app.run_sync(app.store.list_locks("chore"))
            return {lk.key for lk in locks if lk.holder == "stopping"} >= {"timers", "leases"}

        eventually_sync(held, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        tick = ServerlessHost(app, worker_id="next").maintenance_tick()
        assert tick.skipped == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        app.close()
