"""Workers: real OS processes sharing one store claim, execute, crash and hand back jobs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.app import run_on_loop
from tether.kernel import CollectingSink
from tether.store import JobStatus
from tether.store._sqlite_changes import POLL_MAX
from tether.testing import eventually, eventually_sync
from tether.worker import ServerlessHost, Worker, maintenance_tick

from .._env import child_pythonpath

FLOWS = textwrap.dedent(
    """
    import os, time
    import tether

    app = tether.App(os.environ["DB_URL"], job_visibility=float(os.environ.get("VIS", "30")))
    EFFECTS = os.environ["EFFECTS"]

    def effect(line):
        fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)

    @app.workflow(name="five")
    async def five(wf: tether.Workflow, n: int) -> int:
        total = 0
        for i in range(5):
            def step(i=i):
                effect(f"{wf.workflow_id}:{i}")
                return 1
            total += await wf.step(f"s{i}", step)
        return total + n

    @app.workflow(name="stall")
    async def stall(wf: tether.Workflow, marker: str) -> str:
        for i in range(2):
            await wf.step(f"s{i}", lambda i=i: effect(f"{wf.workflow_id}:{i}"))
        def slow():
            effect(f"{wf.workflow_id}:2")
            if not os.path.exists(marker):
                open(marker, "w").close()
                time.sleep(600)  # the first worker is killed or stopped in here
            return "done"
        return await wf.step("s2", slow)

    @app.workflow(name="steady")
    async def steady(wf: tether.Workflow, marker: str) -> int:
        for i in range(4):
            def step(i=i):
                effect(f"{wf.workflow_id}:{i}")  # the side effect first, then a while
                if i == 1:
                    open(marker, "w").close()
                time.sleep(0.3)
                return i
            await wf.step(f"s{i}", step)
        return 4

    @app.workflow(name="booking")
    async def booking(wf: tether.Workflow, marker: str) -> str:
        def undo():
            effect(f"{wf.workflow_id}:undo")
            if marker and not os.path.exists(marker):
                open(marker, "w").close()
                time.sleep(600)  # the first worker is killed in here
        await wf.step("hotel", lambda: effect(f"{wf.workflow_id}:hotel"), compensate=undo)
        await wf.wait_for_signal("go")
        return "done"

    @app.workflow(name="keyed")
    async def keyed(wf: tether.Workflow, key: str) -> None:
        def critical():
            start = time.time()
            time.sleep(0.03)
            effect(f"{key} {start!r} {time.time()!r}")
        await wf.step("critical", critical)
    """
)

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[1])
    from flows import app
    from tether.worker import Worker
    worker = Worker(app, concurrency=int(sys.argv[2]), poll_interval=0.02,
                    maintenance_interval=0.2, grace=float(sys.argv[3]))
    worker.serve()
    """
)


@pytest.fixture
def flows(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "worker.py").write_text(WORKER)
    monkeypatch.setenv("DB_URL", database_url)
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects.log"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("flows",):
        sys.modules.pop(name, None)
    return tmp_path


def _worker(
    folder: Path, concurrency: int = 4, grace: float = 5.0, vis: float = 30.0
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VIS": str(vis)}
    log = (folder / f"worker-{time.monotonic_ns()}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(folder / "worker.py"), str(folder), str(concurrency), str(grace)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _load_app() -> App:
    import flows  # type: ignore[import-not-found]

    return flows.app  # type: ignore[no-any-return]


def test_many_runs_by_several_workers_execute_exactly_once(flows: Path, backend: str) -> None:
    app = _load_app()
    n_runs = 1000 if backend == "postgresql" else 300
    procs = [_worker(flows) for _ in range(3)]
    try:
        five = app.get_workflow("five").fn
        ids = [app.submit(five, i, workflow_id=f"r{i}") for i in range(n_runs)]
        for wid in ids:
            assert app.result(wid, timeout=120).status is RunStatus.COMPLETED
    finally:
        _stop(procs)
    lines = (flows / "effects.log").read_text().split()
    counts = Counter(lines)
    assert len(counts) == n_runs * 5
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1][:5]
    assert [r.value for r in (app.result(f"r{i}") for i in range(3))] == [5, 6, 7]
    assert run_on_loop(app, app.store.list_jobs(status="claimed")) == []
    app.close()


def test_killed_worker_run_is_finished_by_another(flows: Path) -> None:
    app = _load_app()
    marker = flows / "in-slow-step"
    first = _worker(flows, vis=1.0)
    try:
        wid = app.submit(app.get_workflow("stall").fn, str(marker), workflow_id="stalled")
        eventually_sync(marker.exists, timeout=60)  # the first worker reached the slow step
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        second = _worker(flows, vis=1.0)
        try:
            res = app.result(wid, timeout=60)
        finally:
            _stop([second])
    finally:
        _stop([first])
    assert res.status is RunStatus.COMPLETED and res.value == "done"
    lines = (flows / "effects.log").read_text().split()
    assert Counter(lines) == {"stalled:0": 1, "stalled:1": 1, "stalled:2": 2}
    events = [e.type for e in res.record.events]
    assert "job.lease_expired" in events
    app.close()


def test_a_worker_leaves_a_queued_run_to_the_live_process_driving_it(flows: Path) -> None:
    # a queued run resumed by another process (tether runs resume, app.resume) while its
    # job waits: the worker that claims the job must not take the run mid-step
    app = _load_app()
    marker = flows / "on-step-1"
    wid = app.submit(app.get_workflow("steady").fn, str(marker), workflow_id="resumed")
    driver = subprocess.Popen(
        [sys.executable, "-c", f"from flows import app; app.resume({wid!r})"],
        cwd=flows,
        env={**os.environ, "PYTHONPATH": child_pythonpath(flows)},
        stderr=subprocess.PIPE,
    )
    eventually_sync(marker.exists, timeout=60)  # the other process is on step s1
    worker = _worker(flows)
    try:
        _, err = driver.communicate(timeout=60)
        assert driver.returncode == 0, err.decode()
        res = app.result(wid, timeout=60)
        # the job waited and then closed, its run done
        eventually_sync(
            lambda: run_on_loop(app, app.store.list_jobs(workflow_id=wid))[0].status == "done",
            timeout=60,
        )
    finally:
        _stop([worker])
    assert res.status is RunStatus.COMPLETED and res.value == 4
    lines = (flows / "effects.log").read_text().split()
    assert Counter(lines) == {f"resumed:{i}": 1 for i in range(4)}  # no step ran twice
    app.close()


@pytest.mark.parametrize("kill", [False, True], ids=["compensates", "killed-meanwhile"])
def test_workers_compensate_a_queued_run_cancelled_with_compensation(
    flows: Path, kill: bool
) -> None:
    """`cancel(compensate=True)` of a queued run that waits: a worker runs its
    compensations (before, nobody did: the run stayed cancelled, the booking kept); a
    worker killed in the middle leaves them to the next one."""
    app = _load_app()
    marker = flows / "in-undo"
    first = _worker(flows, vis=1.0)
    second: subprocess.Popen[bytes] | None = None
    try:
        wid = app.submit(app.get_workflow("booking").fn, str(marker) if kill else "")
        eventually_sync(lambda: app.get_run(wid).status is RunStatus.WAITING, timeout=60)
        assert app.cancel(wid, "plans changed", compensate=True) == [wid]
        if kill:
            eventually_sync(marker.exists, timeout=60)  # the first worker is undoing it
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            second = _worker(flows, vis=1.0)

        def settled() -> bool:
            status = app.get_run(wid).status
            jobs = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
            assert status is RunStatus.COMPENSATED and {j.status for j in jobs} == {
                JobStatus.DONE
            }, (status, [(j.status.value, j.attempt) for j in jobs])
            return True

        eventually_sync(settled, timeout=60)
    finally:
        _stop([first] + ([second] if second else []))
    res = app.result(wid)
    undone = 2 if kill else 1  # a compensation a crash cut short runs again, as a step does
    lines = (flows / "effects.log").read_text().split()
    assert Counter(lines) == {f"{wid}:hotel": 1, f"{wid}:undo": undone}
    assert "job.ghost" not in [e.type for e in res.record.events]
    app.close()


def test_graceful_shutdown_hands_work_back_at_once(flows: Path) -> None:
    app = _load_app()
    marker = flows / "in-slow-step"
    first = _worker(flows, grace=0.2, vis=120.0)  # a lease far longer than the test
    second: subprocess.Popen[bytes] | None = None
    try:
        wid = app.submit(app.get_workflow("stall").fn, str(marker), workflow_id="handed")
        eventually_sync(marker.exists, timeout=60)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        started = time.monotonic()
        second = _worker(flows, vis=120.0)
        res = app.result(wid, timeout=60)
        assert time.monotonic() - started < 30  # well before the 120 s lease would expire
    finally:
        _stop([first] + ([second] if second else []))
    assert res.status is RunStatus.COMPLETED
    assert "job.lease_expired" not in [e.type for e in res.record.events]
    app.close()


def test_sigterm_lets_the_step_in_flight_finish_and_hands_the_run_on(flows: Path) -> None:
    """Graceful mode: a stopped worker finishes its step, then the next worker continues
    from the next step; no step runs twice."""
    app = _load_app()
    marker = flows / "in-step-1"
    first = _worker(flows, grace=30.0, vis=120.0)
    second: subprocess.Popen[bytes] | None = None
    try:
        wid = app.submit(app.get_workflow("steady").fn, str(marker), workflow_id="steady-1")
        eventually_sync(marker.exists, timeout=60)
        first.send_signal(signal.SIGTERM)  # mid-step s1
        assert first.wait(timeout=60) == 0
        mid = app.get_record(wid)
        assert mid.steps["s1"].status.value == "completed"
        assert "s2" not in mid.steps and mid.status is RunStatus.PENDING
        jobs = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
        assert [j.status.value for j in jobs] == ["queued"]  # its job is back in the queue
        second = _worker(flows, vis=120.0)
        res = app.result(wid, timeout=60)
    finally:
        _stop([first] + ([second] if second else []))
    assert res.status is RunStatus.COMPLETED
    lines = (flows / "effects.log").read_text().split()
    assert lines == [f"steady-1:{i}" for i in range(4)]
    assert [e.type for e in res.record.events].count("workflow.handed_back") == 1
    app.close()


def test_same_concurrency_key_never_overlaps_across_workers(flows: Path) -> None:
    app = _load_app()
    procs = [_worker(flows, concurrency=4) for _ in range(2)]
    try:
        keyed = app.get_workflow("keyed").fn
        ids = [
            app.submit(keyed, f"issue-{i % 3}", concurrency_key=f"issue-{i % 3}") for i in range(18)
        ]
        for wid in ids:
            assert app.result(wid, timeout=120).status is RunStatus.COMPLETED
    finally:
        _stop(procs)
    by_key: dict[str, list[tuple[float, float]]] = {}
    for line in (flows / "effects.log").read_text().splitlines():
        key, start, end = line.split()
        by_key.setdefault(key, []).append((float(start), float(end)))
    assert {k: len(v) for k, v in by_key.items()} == {"issue-0": 6, "issue-1": 6, "issue-2": 6}
    for spans in by_key.values():
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert s2 >= e1
    app.close()


# -- in-process hosts -------------------------------------------------------------


async def _completed_by(worker: Worker, ids: list[str]) -> None:
    """Run `worker` until every run of `ids` has completed, then stop it."""
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        for wid in ids:
            assert (await worker.app.aresult(wid, timeout=30)).status is RunStatus.COMPLETED
    finally:
        worker.stop()
        await task


async def test_queue_concurrency_limit_and_cancel_cascade(app: App) -> None:
    running = 0
    peak = 0

    @app.workflow(name="slow")
    async def slow(wf: Workflow) -> None:
        async def work() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

        await wf.step("work", work)

    app.queue("narrow", concurrency=1)
    ids = [await app.asubmit(slow, queue="narrow") for _ in range(5)]
    doomed = await app.asubmit(slow, queue="narrow", run_after=app.clock.now().replace(year=2030))
    assert await app.acancel(doomed) == [doomed]
    assert [j.status.value for j in await app.store.list_jobs(workflow_id=doomed)] == ["cancelled"]
    worker = Worker(app, queues=["narrow"], concurrency=4, poll_interval=0.01)
    await _completed_by(worker, ids)
    assert peak == 1
    assert (await app.aget_run(doomed)).status is RunStatus.CANCELLED


@pytest.mark.parametrize("concurrency,key", [(2, "k"), (1, None)])
async def test_a_freed_slot_claims_at_once_what_the_last_claim_had_to_leave(
    app: App, concurrency: int, key: str | None
) -> None:
    """A finished job makes its worker claim again at once where more may wait: the
    job held a concurrency key another job waited for (each claim leaving a slot
    free), or its last claim filled every slot. With a poll of an hour, a missed claim
    would wait on PostgreSQL for a notification that never comes (nothing new is
    submitted)."""

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    ids = [await app.asubmit(quick, queue="q", concurrency_key=key) for _ in range(3)]
    worker = Worker(app, queues=["q"], concurrency=concurrency, poll_interval=3600)
    await _completed_by(worker, ids)


async def test_a_worker_asked_to_stop_while_it_claims_stops_at_once(app: App) -> None:
    """`stop()` arriving during a claim is not lost when the claim loop then idles
    (with a poll of an hour, it would otherwise wait that hour)."""
    worker = Worker(app, queues=["q"], poll_interval=3600)
    real = app.store.claim_jobs

    async def claim_and_be_stopped(*args: Any, **kw: Any) -> Any:
        worker.stop()
        return await real(*args, **kw)

    app.store.claim_jobs = claim_and_be_stopped  # type: ignore[method-assign]
    await asyncio.wait_for(worker.run(install_signals=False), 30)


def _count_claims(app: App) -> list[int]:
    """A one-item counter of the claims `app`'s store makes from now on."""
    claims = [0]
    real = app.store.claim_jobs

    async def counting(*args: Any, **kw: Any) -> Any:
        claims[0] += 1
        return await real(*args, **kw)

    app.store.claim_jobs = counting  # type: ignore[method-assign]
    return claims


@contextlib.asynccontextmanager
async def _serving(worker: Worker) -> AsyncIterator[Worker]:
    """`worker` running in this loop for the block, stopped and awaited after it."""
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def test_an_idle_worker_claims_on_news_not_after_each_empty_wait(app: App) -> None:
    """An idle worker claims again when work is announced (or its poll is due), not
    each time the store's wait comes back with nothing: SQLite's wait returns within
    `POLL_MAX` (50 ms), and claiming after each took the write lock 20 times a
    second for nothing."""

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    claims = _count_claims(app)
    async with _serving(Worker(app, queues=["q"], poll_interval=3600)):
        await eventually(lambda: claims[0] >= 1)
        await asyncio.sleep(6 * POLL_MAX)  # idle, through six of SQLite's empty waits
        assert claims[0] == 1
        wid = await app.asubmit(quick, queue="q")  # announced: claimed at once
        assert (await app.aresult(wid, timeout=30)).status is RunStatus.COMPLETED


async def test_a_worker_that_took_the_last_job_claims_on_news_not_at_its_end(
    app: App,
) -> None:
    """A claim that filled every slot with the last ready job (`Claimed.more` false)
    makes no claim when the job ends: it would come back empty (on an idle system
    that claim ran beside the caller reading the run's result). A job announced
    while every slot was busy is still claimed as soon as one frees, not at the
    poll (an hour here)."""
    gate = asyncio.Event()

    @app.workflow(name="gated")
    async def gated(wf: Workflow) -> int:
        await gate.wait()
        return await wf.step("s", lambda: 1)

    claims = _count_claims(app)
    worker = Worker(app, queues=["q"], concurrency=1, poll_interval=3600)
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        await eventually(lambda: claims[0] >= 1)  # the first claim: nothing queued yet
        first = await app.asubmit(gated, queue="q")
        await eventually(lambda: claims[0] >= 2)  # took it, the last one
        second = await app.asubmit(gated, queue="q")  # news while the slot is busy
        gate.set()
        for wid in (first, second):
            assert (await app.aresult(wid, timeout=30)).status is RunStatus.COMPLETED
        await eventually(lambda: worker.executed == 2)
        for _ in range(20):  # turns of the loop in which a claim at the end would start
            await asyncio.sleep(0)
        assert claims[0] == 3
    finally:
        worker.stop()
        await task


async def test_cancel_under_a_running_job_makes_a_ghost(app: App) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    @app.workflow(name="long")
    async def long(wf: Workflow) -> str:
        async def work() -> str:
            entered.set()
            await release.wait()
            return "late"

        return await wf.step("work", work)

    wid = await app.asubmit(long)
    host = ServerlessHost(app)
    jobs = await host.aclaim(5)
    assert [j.workflow_id for j in jobs] == [wid]
    execution = asyncio.ensure_future(host.ahandle_job(jobs[0]))
    await entered.wait()
    await app.acancel(wid, "changed my mind")
    release.set()
    result = await execution
    assert result.ghost and result.status == "cancelled"
    rec = await app.aget_record(wid)
    assert rec.steps["work"].result is None
    assert "job.ghost" in [e.type for e in rec.events]


async def test_serverless_host_processes_and_maintains(app: App, clock: tether.FakeClock) -> None:
    @app.workflow(name="nap")
    async def nap(wf: Workflow, n: int) -> int:
        await wf.sleep(3600)
        return n

    sink = CollectingSink()
    app.kernel.sinks.append(sink)  # an App with no sinks leaves the outbox be
    host = ServerlessHost(app)
    ids = [await app.asubmit(nap, i) for i in range(3)]
    report = await host.aprocess_available_jobs(limit=10)
    assert (report.processed, report.succeeded, report.failed) == (3, 3, 0)
    assert {(await app.aget_run(w)).status for w in ids} == {RunStatus.WAITING}
    clock.advance(3601)
    tick = await host.amaintenance_tick()
    assert sorted(tick.timers_woken) == sorted(ids)
    assert tick.outbox_delivered == len(sink.events) > 0
    assert (await host.aprocess_available_jobs(limit=10)).processed == 3
    assert [(await app.aresult(w, timeout=30)).value for w in ids] == [0, 1, 2]
    other = ServerlessHost(app, worker_id="other")
    # the first host holds every chore's lock, orphans' too (it adopts onto its queue)
    skipped = set((await other.amaintenance_tick()).skipped)
    assert skipped == {"timers", "leases", "stuck", "orphans", "processes", "outbox"}


async def test_one_maintenance_tick_publishes_a_backlog_larger_than_a_batch(
    database_url: str, clock: tether.FakeClock
) -> None:
    """One batch (500 events) a tick would leave most of this backlog to later ticks,
    and under load the backlog would only grow; a tick drains it, in order per run."""
    sink = CollectingSink()
    app = App(database_url, clock=clock, sinks=[sink])
    try:

        @app.workflow()
        async def chatty(wf: Workflow) -> int:
            for i in range(60):
                await wf.step("s", lambda i=i: i)
            return 60

        for i in range(6):  # each ~120 step events: ~750 events in all
            await app.arun(chatty, workflow_id=f"chatty-{i}")
        written = 0
        for i in range(6):
            written += len(await app.store.list_events(f"chatty-{i}"))
        assert written > 600
        tick = await ServerlessHost(app).amaintenance_tick()
        assert tick.outbox_delivered == written == len(sink.events)
        for i in range(6):
            seqs = [e.seq for e in sink.events if e.workflow_id == f"chatty-{i}"]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        again = await ServerlessHost(app).amaintenance_tick()
        assert again.outbox_delivered == 0 and len(sink.events) == written
    finally:
        await app.aclose()


async def test_worker_bad_configuration(app: App) -> None:
    with pytest.raises(tether.InvalidArgumentError, match="concurrency"):
        Worker(app, concurrency=0)
    with pytest.raises(tether.InvalidArgumentError, match="queues"):
        Worker(app, queues=[])
    with pytest.raises(tether.InvalidArgumentError, match="queue name"):
        ServerlessHost(app, queues=["ok", ""])
    # one name is one queue, never its letters
    assert Worker(app, queues="default").queues == ("default",)
    assert ServerlessHost(app, queues="default").queues == ("default",)
    with pytest.raises(tether.InvalidArgumentError, match="concurrency"):
        app.queue("q", concurrency=0)
    with pytest.raises(tether.InvalidArgumentError, match="concurrency"):
        app.queue("q", concurrency=True)
    # a NaN or an infinity made every claim of the queue fail; a string raised TypeError
    for rate in (math.nan, math.inf, 1e-9, "2"):
        with pytest.raises(tether.InvalidArgumentError, match="rate_per_second must be"):
            app.queue("q", rate_per_second=rate)  # type: ignore[arg-type]
    assert app.queue_limits == {}  # nothing half-set
    worker = Worker(app, concurrency=2)
    with pytest.raises(tether.InvalidArgumentError, match="concurrency"):
        worker.resize(0)
    worker.resize(5)
    assert worker.concurrency == 5


async def test_a_serverless_host_refuses_a_limit_that_is_no_count(app: App) -> None:
    """A handler passing its event's text ("10") raised a bare TypeError from inside the
    loop, and a limit of 1.5 ran two jobs; each is refused naming the limit, and no job
    is claimed."""

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> None:
        return None

    await app.asubmit(quick)
    host = ServerlessHost(app)
    for bad in ("10", 1.5, None, True, -1):
        with pytest.raises(tether.InvalidArgumentError, match="limit must be a whole number"):
            await host.aprocess_available_jobs(bad)  # type: ignore[arg-type]
        with pytest.raises(tether.InvalidArgumentError, match="limit must be a whole number"):
            await host.aclaim(bad)  # type: ignore[arg-type]
    assert (await host.aprocess_available_jobs(0)).processed == 0
    assert (await host.aprocess_available_jobs(5)).processed == 1


async def test_queue_rate_limit_caps_starts_per_second(app: App, clock: tether.FakeClock) -> None:
    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> None:
        return None

    app.queue("metered", rate_per_second=2)
    for _ in range(5):
        await app.asubmit(quick, queue="metered")
    host = ServerlessHost(app, queues=("metered",))
    assert len(await host.aclaim(10)) == 2  # two starts in this second, no more
    assert await host.aclaim(10) == []
    clock.advance(1.5)
    assert len(await host.aclaim(10)) == 2
    clock.advance(1.5)
    assert len(await host.aclaim(10)) == 1


async def test_a_rate_capped_queue_is_claimed_again_when_its_window_moves_on(
    app: App, clock: tether.FakeClock
) -> None:
    """A job the queue's rate held back is claimable once the rate's window has moved
    on, which no write announces: an idle worker claims again then, not at its poll
    (an hour here; a queue capped at 4/s started 4 jobs per poll)."""

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    app.queue("metered", rate_per_second=1)
    first, second = [await app.asubmit(quick, queue="metered") for _ in range(2)]
    claims = _count_claims(app)
    async with _serving(
        Worker(app, queues=["metered"], poll_interval=3600, maintenance_interval=3600)
    ):
        assert (await app.aresult(first, timeout=30)).status is RunStatus.COMPLETED
        before = claims[0]
        await eventually(lambda: claims[0] > before)  # a claim since: the rate held it
        assert (await app.aget_run(second)).status is RunStatus.PENDING
        clock.advance(1.5)  # the window moved on: nothing announces it
        assert (await app.aresult(second, timeout=30)).status is RunStatus.COMPLETED


async def test_a_worker_fires_a_schedule_tick_when_due_not_at_its_next_maintenance(
    database_url: str,
) -> None:
    """A worker's maintenance wakes for the App's next schedule tick: firing only every
    `maintenance_interval` (an hour here) started ticks up to an interval late, and
    missed="skip" dropped those found over a minute late, without a word."""
    clock = tether.FakeClock(datetime(2026, 12, 1, 16, 0, 59, 900_000, tzinfo=UTC))
    app = App(database_url, clock=clock)

    @app.workflow(name="beat")
    async def beat(wf: Workflow) -> str:
        return "beat"

    app.schedule(beat, cron="* * * * *", missed="skip")

    async def saved() -> bool:  # the first tick saved it: it counts from now
        return len(await app.alist_schedules()) == 1

    async def started() -> bool:
        return bool(await app.alist_runs(workflow="beat"))

    try:
        async with _serving(Worker(app, maintenance_interval=3600)):
            await eventually(saved)
            clock.advance(0.2)  # 16:01:00.1, the tick is due
            await eventually(started, timeout=30)
            done = await app.aresult("beat@2026-12-01T16:01:00Z", timeout=30)
            assert (done.status, done.value) == (RunStatus.COMPLETED, "beat")
    finally:
        await app.aclose()


async def test_a_worker_resumes_a_run_parked_on_a_timer_when_it_comes_due(
    database_url: str,
) -> None:
    """A run a worker parked on a timer resumes when the timer is due, not at the
    worker's next maintenance tick (an hour here): timers fired only at ticks, up to
    `maintenance_interval` (5 s by default) late. The real clock: the timer is a
    second long, and nothing but the worker fires it."""
    app = App(database_url, inline_wait=0)  # the run parks on its timer, job handed back

    @app.workflow(name="nap")
    async def nap(wf: Workflow) -> str:
        await wf.sleep(1.0)
        return "up"

    try:
        async with _serving(Worker(app, poll_interval=0.05, maintenance_interval=3600)):
            wid = await app.asubmit(nap)
            done = await app.aresult(wid, timeout=60)
            assert (done.status, done.value) == (RunStatus.COMPLETED, "up")
        kinds = [e.type for e in await app.store.list_events(wid)]
        assert "workflow.waiting" in kinds  # it did park: the timer was fired, not slept
    finally:
        await app.aclose()


async def test_a_run_whose_job_used_up_its_attempts_on_dead_workers_fails(
    app: App, clock: tether.FakeClock
) -> None:
    @app.workflow(name="fragile")
    async def fragile(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")

    wid = await app.asubmit(fragile, max_attempts=1, workflow_id="fragile-1")
    host = ServerlessHost(app)
    assert len(await host.aclaim(1)) == 1  # its worker dies here: never renews nor finishes
    clock.advance(31)  # past the job's lease (job_visibility, 30 s)
    await app.store.reap_jobs(now=clock.store_time(), at=clock.now())
    run = await app.aget_run(wid)
    assert run.status is RunStatus.FAILED  # not left running, nor tried again
    res = await app.aresult(wid)
    assert res.record.last_error is not None
    assert res.record.last_error.type == "JobAttemptsExhausted"
    assert "max_attempts" in res.record.last_error.message
    assert (await host.aclaim(5)) == []  # no new job of 10 attempts


async def test_a_woken_run_keeps_the_attempts_it_was_submitted_with(app: App) -> None:
    @app.workflow(name="gate")
    async def gate(wf: Workflow) -> str:
        return str(await wf.wait_for_signal("go"))

    wid = await app.asubmit(gate, max_attempts=3, workflow_id="gate-1")
    host = ServerlessHost(app)
    [job] = await host.aclaim(1)
    assert (await host.ahandle_job(job)).status == "waiting"
    await app.asignal(wid, "go", "now")
    jobs = await app.store.list_jobs(workflow_id=wid)
    assert [j.max_attempts for j in jobs] == [3, 3]  # the wake-up's job too, not 10


async def test_a_queued_runs_drivers_are_the_live_workers_of_its_queue(app: App) -> None:
    @app.workflow(name="served")
    async def served(wf: Workflow) -> None:
        return None

    await app.aannounce(["default", "bulk"])  # as a worker serving two queues does
    me = await app.adrivers("served")
    assert len(me) == 1
    assert await app.adrivers("served", "bulk") == me
    assert await app.adrivers("served", "other") == []  # nobody serves that queue


async def test_a_rate_below_one_per_second_starts_one_every_so_often(
    app: App, clock: tether.FakeClock
) -> None:
    @app.workflow(name="rare")
    async def rare(wf: Workflow) -> None:
        return None

    app.queue("slow", rate_per_second=0.5)  # one start every two seconds
    app.queue("odd", rate_per_second=1.5)  # three starts every two seconds
    for _ in range(4):
        await app.asubmit(rare, queue="slow")
        await app.asubmit(rare, queue="odd")
    slow, odd = ServerlessHost(app, queues=("slow",)), ServerlessHost(app, queues=("odd",))
    assert len(await slow.aclaim(10)) == 1
    assert len(await odd.aclaim(10)) == 2
    clock.advance(1.0)
    assert await slow.aclaim(10) == [] and await odd.aclaim(10) == []
    clock.advance(1.1)
    assert len(await slow.aclaim(10)) == 1
    assert len(await odd.aclaim(10)) == 2


async def test_a_worker_started_while_the_database_is_down_waits_for_it() -> None:
    app = App("postgresql://nobody@127.0.0.1:1/nowhere")  # nothing listens there
    worker = Worker(app, poll_interval=0.01)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    await asyncio.sleep(0.2)
    assert not serving.done()  # still trying, not exited with an error
    worker.stop()
    await asyncio.wait_for(serving, 10)
    assert serving.exception() is None
    await app.aclose()


@pytest.mark.parametrize("old_has", [None, "1"], ids=["no-workflow", "older-version"])
async def test_a_worker_without_the_runs_workflow_hands_its_job_on(
    database_url: str, clock: tether.FakeClock, old_has: str | None
) -> None:
    # an old deploy's worker (no workflow "new-flow", or only a version that cannot
    # run it) took the job and closed it: the run stayed pending with nothing queued,
    # and the new worker never ran it; then it took the job and handed it back, due
    # again in NOT_OURS_DELAY s; now it leaves the job alone
    new = App(database_url, clock=clock)
    old = App(database_url, clock=clock)

    @new.workflow(name="new-flow", version="2")
    async def new_flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: "ran")

    if old_has is not None:

        @old.workflow(name="new-flow", version=old_has)
        async def old_flow(wf: Workflow) -> str:
            return "old code"

    try:
        wid = await new.asubmit(new_flow)
        report = await ServerlessHost(old).aprocess_available_jobs(limit=10)
        assert report.processed == 0  # not claimed
        (job,) = await new.store.list_jobs(workflow_id=wid)
        assert job.status.value == "queued" and job.attempt == 0 and job.worker is None
        assert job.run_after == clock.now()  # due at once, not put off
        assert (await new.aget_run(wid)).status is RunStatus.PENDING
        assert (await ServerlessHost(new).aprocess_available_jobs(limit=10)).succeeded == 1
        assert (await new.aresult(wid, timeout=30)).value == "ran"
    finally:
        await old.aclose()
        await new.aclose()


async def test_asked_to_stop_twice_a_worker_hands_its_runs_back_at_once(app: App) -> None:
    # a second Ctrl-C was ignored: the worker waited out the grace period (30 s) for a
    # step that would not end; now it cancels the step and hands the run back
    release = asyncio.Event()
    started = asyncio.Event()

    @app.workflow(name="long")
    async def long(wf: Workflow) -> str:
        async def work() -> str:
            started.set()
            await release.wait()
            return "done"

        return await wf.step("work", work)

    wid = await app.asubmit(long)
    worker = Worker(app, poll_interval=0.01, grace=3600)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    await asyncio.wait_for(started.wait(), 30)
    worker.stop()
    await asyncio.sleep(0)  # the drain begins, waiting on the step
    assert not serving.done()
    worker.stop()
    await asyncio.wait_for(serving, 30)  # not the hour of grace
    assert worker.abandoned == 1
    (job,) = await app.store.list_jobs(workflow_id=wid)
    assert job.status is JobStatus.QUEUED  # handed back for the next worker


@pytest.mark.parametrize(
    "given",
    [
        {"poll_interval": float("nan")},  # before: accepted, an idle worker spun a CPU
        {"grace": float("nan")},
        {"maintenance_interval": float("inf")},
        {"stuck_after": -1},
    ],
)
def test_a_worker_refuses_seconds_it_cannot_wait(sqlite_url: str, given: dict[str, float]) -> None:
    with tether.App(sqlite_url) as app:
        name = next(iter(given))
        with pytest.raises(tether.InvalidArgumentError, match=f"{name} must be a number of"):
            Worker(app, **given)


async def test_a_worker_given_timedeltas_serves_maintains_and_stops(app: App) -> None:
    """Its durations took a timedelta (their errors say one may be given) and kept it:
    every maintenance tick failed comparing it with a float, and the stop raised
    TypeError adding the grace period to the monotonic clock."""

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1)

    worker = Worker(
        app,
        poll_interval=timedelta(milliseconds=10),
        maintenance_interval=timedelta(seconds=1),
        grace=timedelta(seconds=2),
        stuck_after=timedelta(minutes=5),
        forget_processes_after=timedelta(days=1),
    )
    assert (worker.poll_interval, worker.maintenance_interval, worker.grace) == (0.01, 1.0, 2.0)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    wid = await app.asubmit(quick)
    assert (await app.aresult(wid, timeout=30)).value == 1
    worker.stop()
    await asyncio.wait_for(serving, 30)
    report = await maintenance_tick(
        app,
        "w2",
        chore_ttl=timedelta(seconds=30),
        stuck_after=timedelta(minutes=5),
        orphan_grace=timedelta(seconds=30),
        outbox_budget=timedelta(seconds=1),
        forget_processes_after=timedelta(days=1),
    )
    assert report.skipped == []
