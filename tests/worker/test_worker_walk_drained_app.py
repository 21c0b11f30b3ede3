"""A worker on an App that is stopping stops too, rather than claiming its jobs in a loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tether import App, RunStatus, Workflow
from tether.store import JobStatus
from tether.worker import Worker


async def test_a_second_worker_on_an_app_a_first_one_stopped_stops_claiming_nothing(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    # the first worker's stop drained the App for good; a second Worker on it claimed the
    # job, the run handed itself back at once, and it claimed it again: thousands of
    # claims a minute, the run never run and the worker never returning
    @app.workflow(name="hello")
    async def hello(wf: Workflow, x: int) -> int:
        return await wf.step("a", lambda: x * 2)

    first = Worker(app, poll_interval=0.05)
    task = asyncio.ensure_future(first.run(install_signals=False))
    done = await app.asubmit(hello, 1)
    assert (await app.aresult(done, timeout=10)).value == 2
    first.stop()
    await task

    wid = await app.asubmit(hello, 2)
    second = Worker(app, poll_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="tether.worker"):
        await asyncio.wait_for(second.run(install_signals=False), 10)
    assert any("worker's App is stopping" in r.getMessage() for r in caplog.records)
    assert second.executed == 0
    run = await app.aget_run(wid)
    assert run is not None and run.status == RunStatus.PENDING and run.generation == 0
    (job,) = await app.store.list_jobs(workflow_id=wid)
    assert job.status == JobStatus.QUEUED and job.attempt == 0
