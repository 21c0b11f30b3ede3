"""Schedules walked as a new user would: cron errors, odd names, DST on a real
database (found by tests/test_schedules.py's neighbours not covering them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import tether
from tether import App, FakeClock, Workflow
from tether.schedules import Schedule

T0 = datetime(2026, 12, 1, 16, 3, tzinfo=UTC)


def _app(url: str, clock: FakeClock) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="nightly")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    return app


@pytest.mark.parametrize(
    ("cron", "field"),
    [("0 0 * 13 *", "month"), ("0 0 * FOO *", "month"), ("0 0 1 0 *", "month")],
)
def test_a_bad_month_is_said_to_be_bad(cron: str, field: str) -> None:
    """'0 0 * 13 *' was refused as "would never fire: day-of-month '*' falls in none of
    the months '13'", blaming the days of a month that does not exist."""
    with pytest.raises(tether.InvalidArgumentError) as caught:
        Schedule("s", "w", cron)
    said = str(caught.value)
    assert f"not a valid cron expression (Bad {field})" in said, said
    assert "never fire" not in said and "write five fields" in said


@pytest.mark.parametrize(
    "name", ["a b", "weird/name?x=1&y", "日本-nightly", "r@2026-12-01T16:05:00Z", "%_*'--"]
)
async def test_odd_schedule_names_fire_pause_and_tag_as_written(
    database_url: str, name: str
) -> None:
    clock = FakeClock(T0)
    app = _app(database_url, clock)
    app.schedule(app.get_workflow("nightly").fn, cron="*/5 * * * *", name=name)
    assert await app.afire_schedules() == []
    clock.advance(120)
    assert await app.afire_schedules() == [f"{name}@2026-12-01T16:05:00Z"]
    run = await app.aget_run(f"{name}@2026-12-01T16:05:00Z")
    assert run.tags == (f"schedule:{name}",)
    assert (await app.apause_schedule(name)).paused
    clock.advance(300)
    assert await app.afire_schedules() == []
    await app.aclose()


@pytest.mark.parametrize(
    ("start", "tick"),
    [
        # Berlin springs forward at 02:00 CET: 02:30 does not exist, it starts at 03:00 CEST
        (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), "2026-03-29T01:00:00Z"),
        # Berlin falls back at 03:00 CEST: 02:30 comes twice, it starts at the first
        (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), "2026-10-25T00:30:00Z"),
    ],
)
async def test_a_fixed_time_tick_in_a_skipped_or_repeated_hour_starts_once(
    database_url: str, start: datetime, tick: str
) -> None:
    clock = FakeClock(start)
    app = _app(database_url, clock)
    nightly = app.get_workflow("nightly").fn
    app.schedule(nightly, cron="30 2 * * *", timezone="Europe/Berlin", missed="all")
    started: list[str] = []
    while clock.now() < start + timedelta(hours=4):
        started += await app.afire_schedules()
        clock.advance(10 * 60)
    assert started == [f"nightly@{tick}"]
    await app.aclose()
