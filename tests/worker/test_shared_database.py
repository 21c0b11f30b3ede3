"""Apps of different services on one database: each fires its own schedules and takes
up its own orphans, and an App with no sinks never marks events delivered to nobody.
And `App.ahost_chores` (what `tether serve` runs) publishes the outbox to its sinks."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import tether
from tether import App, Workflow
from tether.kernel import CollectingSink
from tether.testing import eventually
from tether.worker import ServerlessHost

T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def _service(url: str, clock: tether.FakeClock, name: str, sinks: list[object]) -> App:
    app = App(url, clock=clock, sinks=sinks)  # type: ignore[arg-type]

    @app.workflow(name=f"{name}-nightly", schedule="* * * * *")
    async def nightly(wf: Workflow) -> str:
        return await wf.step("s", lambda: name)

    return app


async def test_two_services_each_do_their_own_chores(database_url: str) -> None:
    clock = tether.FakeClock(T0)
    sink = CollectingSink()
    a = _service(database_url, clock, "a", [])  # service A: no sinks
    b = _service(database_url, clock, "b", [sink])  # service B publishes its events
    try:
        await b.arun(b.get_workflow("b-nightly").fn, workflow_id="b-direct")
        first = await ServerlessHost(a, worker_id="host-a").amaintenance_tick()
        # A had no sinks: it took no outbox lock and marked nothing delivered
        assert first.outbox_delivered == 0 and "outbox" not in first.skipped
        second = await ServerlessHost(b, worker_id="host-b").amaintenance_tick()
        assert second.outbox_delivered == len(sink.of("b-direct")) > 0
        assert "schedules" not in second.skipped  # its own, not A's lock
        names = sorted(s.name for s in await b.alist_schedules())
        assert names == ["a-nightly", "b-nightly"]  # B's schedule was saved, not skipped
        clock.advance(60)
        fired_a = (await ServerlessHost(a, worker_id="host-a").amaintenance_tick()).scheduled
        fired_b = (await ServerlessHost(b, worker_id="host-b").amaintenance_tick()).scheduled
        assert fired_a == ["a-nightly@2026-06-01T12:01:00Z"]
        assert fired_b == ["b-nightly@2026-06-01T12:01:00Z"]
        # two workers of one service still take turns
        other_b = await ServerlessHost(b, worker_id="host-b2").amaintenance_tick()
        assert {"schedules", "outbox"} <= set(other_b.skipped)
    finally:
        await a.aclose()
        await b.aclose()


async def test_host_chores_publish_the_outbox_to_the_apps_sinks(database_url: str) -> None:
    # `tether serve` publishes with no worker beside it (its sinks got nothing)
    sink = CollectingSink()
    app = App(database_url, sinks=[sink])

    @app.workflow
    async def hello(wf: Workflow) -> str:
        return await wf.step("s", lambda: "hi")

    chores = asyncio.ensure_future(app.ahost_chores(every=0.05))
    try:
        await app.arun(hello, workflow_id="served-1")
        types = await eventually(lambda: [e.type for e in sink.of("served-1")], timeout=10)
        await eventually(lambda: "workflow.completed" in [e.type for e in sink.of("served-1")])
        assert types[0] == "workflow.running"
    finally:
        chores.cancel()
        await asyncio.gather(chores, return_exceptions=True)
        await app.aclose()


def test_a_worker_steps_aside_once_a_newer_tether_migrated_the_database(
    tmp_path: Path,
) -> None:
    # a rolling deploy: this worker is the old release; it went on claiming and finishing
    # runs the new one started, writing what the new schema means otherwise
    url = f"sqlite:///{tmp_path}/t.db"
    (tmp_path / "w.py").write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, "w.py", url], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with sqlite3.connect(tmp_path / "t.db") as conn:  # the new release migrated
            conn.execute("INSERT INTO schema_version VALUES (9999, 'next', 0)")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, err
    assert "written by a newer tether (schema version 9999" in err


WORKER = """
import sys
import tether
from tether.cli._common import guard
from tether.worker import Worker

app = tether.App(sys.argv[1])
app.list_runs()  # the database exists before the worker starts
print("ready", flush=True)
guard(lambda: Worker(app, poll_interval=0.05, maintenance_interval=0.1).serve())
"""
