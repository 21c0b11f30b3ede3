"""Runs whose owner died are never left `running` forever, and a live owner is
never doubled: the owner's claim, its lapse, adoption by workers, recovery
by an embedded App, and what `tether runs` says about it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether._runner import PROCESS_SCOPE
from tether.app import run_on_loop
from tether.store import NewEvent
from tether.testing import eventually
from tether.worker import ServerlessHost, maintenance_tick

HOST = socket.gethostname()


def _register(app: App, calls: list[str]) -> object:
    @app.workflow(name="two-steps")
    async def flow(wf: Workflow) -> str:
        await wf.step("a", lambda: calls.append("a"))
        await wf.step("b", lambda: calls.append("b"))
        return "ok"

    return flow


async def _orphan(app: App, workflow_id: str, owner: str, clock: FakeClock) -> None:
    """A run left `running` by `owner` (which then stopped renewing its claim)."""
    await app.store.create_run(
        tether.store.NewRun(workflow_id=workflow_id, workflow_name="two-steps", state="null"),
        clock.now(),
    )
    await app.store.claim_run(
        workflow_id,
        owner,
        clock.now(),
        NewEvent("workflow.running"),
        lease=30,
        now=clock.store_time(),
    )


async def _lapsed_orphan(app: App, workflow_id: str, clock: FakeClock) -> list[str]:
    """A run of "two-steps" whose dead owner's claim has lapsed; the steps it calls."""
    calls: list[str] = []
    _register(app, calls)
    await _orphan(app, workflow_id, "elsewhere:1:dead", clock)
    clock.advance(31)
    return calls


async def test_workers_adopt_a_run_once_its_owner_claim_lapsed(app: App, clock: FakeClock) -> None:
    calls: list[str] = []
    _register(app, calls)
    await _orphan(app, "orphan-1", "elsewhere:1:dead", clock)

    tick = await maintenance_tick(app, "w1", orphan_queue="default")
    assert tick.orphans_adopted == []  # the claim is live: a slow owner is never doubled
    clock.advance(31)
    tick = await maintenance_tick(app, "w1", orphan_queue="default")
    assert tick.orphans_adopted == ["orphan-1"]
    assert (await maintenance_tick(app, "w2", orphan_queue="default")).orphans_adopted == []

    report = await ServerlessHost(app).aprocess_available_jobs(limit=5)
    assert report.succeeded == 1
    result = await app.aresult("orphan-1", timeout=30)
    assert result.value == "ok" and calls == ["a", "b"]
    adopted = [e for e in result.record.events if e.type == "run.adopted"]
    assert adopted and "elsewhere:1:dead" in (adopted[0].message or "")


async def test_a_serverless_hosts_maintenance_tick_adopts_orphans(
    app: App, clock: FakeClock
) -> None:
    # before: its tick passed no queue, so the orphans chore never ran: with no worker
    # (a serverless deployment) a run whose owner died stayed `running` for good
    await _lapsed_orphan(app, "orphan-sl", clock)
    host = ServerlessHost(app, queues=["jobs"])
    assert (await host.amaintenance_tick()).orphans_adopted == ["orphan-sl"]
    assert (await host.aprocess_available_jobs(limit=5)).succeeded == 1
    assert (await app.aresult("orphan-sl", timeout=30)).value == "ok"


async def test_a_live_owner_is_refused_and_a_dead_one_on_this_host_is_taken_over_at_once(
    app: App, clock: FakeClock
) -> None:
    calls: list[str] = []
    flow = _register(app, calls)
    alive = f"{HOST}:{os.getppid()}:x"  # our parent lives
    await _orphan(app, "live", alive, clock)
    with pytest.raises(tether.RunAlreadyRunningError, match="being driven by") as err:
        await app.arun(flow, workflow_id="live")  # type: ignore[arg-type]
    assert err.value.owner == alive and err.value.until is not None
    assert calls == []

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    await _orphan(app, "dead", f"{HOST}:{gone.stdout.strip()}:x", clock)
    assert (await app.arun(flow, workflow_id="dead")).value == "ok"  # type: ignore[arg-type]
    assert calls == ["a", "b"]


async def test_closed_app_of_this_process_is_a_dead_owner(
    database_url: str, clock: FakeClock
) -> None:
    first = App(database_url, clock=clock)
    second = App(database_url, clock=clock)
    try:
        _register(first, [])
        calls: list[str] = []
        flow = _register(second, calls)
        await _orphan(first, "closed", first._runtime.owner, clock)
        with pytest.raises(tether.RunAlreadyRunningError):
            await second.arun(flow, workflow_id="closed")  # type: ignore[arg-type]
        await first.aclose()
        assert (await second.arun(flow, workflow_id="closed")).value == "ok"  # type: ignore[arg-type]
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_app_with_recover_orphans_drives_them_on_first_use(
    database_url: str, clock: FakeClock
) -> None:
    setup = App(database_url, clock=clock)
    _register(setup, [])
    await _orphan(setup, "left-behind", "elsewhere:1:dead", clock)
    await setup.aclose()
    clock.advance(31)

    app = App(database_url, clock=clock, recover_orphans=True)
    try:
        calls: list[str] = []
        flow = _register(app, calls)
        assert (await app.arun(flow, workflow_id="fresh")).value == "ok"  # type: ignore[arg-type]
        result = await app.aresult("left-behind", timeout=10)
        assert result.value == "ok"
        assert sorted(calls) == ["a", "a", "b", "b"]
        assert await app.arecover_orphans() == []  # nothing left
    finally:
        await app.aclose()


async def test_an_app_with_recover_orphans_takes_up_a_run_orphaned_after_its_first_look(
    database_url: str, clock: FakeClock
) -> None:
    """The owner died a moment before the App started: its claim was still live at the
    App's first look. Before, the App never looked again and the run stayed running for
    good; now a later run/start/resume looks again once `RECOVER_EVERY` has passed."""
    app = App(database_url, clock=clock, recover_orphans=True)
    try:
        calls: list[str] = []
        flow = _register(app, calls)
        await _orphan(app, "late", "elsewhere:1:dead", clock)
        assert (await app.arun(flow, workflow_id="first")).value == "ok"  # type: ignore[arg-type]
        assert (await app.aget_run("late")).status is RunStatus.RUNNING  # claim still live
        clock.advance(31)  # the dead owner's claim lapses
        assert (await app.arun(flow, workflow_id="second")).value == "ok"  # type: ignore[arg-type]
        result = await app.aresult("late", timeout=10)
        assert result.value == "ok"
    finally:
        await app.aclose()


async def test_a_handed_back_run_is_runnable_at_once(
    app: App, clock: FakeClock, database_url: str
) -> None:
    import asyncio

    release = asyncio.Event()
    calls: list[str] = []

    @app.workflow(name="gate")
    async def gate(wf: Workflow) -> str:
        async def slow() -> str:
            calls.append("slow")
            await release.wait()
            return "slow"

        await wf.step("slow", slow)
        await wf.step("after", lambda: calls.append("after"))
        return "ok"

    run_id = await app.astart(gate, workflow_id="gate-1")
    await eventually(lambda: calls == ["slow"])
    closing = asyncio.ensure_future(app.aclose())  # as SIGTERM and interpreter exit do
    await asyncio.sleep(0.05)
    assert not closing.done()  # it waits for the step in flight
    release.set()
    await closing
    assert calls == ["slow"]  # the next step was not started

    other = App(database_url, clock=clock)
    run = await other.aget_run(run_id)
    assert run.status is RunStatus.PENDING and run.owner_expires_at is None
    record = await other.aget_record(run_id)
    assert record.steps["slow"].status.value == "completed"
    assert record.events[-1].type == "workflow.handed_back"
    calls2: list[str] = []

    @other.workflow(name="gate")
    async def gate2(wf: Workflow) -> str:
        await wf.step("slow", lambda: calls2.append("slow"))
        await wf.step("after", lambda: calls2.append("after"))
        return "ok"

    try:
        assert (await other.aresume(run_id)).value == "ok"
    finally:
        await other.aclose()
    assert calls2 == ["after"]


def test_runs_show_and_list_say_when_the_owner_is_gone(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    app = App(url)

    @app.workflow(name="two-steps")
    async def flow(wf: Workflow) -> None:
        return None

    long_ago = datetime.now(UTC) - timedelta(minutes=5)

    async def setup() -> None:
        await app.store.create_run(
            tether.store.NewRun(workflow_id="ghost", workflow_name="two-steps", state="null"),
            long_ago,
        )
        await app.store.claim_run(
            "ghost",
            "elsewhere:1:x",
            long_ago,
            NewEvent("workflow.running"),
            lease=30,
            now=long_ago,
        )

    run_on_loop(app, setup())
    app.close()
    tether_cmd = [sys.executable, "-m", "tether.cli", "--db", url]
    shown = subprocess.run(
        [*tether_cmd, "runs", "show", "ghost"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "owner gone since" in shown.stdout and "elsewhere:1:x" in shown.stdout
    listed = subprocess.run(
        [*tether_cmd, "runs", "list", "--json"], capture_output=True, text=True, check=False
    )
    assert '"ownerGoneSince": "' in listed.stdout, listed.stderr


async def test_live_processes_announce_the_workflows_they_drive(
    database_url: str, clock: FakeClock
) -> None:
    serving = App(database_url, clock=clock, recover_orphans=True)
    asking = App(database_url, clock=clock)
    try:
        _register(serving, [])
        assert await asking.adrivers("two-steps") == []
        await serving.aannounce()
        for _ in range(100):  # announced by a background task of `serving`
            if await asking.adrivers("two-steps"):
                break
            await asyncio.sleep(0.01)
        assert await asking.adrivers("two-steps") == [serving._runtime.owner]
        assert await asking.adrivers("other") == []
        clock.advance(31)  # an announcement lapses unless renewed (its process died)
        assert await asking.adrivers("two-steps") == []
        clock.advance(-31)
        await serving.aclose()  # a closed App withdraws it at once
        assert await asking.adrivers("two-steps") == []
    finally:
        await serving.aclose()
        await asking.aclose()


async def test_a_hosts_chores_take_up_orphans_without_recover_orphans_set(
    app: App, clock: FakeClock
) -> None:
    # a server that stopped handed its runs back (or died): the next one, serving the
    # same workflows, drives them on, though its App was not built with recover_orphans
    calls = await _lapsed_orphan(app, "served-before", clock)
    chores = asyncio.ensure_future(app.ahost_chores(every=0.01))
    try:
        assert (await app.aresult("served-before", timeout=30)).value == "ok"
        assert calls == ["a", "b"]
    finally:
        chores.cancel()
        await asyncio.gather(chores, return_exceptions=True)


async def test_a_plain_app_is_no_driver_of_runs_woken_elsewhere(
    database_url: str, clock: FakeClock
) -> None:
    """A plain App drives the runs it runs, resumes or wakes itself, never one another
    process woke: counted as a driver, `tether runs signal` said the run was driven,
    and it waited for good with no warning."""
    plain = App(database_url, clock=clock)
    asking = App(database_url, clock=clock)
    try:
        _register(plain, [])
        await plain.aannounce()
        said = [r.holder for r in await asking.store.list_locks(PROCESS_SCOPE)]
        assert said == [plain._runtime.owner]  # it announced itself...
        assert await asking.adrivers("two-steps") == []  # ...as no driver of woken runs
        chores = asyncio.ensure_future(plain.ahost_chores(every=0.01))
        try:  # host chores take such runs up: now it drives them
            await eventually(lambda: asking.adrivers("two-steps"))
            assert await asking.adrivers("two-steps") == [plain._runtime.owner]
        finally:
            chores.cancel()
            await asyncio.gather(chores, return_exceptions=True)
    finally:
        await plain.aclose()
        await asking.aclose()
