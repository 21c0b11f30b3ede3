"""A schedule re-declared while another worker fires it: the old definition's pass,
held between reading the schedule rows and recording its tick, neither moves the new
cron's progress past a tick of the new cron nor starts that tick under the old one.
Two Apps on one database (a SQLite file, PostgreSQL), the interleaving forced with
events around `Store.list_schedules`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tether import App, FakeClock, Workflow

T0 = datetime(2026, 12, 1, 8, 59, tzinfo=UTC)
GUARD = 60.0  # seconds: a deadlock guard only, never reached when the test passes


def _app(url: str, clock: FakeClock, cron: str) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="report")
    async def report(wf: Workflow, day: str) -> str:
        return f"report for {day}"

    app.schedule(report, cron=cron, input="today")
    return app


async def test_a_stale_pass_of_the_old_cron_loses_no_tick_of_the_new_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(T0)
    old = _app(database_url, clock, "0 * * * *")
    new = _app(database_url, clock, "30 * * * *")
    try:
        assert await old.afire_schedules() == []  # saved, counting from 08:59
        listed, go = asyncio.Event(), asyncio.Event()
        read = old.store.list_schedules

        async def held() -> Any:
            rows = await read()
            listed.set()
            await go.wait()
            return rows

        monkeypatch.setattr(old.store, "list_schedules", held)
        clock.set(T0 + timedelta(minutes=61, seconds=10))  # 10:00:10
        stale = asyncio.ensure_future(old.afire_schedules())
        await asyncio.wait_for(listed.wait(), GUARD)
        assert await new.afire_schedules() == []  # the new cron counts from 10:00:10
        go.set()
        # the old deploy's own tick starts (its pass read its cron), and records nothing
        assert await asyncio.wait_for(stale, GUARD) == ["report@2026-12-01T10:00:00Z"]
        (row,) = await new.alist_schedules()
        assert (row.cron, row.fired_until) == ("30 * * * *", T0 + timedelta(minutes=61, seconds=10))
        clock.set(T0 + timedelta(minutes=92))  # 10:31
        assert await new.afire_schedules() == ["report@2026-12-01T10:30:00Z"]
    finally:
        await old.aclose()
        await new.aclose()
