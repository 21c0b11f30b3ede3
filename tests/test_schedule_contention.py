"""Two workers ticking one schedule at the same moment start each tick's run once: as
two processes released at one instant, and as two Apps on separate connections
ticking tick after tick, on a SQLite file and on PostgreSQL. The chore lock keeps
the two maintenance passes apart; without it (`fire_schedules` called directly) the
tick's run id still makes one run of the two submits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import App, FakeClock, Workflow
from tether.worker import ServerlessHost, maintenance_tick

T0 = datetime(2026, 12, 1, 16, 3, tzinfo=UTC)
TICK = "report@2026-12-01T16:05:00Z"

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from datetime import datetime
    import tether
    from tether.worker import maintenance_tick

    url, holder, t, go, how = sys.argv[1:6]

    async def main() -> None:
        app = tether.App(url, clock=tether.FakeClock(datetime.fromisoformat(t)))

        @app.workflow(name="report")
        async def report(wf: tether.Workflow, day: str) -> str:
            return await wf.step("write", lambda: f"report for {day}")

        app.schedule(report, cron="*/5 * * * *", input="today")
        await app.alist_schedules()  # connected and migrated before the start
        print("ready", flush=True)
        while not os.path.exists(go):
            await asyncio.sleep(0.001)
        if how == "tick":
            tick = await maintenance_tick(app, holder, chores=("schedules",))
            out = {"scheduled": tick.scheduled, "skipped": tick.skipped}
        else:
            out = {"scheduled": await app.afire_schedules(), "skipped": []}
        print(json.dumps(out), flush=True)
        await app.aclose()

    asyncio.run(main())
    """
)


def _app(url: str, clock: FakeClock, calls: list[str] | None = None) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="report")
    async def report(wf: Workflow, day: str) -> str:
        def write() -> str:
            if calls is not None:
                calls.append(wf.workflow_id)
            return f"report for {day}"

        return await wf.step("write", write)

    app.schedule(report, cron="*/5 * * * *", input="today")
    return app


async def _started(app: App) -> Counter[str]:
    """Per run of the schedule: its jobs plus its `workflow.submitted` events (2 for a
    run started once; a tick submitted twice would show more of either)."""
    seen: Counter[str] = Counter()
    for run in await app.alist_runs(limit=1000):
        seen[run.workflow_id] += len(await app.store.list_jobs(workflow_id=run.workflow_id))
        events = await app.store.list_events(run.workflow_id)
        seen[run.workflow_id] += sum(e.type == "workflow.submitted" for e in events)
    return seen


@pytest.mark.parametrize("how", ["tick", "fire"])
async def test_two_worker_processes_at_one_instant_start_the_tick_once(
    database_url: str, tmp_path: Path, how: str
) -> None:
    """Both processes' clocks read 16:05:00, the tick's own instant, and both are let go
    at once: the tick's run is created once, with one job. In a maintenance tick one
    process holds the chore and the other skips it."""
    first = _app(database_url, FakeClock(T0))
    assert await first.afire_schedules() == []  # saved at 16:03: fires from there
    await first.aclose()
    script, go = tmp_path / "worker.py", tmp_path / "go"
    script.write_text(WORKER)
    at = (T0 + timedelta(minutes=2)).isoformat()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), database_url, name, at, str(go), how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    check = _app(database_url, FakeClock(T0 + timedelta(minutes=2)))
    try:
        assert await _started(check) == {TICK: 2}
        [row] = await check.alist_schedules()
        assert row.fired_until == T0 + timedelta(minutes=2)
    finally:
        await check.aclose()
    if how == "tick":
        assert sorted(r["scheduled"] + r["skipped"] for r in reports) == [[TICK], ["schedules"]]
    else:  # each process submitted the tick's id; the store made one run of them
        assert {s for r in reports for s in r["scheduled"]} == {TICK}


@pytest.mark.parametrize("how", ["tick", "fire"])
async def test_two_apps_ticking_together_start_each_tick_once_and_run_it_once(
    database_url: str, how: str
) -> None:
    """Two Apps (each its own connections) on one fake clock tick together through six
    ticks, then both work the queue together: one run per tick, each run's step done
    once. The chore lock (30 s) lapses between ticks, so either may hold it."""
    clock = FakeClock(T0)
    calls: list[str] = []
    apps = [_app(database_url, clock, calls), _app(database_url, clock, calls)]
    hosts = [ServerlessHost(a, worker_id=f"w{i}") for i, a in enumerate(apps)]
    try:
        await apps[0].afire_schedules()
        reported: list[str] = []
        for _ in range(6):
            clock.advance(300)
            if how == "tick":
                ticks = await asyncio.gather(
                    *(
                        maintenance_tick(a, f"w{i}", chores=("schedules",))
                        for i, a in enumerate(apps)
                    )
                )
                reported += [run for t in ticks for run in t.scheduled]
                assert sorted(len(t.skipped) for t in ticks) == [0, 1]
            else:
                await asyncio.gather(*(a.afire_schedules() for a in apps))
        expected = [f"report@2026-12-01T{16 + (5 + 5 * i) // 60}:{(5 + 5 * i) % 60:02d}:00Z"
                    for i in range(6)]  # fmt: skip
        if how == "tick":
            assert sorted(reported) == expected  # each tick reported by one worker
        assert await _started(apps[0]) == {run: 2 for run in expected}
        for _ in range(3):
            await asyncio.gather(*(h.aprocess_available_jobs(limit=10) for h in hosts))
        assert sorted(calls) == expected
    finally:
        for a in apps:
            await a.aclose()
