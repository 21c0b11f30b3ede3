"""A run driven in this process claims a queued job only if it has one: a run never
queued is resumed with no write for a job, and a queued one is claimed within its
queue's caps, as a worker's claim is."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tether import App, RunStatus, Workflow
from tether.store import JobStatus
from tether.testing import eventually
from tether.worker import Worker

from .._probes import Probe, register_probed, traced_store


async def test_resuming_a_run_never_queued_writes_no_job_claim(tmp_path: Path) -> None:
    """Before, every resume ran the job claim's write transaction (BEGIN IMMEDIATE, the
    claim's UPDATE of jobs, a read of the run's queued job, COMMIT) for a run that never
    had a job; now one read of the run says it has none."""
    store, sent = traced_store(f"sqlite:///{tmp_path}/t.db")
    async with App(store=store) as app:

        @app.workflow
        async def waits(wf: Workflow) -> str:
            return str(await wf.wait_for_signal("go", timeout=3600))

        run = await app.arun(waits, workflow_id="r")
        assert run.status is RunStatus.WAITING
        sent.clear()
        again = await app.aresume("r")
        assert again.status is RunStatus.WAITING
        resumed = list(sent)
    jobs = [s for s in resumed if "jobs" in s]
    assert jobs == [], jobs  # neither the claim's UPDATE nor its read of the job
    assert [s for s in resumed if s.startswith("SELECT") and "FROM runs" in s]  # the one read


async def test_resuming_a_queued_run_still_claims_its_job(tmp_path: Path) -> None:
    """The read that spares a run never queued its claim does not spare a queued one."""
    store, sent = traced_store(f"sqlite:///{tmp_path}/t.db")
    async with App(store=store) as app:

        @app.workflow
        async def one(wf: Workflow) -> int:
            return await wf.step("a", lambda: 1)

        wid = await app.asubmit(one, concurrency_key="k")
        sent.clear()
        assert (await app.aresume(wid)).value == 1
        assert [j.status for j in await app.ajobs(wid)] == [JobStatus.DONE]
    assert [s for s in sent if s.startswith("UPDATE jobs SET status = 'claimed'")]


@pytest.mark.parametrize("how", ["resume", "run"])
async def test_a_queued_run_driven_here_waits_for_room_in_its_capped_queue(
    database_url: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker (another App) runs `a` of queue q, capped at one job at once, held in
    its step; `b` of q (no concurrency key, a workflow the worker lacks) driven here
    waits for the room, saying so, then runs: never two of q at once. Before, `b` ran at
    once beside `a`, past the cap."""
    caplog.set_level(logging.INFO, logger="tether.kernel")
    probe = Probe()
    host, here = App(database_url), App(database_url)
    for app in (host, here):
        app.queue("q", concurrency=1)
    register_probed(host, probe, "held")
    held = register_probed(here, probe, "held")
    other = register_probed(here, probe, "other")
    a = await here.asubmit(held, "first", queue="q")
    b = await here.asubmit(other, "second", queue="q")
    worker = Worker(host, queues=["q"], concurrency=2, poll_interval=0.01)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        await asyncio.wait_for(probe.entered.wait(), 30)
        drive = asyncio.ensure_future(
            here.aresume(b) if how == "resume" else here.arun(other, workflow_id=b)
        )
        await eventually(lambda: drive.done() or "waits for room in its queue 'q'" in caplog.text)
        assert "capped at 1 jobs at once" in caplog.text
        assert not drive.done() and probe.peak == 1
        probe.gate.set()
        res = await asyncio.wait_for(drive, 30)
        assert (res.status, res.value) == (RunStatus.COMPLETED, "second")
        assert probe.peak == 1  # never both at once
        assert (await here.aresult(a, timeout=30)).status is RunStatus.COMPLETED
        assert [j.status for j in await here.ajobs(b)] == [JobStatus.DONE]
    finally:
        probe.gate.set()
        worker.stop()
        await serving
        await host.aclose()
        await here.aclose()


async def test_a_queued_run_driven_here_takes_its_queues_room_from_workers(
    database_url: str,
) -> None:
    """While `a` of q (capped at one) is resumed here, held in its step, a worker's
    claim of q takes nothing: the drive's job counts against the cap."""
    probe = Probe()
    here = App(database_url)
    here.queue("q", concurrency=1)
    held = register_probed(here, probe, "held")
    try:
        a = await here.asubmit(held, "first", queue="q")
        b = await here.asubmit(held, "second", queue="q")
        drive = asyncio.ensure_future(here.aresume(a))
        await asyncio.wait_for(probe.entered.wait(), 30)
        claim = {"limit": 10, "visibility": 30, "limits": here.queue_limits, "now": None}
        assert list(await here.store.claim_jobs("w", ["q"], at=here.clock.now(), **claim)) == []
        probe.gate.set()
        assert (await asyncio.wait_for(drive, 30)).value == "first"
        (b_job,) = await here.ajobs(b)
        taken = await here.store.claim_jobs("w", ["q"], at=here.clock.now(), **claim)
        assert [j.id for j in taken] == [b_job.id]
    finally:
        probe.gate.set()
        await here.aclose()
