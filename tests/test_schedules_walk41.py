"""Schedules walked as an operator renames one: the new name counts from the deploy
(no tick of the old name is started again under the new one), the old row is kept,
fires no more and can be removed."""

from __future__ import annotations

from datetime import UTC, datetime

from tether import App, Workflow
from tether.testing import FakeClock


def _app(url: str, clock: FakeClock, name: str) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="nightly")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    app.schedule(nightly, cron="0 2 * * *", name=name)
    return app


async def _pass(app: App, clock: FakeClock, hours: int) -> list[str]:
    started: list[str] = []
    for _ in range(hours * 6):
        started += await app.afire_schedules()
        clock.advance(10 * 60)
    return started


async def test_a_renamed_schedule_counts_from_the_deploy_and_the_old_name_stops(
    database_url: str,
) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    old = _app(database_url, clock, "report")
    assert await _pass(old, clock, 3) == ["report@2026-12-01T02:00:00Z"]
    await old.aclose()
    new = _app(database_url, clock, "daily-report")  # deployed at 03:00
    assert await _pass(new, clock, 24) == ["daily-report@2026-12-02T02:00:00Z"]
    rows = {r.name: r for r in await new.alist_schedules()}
    assert sorted(rows) == ["daily-report", "report"]
    assert rows["report"].fired_until == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert await new.store.delete_schedule("report")
    assert [r.name for r in await new.alist_schedules()] == ["daily-report"]
    await new.aclose()
