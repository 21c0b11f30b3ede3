"""An operator's walk of the queue with real worker processes (`tether worker`) on one
database: caps and concurrency keys across processes, a worker killed or stopped
mid-job, and a job whose attempts run out on workers that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.app import run_on_loop
from tether.testing import eventually_sync
from tether.worker import ServerlessHost

from .._env import child_pythonpath
from .._postgres import PostgresServer
from ..store.test_pg_blips import STEP_ROW, RowLock, _url
from .test_worker import FLOWS as WORKER_FLOWS
from .test_worker import _stop

# the flows of test_worker ("stall": steps s0, s1, then s2 stalls once; "keyed" writes
# "tag start end" for its one step), and a queue with a cap
FLOWS = (
    WORKER_FLOWS + '\napp.queue("capped", concurrency=2)\napp.queue("rated", rate_per_second=2)\n'
)


@pytest.fixture
def flows(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "walkflows.py").write_text(FLOWS)
    monkeypatch.setenv("DB_URL", database_url)
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects.log"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("walkflows", None)
    return tmp_path


def _load_app() -> App:
    import walkflows  # type: ignore[import-not-found]

    return walkflows.app  # type: ignore[no-any-return]


def _worker(folder: Path, *args: str, vis: float = 30.0) -> subprocess.Popen[bytes]:
    """`tether worker` on the flows of `folder`, its log in a file there."""
    env = {**os.environ, "VIS": str(vis), "PYTHONPATH": child_pythonpath(folder)}
    path = folder / f"worker-{time.monotonic_ns()}.log"
    cli = [sys.executable, "-m", "tether.cli", "worker", "--app", "walkflows:app", *args]
    with path.open("wb") as log:
        proc = subprocess.Popen(cli, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    # serving (its signal handlers set): a SIGTERM before would end it unhandled
    eventually_sync(lambda: "worker started" in path.read_text(), timeout=60)
    return proc


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_three_workers_keep_a_queue_cap_and_concurrency_keys(flows: Path) -> None:
    app = _load_app()
    procs = [_worker(flows, "-q", "capped,default", "--concurrency", "4") for _ in range(3)]
    try:
        tagged = app.get_workflow("keyed").fn
        capped = [app.submit(tagged, "cap", queue="capped") for _ in range(12)]
        keyed = [
            app.submit(tagged, f"key{i % 2}", concurrency_key=f"key{i % 2}") for i in range(12)
        ]
        for wid in capped + keyed:
            assert app.result(wid, timeout=120).status is RunStatus.COMPLETED
    finally:
        _stop(procs)
    assert [p.returncode for p in procs] == [0, 0, 0]  # SIGTERM: a clean exit
    groups: dict[str, list[tuple[float, float]]] = {}
    for line in (flows / "effects.log").read_text().splitlines():
        tag, start, end = line.split()
        groups.setdefault(tag, []).append((float(start), float(end)))
    assert {k: len(v) for k, v in groups.items()} == {"cap": 12, "key0": 6, "key1": 6}
    assert _most_at_once(groups["cap"]) <= 2
    assert _most_at_once(groups["key0"]) == _most_at_once(groups["key1"]) == 1
    app.close()


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_a_killed_workers_run_is_taken_over_or_failed_by_its_attempts(
    flows: Path, max_attempts: int
) -> None:
    app = _load_app()
    marker = flows / "in-slow-step"
    first = _worker(flows, vis=1.0)
    second: subprocess.Popen[bytes] | None = None
    try:
        wid = app.submit(
            app.get_workflow("stall").fn, str(marker), workflow_id="k", max_attempts=max_attempts
        )
        eventually_sync(marker.exists, timeout=60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        second = _worker(flows, vis=1.0)
        res = app.result(wid, timeout=60)
    finally:
        _stop([first] + ([second] if second else []))
    lines = Counter((flows / "effects.log").read_text().split())
    if max_attempts == 1:  # used up on the dead worker: failed, the reason kept
        assert res.status is RunStatus.FAILED and lines == {"k:0": 1, "k:1": 1, "k:2": 1}
        assert res.record.last_error is not None
        assert "attempts" in res.record.last_error.message
    else:  # taken over: the completed step not run again
        assert res.status is RunStatus.COMPLETED and res.value == "done"
        assert lines == {"k:0": 1, "k:1": 1, "k:2": 2}
    (job,) = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
    assert job.status.value == ("failed" if max_attempts == 1 else "done")
    app.close()


def test_sigterm_mid_job_hands_the_job_back_neither_lost_nor_failed(flows: Path) -> None:
    app = _load_app()
    marker = flows / "in-slow-step"
    first = _worker(flows, "--grace", "0.2", vis=120.0)
    second: subprocess.Popen[bytes] | None = None
    try:
        wid = app.submit(app.get_workflow("stall").fn, str(marker), workflow_id="t", max_attempts=1)
        eventually_sync(marker.exists, timeout=60)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        (job,) = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
        assert (job.status.value, job.attempt, job.worker) == ("queued", 0, None)
        assert app.get_run(wid).status is RunStatus.PENDING
        second = _worker(flows, vis=120.0)
        res = app.result(wid, timeout=60)
    finally:
        _stop([first] + ([second] if second else []))
    assert res.status is RunStatus.COMPLETED  # one attempt allowed: the hand-back took none
    assert Counter((flows / "effects.log").read_text().split()) == {"t:0": 1, "t:1": 1, "t:2": 2}
    app.close()


async def test_a_jobs_store_errors_are_forgotten_once_it_gets_past_them(
    postgres: PostgresServer,
) -> None:
    """The count of a job's store errors in a row (its back-off) was kept for the
    worker's life after the job got past them: one entry per job that ever met a blip."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    clock = FakeClock()
    app = App(_url(postgres, schema, 0.3), clock=clock)
    held: list[RowLock] = []

    def a() -> str:  # its completion waits on the lock, once: a statement timeout
        held.extend([] if held else [RowLock(postgres, schema, STEP_ROW, "j1", "a")])
        return "a"

    @app.workflow(name="blip")
    async def blip(wf: Workflow) -> str:
        return await wf.step("a", a)

    host = ServerlessHost(app)
    try:
        await app.asubmit(blip, workflow_id="j1")
        assert (await host.aprocess_available_jobs(limit=1)).failed == 1
        held[0].release()
        assert len(app.kernel._store_failures) == 1  # its back-off grows while errors last
        clock.advance(5)
        assert (await host.aprocess_available_jobs(limit=1)).succeeded == 1
        assert (await app.aresult("j1", timeout=30)).value == "a"
        assert app.kernel._store_failures == {}
    finally:
        for lock in held:
            if not lock.conn.closed:
                lock.release()
        await app.aclose()
        postgres.drop_schema(schema)


def _claimed_at(app: App, wid: str) -> list[float]:
    """When workers claimed run `wid` (each claim takes the run: `workflow.running`)."""
    events = app.get_record(wid).events
    return [e.at.timestamp() for e in events if e.type == "workflow.running"]


def test_two_workers_start_a_rate_capped_queue_at_its_rate(flows: Path) -> None:
    app = _load_app()
    procs = [_worker(flows, "-q", "rated", "--concurrency", "4") for _ in range(2)]
    try:
        tagged = app.get_workflow("keyed").fn
        ids = [app.submit(tagged, "rate", queue="rated") for _ in range(7)]
        for wid in ids:
            assert app.result(wid, timeout=120).status is RunStatus.COMPLETED
    finally:
        _stop(procs)
    assert [p.returncode for p in procs] == [0, 0]
    starts = sorted(t for wid in ids for t in _claimed_at(app, wid))
    assert len(starts) == 7  # each claimed once
    # 2 per second: any 3 consecutive claims span a second on the database's clock; the
    # events carry the time each worker read before its claim, which a loaded machine
    # may delay by a good part of a second (uncapped, all 7 start within a quarter)
    assert all(starts[i + 2] - starts[i] >= 0.5 for i in range(len(starts) - 2)), starts
    lines = Counter(line.split()[0] for line in (flows / "effects.log").read_text().splitlines())
    assert lines == {"rate": 7}
    app.close()
