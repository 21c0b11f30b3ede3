"""`overlap=`: a tick due while the schedule's last run has not ended. "allow" (the
default) starts it beside that run, as before; "skip" drops it, for work that must
never run twice at once (a sync, a poll of a tracker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import InvalidArgumentError
from tether.worker import ServerlessHost

T0 = datetime(2026, 12, 1, 16, 3, tzinfo=UTC)


async def _app(url: str, clock: FakeClock, overlap: str) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="sync")
    async def sync(wf: Workflow) -> str:
        return str(await wf.wait_for_signal("done"))  # runs until the test ends it

    app.schedule(sync, cron="*/5 * * * *", overlap=overlap)  # type: ignore[arg-type]
    return app


async def _tick(app: App, clock: FakeClock) -> list[str]:
    """Five minutes on, the schedule's due ticks, each driven until it parks."""
    clock.advance(300)
    started = await app.afire_schedules()
    await ServerlessHost(app).aprocess_available_jobs(limit=5)
    return started


async def test_skip_drops_a_tick_while_the_last_run_is_running(
    database_url: str,
) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock, "skip")
    try:
        assert await app.afire_schedules() == []  # saved now
        (first,) = await _tick(app, clock)  # 16:05
        assert (await app.aget_run(first)).status is RunStatus.WAITING
        assert await _tick(app, clock) == []  # 16:10: the 16:05 run still going
        await app.asignal(first, "done", "ok")
        await ServerlessHost(app).aprocess_available_jobs(limit=5)
        assert (await app.aget_run(first)).status is RunStatus.COMPLETED
        assert await _tick(app, clock) == ["sync@2026-12-01T16:15:00Z"]
        runs = sorted(r.workflow_id for r in await app.alist_runs(limit=10))
        assert runs == ["sync@2026-12-01T16:05:00Z", "sync@2026-12-01T16:15:00Z"]
    finally:
        await app.aclose()


async def test_allow_starts_each_tick_beside_the_last_run(database_url: str) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock, "allow")
    try:
        await app.afire_schedules()
        assert await _tick(app, clock) == ["sync@2026-12-01T16:05:00Z"]
        assert await _tick(app, clock) == ["sync@2026-12-01T16:10:00Z"]
    finally:
        await app.aclose()


def test_an_unknown_overlap_is_refused(sqlite_url: str) -> None:
    with App(sqlite_url) as app:

        @app.workflow(name="sync")
        async def sync(wf: Workflow) -> None:
            return None

        with pytest.raises(InvalidArgumentError, match=r"overlap must be 'allow'.*'skip'"):
            app.schedule(sync, cron="*/5 * * * *", overlap="queue")  # type: ignore[arg-type]
        assert app.schedules == {}
