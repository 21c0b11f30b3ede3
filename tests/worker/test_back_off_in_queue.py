"""A worker's run waiting out a long retry back-off goes back to its queue until the next
attempt is due, instead of holding one of the worker's slots (a provider outage filled
every slot with runs asleep while other work waited); short back-offs, and runs with
something else under way, wait in place."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tether import App, FakeClock, RetryPolicy, RunStatus, Workflow
from tether._steps import QUEUE_BACK_OFFS_FROM
from tether.store import JobStatus
from tether.worker import ServerlessHost

_MINUTE = RetryPolicy(attempts=3, backoff=60, max_delay=60, jitter=0)


def _flaky(calls: list[int], fails: int = 1) -> object:
    def call() -> str:
        calls.append(1)
        if len(calls) <= fails:
            raise ConnectionError("the provider is down")
        return "ok"

    return call


async def test_a_long_back_off_hands_the_run_back_to_its_queue_until_due(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock)
    calls: list[int] = []

    @app.workflow(name="outage")
    async def outage(wf: Workflow) -> str:
        return await wf.step("call", _flaky(calls), retry=_MINUTE)

    host = ServerlessHost(app, worker_id="w1")
    try:
        began = clock.now()
        await app.asubmit(outage, workflow_id="o1")
        report = await host.aprocess_available_jobs(limit=10)
        assert report.processed == 1 and calls == [1]  # one attempt, then the slot is free
        rec = await app.aget_record("o1")
        assert rec.status is RunStatus.PENDING
        assert rec.events[-1].type == "workflow.handed_back"
        assert "retry back-off" in (rec.events[-1].message or "")
        (job,) = await app.store.list_jobs(workflow_id="o1")
        assert job.status is JobStatus.QUEUED and job.run_after == began + timedelta(seconds=60)
        assert clock.slept == []  # nobody slept through the minute
        assert (await host.aprocess_available_jobs(limit=10)).processed == 0  # not due yet
        clock.advance(60)
        assert (await host.aprocess_available_jobs(limit=10)).succeeded == 1
        result = await app.aresult("o1")
        assert result.value == "ok" and result.record.steps["call"].attempts == 2
    finally:
        await app.aclose()


async def test_a_short_back_off_is_waited_out_in_place(database_url: str, clock: FakeClock) -> None:
    app = App(database_url, clock=clock)
    calls: list[int] = []
    brief = RetryPolicy(attempts=3, backoff=QUEUE_BACK_OFFS_FROM / 2, jitter=0)

    @app.workflow(name="blip")
    async def blip(wf: Workflow) -> str:
        return await wf.step("call", _flaky(calls), retry=brief)

    try:
        await app.asubmit(blip, workflow_id="b1")
        report = await ServerlessHost(app, worker_id="w1").aprocess_available_jobs(limit=1)
        assert report.succeeded == 1 and calls == [1, 1]
        assert clock.slept == [QUEUE_BACK_OFFS_FROM / 2]
    finally:
        await app.aclose()


async def test_a_back_off_under_a_mutex_or_beside_other_work_waits_in_place(
    database_url: str, clock: FakeClock
) -> None:
    """Handed back, the run would let its mutex go in the middle of the block, or stop
    its other branches' work at their boundaries: it waits here instead."""
    app = App(database_url, clock=clock)
    locked: list[int] = []
    fanned: list[int] = []

    @app.workflow(name="guarded")
    async def guarded(wf: Workflow) -> str:
        async with wf.mutex("account-1"):
            return await wf.step("call", _flaky(locked), retry=_MINUTE)

    @app.workflow(name="fanned")
    async def fanned_out(wf: Workflow) -> list[str]:
        async def item(n: int) -> str:
            if n == 0:
                return await wf.step("call", _flaky(fanned), retry=_MINUTE)
            return await wf.step("other", lambda: "fine")

        summary = await wf.for_each([0, 1], item, max_parallel=2)
        return [str(v) for v in summary.values]

    try:
        await app.asubmit(guarded, workflow_id="g1")
        await app.asubmit(fanned_out, workflow_id="f1")
        report = await ServerlessHost(app, worker_id="w1").aprocess_available_jobs(limit=2)
        assert report.succeeded == 2 and locked == [1, 1] and fanned == [1, 1]
        for wid in ("g1", "f1"):
            rec = await app.aget_record(wid)
            assert rec.status is RunStatus.COMPLETED
            assert "workflow.handed_back" not in [e.type for e in rec.events]
    finally:
        await app.aclose()


async def test_an_app_driving_its_own_run_waits_in_place(
    database_url: str, clock: FakeClock
) -> None:
    """Without a job there is no queue to wait in: `app.run` returns the run's end."""
    app = App(database_url, clock=clock)
    calls: list[int] = []

    @app.workflow(name="here")
    async def here(wf: Workflow) -> str:
        return await wf.step("call", _flaky(calls), retry=_MINUTE)

    try:
        result = await asyncio.wait_for(app.arun(here, workflow_id="h1"), 30)
        assert result.value == "ok" and calls == [1, 1] and clock.slept == [60.0]
    finally:
        await app.aclose()
