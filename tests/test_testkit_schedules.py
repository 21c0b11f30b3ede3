"""`pass_time` over a schedule's ticks: each tick starts at its time and its run (queued,
as a worker's would be) is driven to rest, so a test asserts "after a day, the nightly
run ran" without a worker. Before, pass_time fired timers only: no tick started, and a
tick started by `fire_schedules()` stayed pending for a worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether.testing import pass_time, pass_time_sync

NIGHTLY = "nightly@2026-01-01T02:00:00Z"


def nightly_app(app: App) -> None:
    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        await wf.sleep(timedelta(minutes=5))  # a timer of the tick's run, fired later
        return await wf.step("write", lambda: "report written")


async def other(wf: Workflow) -> str:
    return "not scheduled"


async def test_after_a_day_the_nightly_tick_ran_at_its_time(
    tether_app: App, tether_clock: FakeClock
) -> None:
    nightly_app(tether_app)
    submitted = await tether_app.asubmit(other)
    assert await pass_time(tether_app, timedelta(days=1)) == [NIGHTLY, NIGHTLY]
    run = await tether_app.aget_run(NIGHTLY)
    assert run.status is RunStatus.COMPLETED
    assert run.started_at == datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert run.finished_at == datetime(2026, 1, 1, 2, 5, tzinfo=UTC)
    assert (await tether_app.aresult(NIGHTLY, timeout=5)).value == "report written"
    jobs = await tether_app.store.list_jobs(workflow_id=NIGHTLY)
    assert [j.status.value for j in jobs] == ["done", "done"]  # closed as a worker does
    # a run queued by hand is still left to workers
    assert (await tether_app.aget_run(submitted)).status is RunStatus.PENDING
    assert tether_clock.now() == datetime(2026, 1, 2, tzinfo=UTC)


async def test_every_tick_in_the_span_starts_once_and_a_paused_schedule_none(
    tether_app: App,
) -> None:
    starts: list[str] = []

    @tether_app.workflow(name="poll", schedule="*/20 * * * *")
    async def poll(wf: Workflow) -> str:
        return await wf.step("poll", lambda: starts.append(wf.workflow_id) or "ok")

    started = await pass_time(tether_app, timedelta(hours=1))
    ticks = [f"poll@2026-01-01T00:{m:02d}:00Z" for m in (20, 40)] + ["poll@2026-01-01T01:00:00Z"]
    assert started == ticks and starts == ticks
    await tether_app.apause_schedule("poll")
    assert await pass_time(tether_app, timedelta(days=1)) == []
    assert len(await tether_app.alist_runs(workflow="poll")) == 3


def test_a_sync_test_passes_ticks_too(database_url: str) -> None:
    with App(database_url, clock=FakeClock()) as app:
        nightly_app(app)
        assert (
            pass_time_sync(app, timedelta(days=2))
            == [NIGHTLY, NIGHTLY] + ["nightly@2026-01-02T02:00:00Z"] * 2
        )
        assert app.get_run(NIGHTLY).status is tether.RunStatus.COMPLETED
