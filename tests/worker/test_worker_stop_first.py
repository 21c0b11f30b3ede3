"""A worker asked to stop before it runs (by a supervisor, or a signal handler set up
first) does nothing when it then runs: it claims no job and returns at once."""

from __future__ import annotations

import asyncio

from tether import App, RunStatus, Workflow
from tether.store import JobStatus
from tether.testing import eventually
from tether.worker import Worker


async def _statuses(app: App, wid: str) -> list[JobStatus]:
    return [job.status for job in await app.store.list_jobs(workflow_id=wid)]


async def test_a_worker_stopped_before_it_runs_claims_nothing_and_returns(app: App) -> None:
    """Before, `stop()` before `run()` was dropped (the worker had no events yet to
    set): the worker then claimed the queued job and worked until a second stop."""

    @app.workflow(name="once")
    async def once(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1)

    wid = await app.asubmit(once, queue="q")
    worker = Worker(app, queues=["q"], poll_interval=0.01)
    worker.stop()
    await asyncio.wait_for(worker.run(install_signals=False), 10)
    assert await _statuses(app, wid) == [JobStatus.QUEUED]
    assert worker.executed == 0
    # the stop was for that run alone: run again, the worker works the queue
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:

        async def done() -> bool:
            return await _statuses(app, wid) == [JobStatus.DONE]

        await eventually(done, timeout=30)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert (await app.aget_run(wid)).status is RunStatus.COMPLETED


async def test_a_worker_stopped_before_its_task_starts_returns(app: App) -> None:
    """A supervisor that makes the worker's task and stops it before the task ran
    (no await between) stops it: the task ends without claiming."""

    @app.workflow(name="once")
    async def once(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1)

    wid = await app.asubmit(once, queue="q")
    worker = Worker(app, queues=["q"], poll_interval=0.01)
    task = asyncio.ensure_future(worker.run(install_signals=False))
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert await _statuses(app, wid) == [JobStatus.QUEUED]
