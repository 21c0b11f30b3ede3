"""Jobs as a user drives them by hand: a dispatched ``job.execute`` for a job its worker
does not hold is refused, and a worker's ``queues="a,b"`` serves the queues a and b."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.kernel import JobExecuted
from tether.store import JobStatus
from tether.worker import Worker
from tether.worker._claim import claim_jobs


def _register(app: App, ran: list[str]) -> Any:
    @app.workflow(name="w")
    async def w(wf: Workflow) -> str:
        def work() -> str:
            ran.append(wf.workflow_id)
            return "done"

        return await wf.step("s", work)

    return w


async def _job_status(app: App, wid: str) -> list[str]:
    return [j.status.value for j in await app.store.list_jobs(workflow_id=wid)]


@pytest.mark.parametrize(
    ("job_id", "worker", "said"),
    [
        (999_999, "w1", "that run has no such job"),  # no such job
        (None, "w1", "it is queued"),  # the run's own job, never claimed
        (None, "w2", "worker 'w1' holds it"),  # claimed by another worker
    ],
    ids=["unknown", "unclaimed", "another-worker"],
)
async def test_a_job_its_worker_does_not_hold_is_not_executed(
    app: App, job_id: int | None, worker: str, said: str
) -> None:
    """Before, each drove the run and answered 'completed' while the job stayed queued
    (or held by a worker that would drive the run again beside it)."""
    ran: list[str] = []
    flow = _register(app, ran)
    wid = await app.asubmit(flow, workflow_id="r1", queue="q")
    (job,) = await app.store.list_jobs(workflow_id=wid)
    if said.startswith("worker"):
        assert len(await claim_jobs(app, "w1", ["q"], 1)) == 1
    before = await _job_status(app, wid)
    command = {"type": "job.execute", "workflow_id": wid, "worker": worker}
    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.kernel.adispatch({**command, "job_id": job_id or job.id})
    text = str(caught.value)
    assert f"is not claimed by worker {worker!r} ({said})" in text and "claim it first" in text
    assert ran == []
    assert (await app.aget_run(wid)).status is RunStatus.PENDING
    assert await _job_status(app, wid) == before


async def test_the_worker_holding_the_job_executes_it_by_dispatch(app: App) -> None:
    ran: list[str] = []
    flow = _register(app, ran)
    wid = await app.asubmit(flow, workflow_id="r2", queue="q")
    (job,) = await claim_jobs(app, "w1", ["q"], 1)
    done = await app.kernel.adispatch(
        {"type": "job.execute", "job_id": job.id, "workflow_id": wid, "worker": "w1"}
    )
    assert isinstance(done, JobExecuted) and done.status == "completed"
    assert ran == [wid] and await _job_status(app, wid) == [JobStatus.DONE.value]


async def test_a_worker_of_queues_a_comma_b_serves_both_queues(app: App) -> None:
    """`Worker(app, queues="a,b")` served one queue named 'a,b' that nothing was sent
    to, idle without a word; the CLI's `-q a,b` serves a and b, and so does this."""
    ran: list[str] = []
    flow = _register(app, ran)
    ids = [await app.asubmit(flow, queue=q) for q in ("a", "b")]
    worker = Worker(app, queues="a, b", poll_interval=0.01)
    assert worker.queues == ("a", "b")
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        for wid in ids:
            assert (await app.aresult(wid, timeout=30)).status is RunStatus.COMPLETED
    finally:
        worker.stop()
        await task
    assert sorted(ran) == sorted(ids)


def test_queue_names_with_a_blank_one_are_refused_and_a_list_is_taken_as_is(
    sqlite_url: str,
) -> None:
    app = App(sqlite_url)
    try:
        for given in ("a,", "a,,b", ","):
            with pytest.raises(tether.InvalidArgumentError, match="blank queue name"):
                Worker(app, queues=given)
        # a name in a list is taken as it is, but no run can be put on a queue named
        # with a comma (submit refuses it): a worker of one would serve nothing
        with pytest.raises(tether.InvalidArgumentError, match="contains a comma"):
            Worker(app, queues=["a,b"])
        assert Worker(app, queues=["a b"]).queues == ("a b",)
        assert Worker(app, queues="agents").queues == ("agents",)
    finally:
        app.close()


async def test_a_draining_worker_hands_back_the_job_of_a_run_another_process_drives(
    app: App, database_url: str, clock: Any
) -> None:
    """Before, a worker shutting down that had claimed a job whose run another live
    process drove closed the job `done` without driving it: the run was left without
    a job, so a crash of its owner left it for the stuck-run chore (minutes), not for
    the next worker. The job now goes back to the queue at once, as a busy run's does."""
    entered, gate = asyncio.Event(), asyncio.Event()

    async def held() -> str:
        entered.set()
        await gate.wait()
        return "done"

    def register(on: App) -> Any:
        @on.workflow(name="w")
        async def w(wf: Workflow) -> str:
            return await wf.step("s", held)

        return w

    other = App(database_url, clock=clock)
    try:
        wid = await app.asubmit(register(app), workflow_id="busy", queue="q")
        driving = asyncio.ensure_future(other.arun(register(other), workflow_id=wid))
        await entered.wait()  # `other` owns the run now, mid-step
        # its drive holds the run's job; that lease lapsed and was reaped (`other` stalled)
        (held_job,) = await app.store.list_jobs(workflow_id=wid)
        await app.store.release_job(held_job.id, held_job.worker or "", at=app.clock.now())
        (job,) = await claim_jobs(app, "w1", ["q"], 1)
        app.drain()
        executed = await app.kernel.execute_job(job, "w1")
        assert executed.status != "completed"
        assert await _job_status(app, wid) == ["queued"]  # back at once, not closed
        gate.set()
        assert (await driving).status is RunStatus.COMPLETED
        (again,) = await claim_jobs(other, "w2", ["q"], 1)  # the next worker closes it
        assert (await other.kernel.execute_job(again, "w2")).status == "completed"
        assert await _job_status(app, wid) == ["done"]
    finally:
        gate.set()
        await other.aclose()
