"""A queued run driven in this process (`app.resume`, `app.run` of its id) holds its job,
and so its concurrency key, as a worker's claim does: a worker neither runs another
job of that key beside it nor claims the driven run's job."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tether import App, RunAlreadyRunningError, RunStatus
from tether.store import JobStatus
from tether.testing import eventually
from tether.worker import Worker

from .._probes import Probe, register_probed


async def _claim(app: App) -> list[Any]:
    """What a worker's claim of the default queue takes now."""
    return list(
        await app.store.claim_jobs(
            "w-1", ["default"], limit=10, visibility=30, limits={}, now=None, at=app.clock.now()
        )
    )


@pytest.mark.parametrize("how", ["resume", "run"])
async def test_a_resumed_queued_run_waits_for_its_key_held_by_a_worker(
    database_url: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker runs `a` (key k) and is held in its step; `b` (key k too, of a
    workflow the worker does not have) driven here waits for the key, saying which run
    holds it, then runs: the two never overlap. Before, `b` ran at once beside `a`."""
    caplog.set_level(logging.INFO, logger="tether.kernel")
    probe = Probe()
    host, here = App(database_url), App(database_url)
    register_probed(host, probe, "held")
    held = register_probed(here, probe, "held")
    other = register_probed(here, probe, "other")
    a = await here.asubmit(held, "first", concurrency_key="k")
    b = await here.asubmit(other, "second", concurrency_key="k")
    worker = Worker(host, queues=["default"], concurrency=2, poll_interval=0.01)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        await asyncio.wait_for(probe.entered.wait(), 30)
        drive = asyncio.ensure_future(
            here.aresume(b) if how == "resume" else here.arun(other, workflow_id=b)
        )
        await eventually(lambda: drive.done() or f"held by run {a!r}" in caplog.text)
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


@pytest.mark.parametrize("key", ["k", None])
async def test_a_worker_claims_neither_the_driven_runs_job_nor_its_key(
    database_url: str, key: str | None
) -> None:
    """While `a` is resumed here (held in its step), a worker's claim takes neither
    `a`'s job (it drove `a` beside this drive, or took its key) nor `b`'s when it
    shares that key; once `a` is done its job is closed and `b` is claimed."""
    probe = Probe()
    here = App(database_url)
    held = register_probed(here, probe, "held")
    try:
        a = await here.asubmit(held, "first", concurrency_key=key)
        b = await here.asubmit(held, "second", concurrency_key=key)
        (b_job,) = await here.ajobs(b)
        drive = asyncio.ensure_future(here.aresume(a))
        await asyncio.wait_for(probe.entered.wait(), 30)
        assert [j.id for j in await _claim(here)] == ([] if key else [b_job.id])
        (a_job,) = await here.ajobs(a)
        assert a_job.status is JobStatus.CLAIMED and a_job.worker != "w-1"
        probe.gate.set()
        assert (await asyncio.wait_for(drive, 30)).value == "first"
        assert [j.status for j in await here.ajobs(a)] == [JobStatus.DONE]
        if key:
            assert [j.id for j in await _claim(here)] == [b_job.id]
    finally:
        probe.gate.set()
        await here.aclose()


async def test_a_resume_refused_by_a_live_driver_leaves_the_job_queued(database_url: str) -> None:
    """A resume whose own claim of the run is refused (another live process drives it
    and holds no job: its job was reaped, say) gives the job it took back to the queue,
    its attempt not counted, rather than closing it or keeping it."""
    probe = Probe()
    first, second = App(database_url), App(database_url)
    mine = register_probed(first, probe, "held")
    held = register_probed(second, probe, "held")
    try:
        a = await second.asubmit(held, "first")
        driving = asyncio.ensure_future(first.arun(mine, workflow_id=a))
        await asyncio.wait_for(probe.entered.wait(), 30)
        (job,) = await first.ajobs(a)
        await first.store.release_job(job.id, job.worker or "", at=first.clock.now())
        with pytest.raises(RunAlreadyRunningError):
            await second.aresume(a)
        (job,) = await second.ajobs(a)
        assert (job.status, job.attempt, job.worker) == (JobStatus.QUEUED, 0, None)
        probe.gate.set()
        assert (await asyncio.wait_for(driving, 30)).value == "first"
    finally:
        probe.gate.set()
        await first.aclose()
        await second.aclose()
