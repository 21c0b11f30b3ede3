"""A new user's mistakes with workers: each is met with a clear error at once, or a
warning in the worker's log, rather than silence or runs left hanging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

import tether
from tether import App, InvalidArgumentError, Workflow
from tether.testing import eventually
from tether.worker import ServerlessHost, Worker


@pytest.fixture
def sync_app(sqlite_url: str) -> Iterator[App]:
    app = App(sqlite_url)
    yield app
    app.close()


@pytest.mark.parametrize("worker_id", [5, "", "   ", b"w-1"])
def test_a_worker_id_that_is_not_a_name_is_refused_at_start(
    sync_app: App, worker_id: object
) -> None:
    # Worker(worker_id=5) started, claimed a job, failed it ("job failed" in the log)
    # and left its run 'running' until the lease lapsed; "" was silently replaced
    for host in (Worker, ServerlessHost):
        with pytest.raises(InvalidArgumentError, match="worker_id must be a non-empty"):
            host(sync_app, worker_id=worker_id)  # type: ignore[arg-type]
    assert Worker(sync_app, worker_id="w-1").worker_id == "w-1"
    assert Worker(sync_app).worker_id != Worker(sync_app).worker_id  # None: a fresh one each


def test_queues_in_a_set_are_refused_saying_to_pass_a_list(sync_app: App) -> None:
    # {"a", "b"} is one or more queue names, yet the error said it was not
    with pytest.raises(InvalidArgumentError, match="in a list or tuple, not a set"):
        Worker(sync_app, queues={"agents", "batch"})  # type: ignore[arg-type]
    assert Worker(sync_app, queues=["agents", "batch"]).queues == ("agents", "batch")


async def test_a_worker_warns_of_a_schedule_queued_where_no_worker_serves(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    # app.schedule(queue="reprots") with workers on "reports": every tick was queued
    # where no worker looks, and the worker's log said nothing at all
    @app.workflow(name="report")
    async def report(wf: Workflow) -> str:
        return "written"

    app.schedule(report, cron="0 2 * * *", queue="reprots")
    app.schedule(report, cron="0 3 * * *", name="served", queue="reports")
    worker = Worker(app, queues="reports", poll_interval=3600, maintenance_interval=3600)
    with caplog.at_level(logging.WARNING, logger="tether.worker"):
        task = asyncio.ensure_future(worker.run(install_signals=False))
        try:
            warned = await eventually(
                lambda: [r.getMessage() for r in caplog.records if "schedule" in r.getMessage()]
            )
        finally:
            worker.stop()
            await task
    (message,) = warned  # not the schedule on the worker's own queue
    assert "schedule 'report' queues its runs on queue 'reprots'" in message
    assert "-q reprots" in message


async def test_a_schedule_served_by_another_live_worker_is_not_warned_of(
    database_url: str, clock: tether.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = App(database_url, clock=clock), App(database_url, clock=clock)
    for each in (a, b):

        @each.workflow(name="report")
        async def report(wf: Workflow) -> str:
            return "written"

    a.schedule(a.get_workflow("report").fn, cron="0 2 * * *", queue="reports")
    try:
        foreign = Worker(a, queues="default").foreign
        with caplog.at_level(logging.WARNING, logger="tether.worker"):
            assert await foreign.unserved_schedules() == ["report"]
            assert await foreign.unserved_schedules() == []  # once a minute at most
            clock.advance(foreign.every)
            await b.aannounce(["reports"])  # a worker of "reports" with the workflow
            assert await foreign.unserved_schedules() == []
        assert len(caplog.records) == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_maintenance_log_line_counts_the_schedule_ticks_it_started(
    app: App, clock: tether.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick that only started schedule runs logged nothing, and the line of one that
    did more left them out."""

    @app.workflow(name="minutely")
    async def minutely(wf: Workflow) -> str:
        return "done"

    app.schedule(minutely, cron="* * * * *")
    worker = Worker(app, poll_interval=3600, maintenance_interval=0.1)
    with caplog.at_level(logging.INFO, logger="tether.worker"):
        task = asyncio.ensure_future(worker.run(install_signals=False))
        try:
            await eventually(app.store.list_schedules)  # the first tick saved it
            clock.advance(120)  # two ticks due: the latest is started (missed="latest")
            lines = await eventually(
                lambda: [r for r in caplog.records if r.getMessage() == "maintenance"]
            )
        finally:
            worker.stop()
            await task
    assert getattr(lines[0], "scheduled", None) == 1
