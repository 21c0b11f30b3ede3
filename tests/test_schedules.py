"""Schedules: each tick one run, across workers and restarts, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tether
from tether import App, FakeClock, Workflow
from tether.schedules import LATE_AFTER, Schedule
from tether.store import RunStatus, ScheduleRow, open_store
from tether.worker import ServerlessHost

T0 = datetime(2026, 12, 1, 16, 3, tzinfo=UTC)


def _at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 12, 1, hh, mm, ss, tzinfo=UTC)


# -- which ticks are due (no database) ------------------------------------------------------


def test_latest_starts_only_the_most_recent_missed_tick() -> None:
    s = Schedule("s", "w", "*/5 * * * *")
    ticks, through = s.due(_at(16, 3), _at(17, 2))
    assert ticks == [_at(17, 0)] and through == _at(17, 0)
    assert s.due(_at(17, 0), _at(17, 4)) == ([], _at(17, 0))


def test_all_starts_every_missed_tick_oldest_first() -> None:
    s = Schedule("s", "w", "*/5 * * * *", missed="all")
    ticks, through = s.due(_at(16, 3), _at(16, 21))
    assert ticks == [_at(16, 5), _at(16, 10), _at(16, 15), _at(16, 20)]
    assert through == _at(16, 20)
    long_gap, _ = Schedule("s", "w", "* * * * *", missed="all").due(_at(0, 0), _at(23, 0))
    assert len(long_gap) == tether.schedules.MAX_CATCH_UP and long_gap[-1] == _at(23, 0)


def test_skip_drops_a_late_tick_but_still_moves_past_it() -> None:
    s = Schedule("s", "w", "*/5 * * * *", missed="skip")
    assert s.due(_at(16, 3), _at(16, 5, 30)) == ([_at(16, 5)], _at(16, 5))
    late = _at(16, 5) + LATE_AFTER + timedelta(seconds=1)
    assert s.due(_at(16, 3), late) == ([], _at(16, 5))


def test_cron_is_read_in_the_schedule_timezone_across_dst() -> None:
    s = Schedule("s", "w", "30 2 * * *", timezone="America/New_York")
    # 02:30 New York on 2026-11-01 (after the fall back, EST = UTC-5) is 07:30 UTC
    assert s.next_tick(datetime(2026, 11, 1, 0, 0, tzinfo=UTC)) == datetime(
        2026, 11, 1, 7, 30, tzinfo=UTC
    )
    # in summer (EDT = UTC-4) the same wall time is 06:30 UTC
    assert s.next_tick(datetime(2026, 7, 1, 0, 0, tzinfo=UTC)) == datetime(
        2026, 7, 1, 6, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("missed", ["latest", "all"])
def test_the_ticks_of_an_hour_repeated_when_clocks_go_back_are_due_on_time(
    missed: Any,
) -> None:
    """Berlin, 2026-10-25: 02:00-03:00 comes twice (CEST, then CET). A half-hourly
    schedule fired each minute starts all six ticks next_tick names, each when due.
    Before, the walk back from now did not see the repeated hour: with missed="latest"
    01:00Z and 01:30Z were never started, with "all" they started at 02:00Z."""
    s = Schedule("half", "w", "*/30 * * * *", timezone="Europe/Berlin", missed=missed)
    fired_until = datetime(2026, 10, 24, 23, 45, tzinfo=UTC)
    started: list[tuple[datetime, datetime]] = []  # (tick, when it was started)
    now = fired_until
    while now < datetime(2026, 10, 25, 2, 30, tzinfo=UTC):
        now += timedelta(minutes=1)
        ticks, fired_until = s.due(fired_until, now)
        started += [(t, now) for t in ticks]
    expected, t = [], datetime(2026, 10, 24, 23, 45, tzinfo=UTC)
    while (t := s.next_tick(t)) <= now:
        expected.append(t)
    assert [tick for tick, _ in started] == expected
    assert [tick.strftime("%H:%M") for tick in expected] == [
        "00:00", "00:30", "01:00", "01:30", "02:00", "02:30"
    ]  # fmt: skip
    assert all(when == tick for tick, when in started)  # each in the minute it came due


def test_tick_ids_are_the_schedule_and_the_utc_time() -> None:
    s = Schedule("nightly", "w", "0 2 * * *", timezone="Europe/Berlin")
    tick = datetime(2026, 12, 1, 3, 0, tzinfo=s.zone())
    assert s.tick_id(tick) == "nightly@2026-12-01T02:00:00Z"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cron": "every 5 minutes"}, "not a valid cron expression"),
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "0 0 32 * *"}, r"not a valid cron expression \(Bad day-of-month\)"),
        # a day none of its months has was said to be a "Bad day-of-month"
        ({"cron": "0 0 30 2 *"}, "never fire: day-of-month '30' falls in none of the months '2'"),
        ({"cron": "0 0 31 4,6 *"}, "never fire"),
        ({"cron": 5}, "cron expression string"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "IANA time zone"),
        # read on each host: workers in two zones started one tick under two run ids
        ({"cron": "0 2 * * *", "timezone": "localtime"}, "each host's own zone"),
        ({"cron": "* * * * *", "missed": "some"}, "one of 'latest', 'all', 'skip'"),
        ({"cron": "* * * * *", "queue": ""}, "queue must be a non-empty string"),
        ({"cron": "* * * * *", "name": ""}, "schedule name must be a non-empty string"),
        # cronsim reads six fields as seconds first: a schedule every second, not minute
        ({"cron": "* * * * * *"}, "five fields"),
        ({"cron": "* * * *"}, "five fields"),
        ({"cron": "0 1"}, "it has 2 fields; write five fields"),
        ({"cron": "*"}, "it has 1 field; write five fields"),
        # crontab's nicknames: said "it has 1 fields", naming none of the five to write
        ({"cron": "@daily"}, r"nicknames are not read; write it as '0 0 \* \* \*'"),
        ({"cron": "@Hourly"}, r"write it as '0 \* \* \* \*'"),
        # its runs are named name@<tick>: a name a run id cannot carry failed at 2 a.m.
        ({"cron": "* * * * *", "name": "a" * 990}, "keep it within 979 bytes"),
    ],
)
def test_bad_schedules_are_refused_with_a_clear_error(
    kwargs: dict[str, Any], match: str, sqlite_url: str
) -> None:
    app = App(sqlite_url)

    @app.workflow(name="w")
    async def w(wf: Workflow) -> None:
        return None

    with pytest.raises(tether.InvalidArgumentError, match=match):
        app.schedule(w, **kwargs)
    assert app.schedules == {}
    app.close()


def test_a_schedule_input_the_workflow_refuses_fails_when_declared(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.workflow(name="w")
    async def w(wf: Workflow, n: int) -> int:
        return n

    with pytest.raises(tether.InvalidArgumentError, match="input"):
        app.schedule(w, cron="* * * * *", input="not a number")

    @app.workflow(name="plain")
    async def plain(wf: Workflow) -> int:
        return 1

    # accepted, then every tick logged "takes no input" and started nothing
    with pytest.raises(tether.InvalidArgumentError, match="'plain' takes no input; drop input="):
        app.schedule(plain, cron="* * * * *", input=5)
    assert "plain" not in app.schedules
    app.close()


# -- firing against a real database ------------------------------------------------------------


async def _app(url: str, clock: FakeClock, missed: str = "latest") -> App:
    app = App(url, clock=clock)

    @app.workflow(name="report", schedule=None)
    async def report(wf: Workflow, day: str) -> str:
        return await wf.step("write", lambda: f"report for {day}")

    app.schedule(report, cron="*/5 * * * *", input="today", missed=missed)  # type: ignore[arg-type]
    return app


async def _runs(app: App) -> list[str]:
    return sorted(r.workflow_id for r in await app.alist_runs(limit=1000))


async def test_each_tick_is_one_run_across_workers_and_restarts(database_url: str) -> None:
    clock = FakeClock(T0)
    a = await _app(database_url, clock)
    assert await a.afire_schedules() == []  # saved now: history is not backfilled
    clock.advance(120)  # 16:05
    assert await a.afire_schedules() == ["report@2026-12-01T16:05:00Z"]
    # a second worker on the same database, same moment: nothing more
    b = await _app(database_url, clock)
    assert await b.afire_schedules() == []
    await a.aclose()  # the first worker goes away; the second carries on
    clock.advance(300)  # 16:10
    assert await b.afire_schedules() == ["report@2026-12-01T16:10:00Z"]
    await b.aclose()
    # restarted after an hour of downtime: the latest missed tick, once
    clock.advance(3600 + 60)  # 17:11
    c = await _app(database_url, clock)
    assert await c.afire_schedules() == ["report@2026-12-01T17:10:00Z"]
    assert await c.afire_schedules() == []
    assert await _runs(c) == [
        "report@2026-12-01T16:05:00Z",
        "report@2026-12-01T16:10:00Z",
        "report@2026-12-01T17:10:00Z",
    ]
    run = await c.aget_run("report@2026-12-01T17:10:00Z")
    assert run.tags == ("schedule:report",)
    await c.aclose()


class _DiesBeforeRecording:
    """A store whose first `advance_schedule` never happens: the worker died after
    submitting a tick and before recording it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.died = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def advance_schedule(self, *args: Any) -> bool:
        if not self.died:
            self.died = True
            raise tether.StoreUnavailableError("killed between submit and record")
        return bool(await self._inner.advance_schedule(*args))


async def test_a_tick_started_but_not_recorded_is_not_started_twice(database_url: str) -> None:
    clock = FakeClock(T0)
    first = await _app(database_url, clock)
    await first.afire_schedules()
    await first.aclose()
    clock.advance(120)
    dying = App(store=_DiesBeforeRecording(open_store(database_url)), clock=clock)

    @dying.workflow(name="report")
    async def report(wf: Workflow, day: str) -> str:
        return day

    dying.schedule(report, cron="*/5 * * * *", input="today")
    with pytest.raises(tether.StoreUnavailableError):
        await dying.afire_schedules()
    await dying.aclose()
    again = await _app(database_url, clock)
    assert await again.afire_schedules() == ["report@2026-12-01T16:05:00Z"]
    assert await _runs(again) == ["report@2026-12-01T16:05:00Z"]
    assert await again.afire_schedules() == []
    await again.aclose()


async def test_all_catches_up_every_missed_tick(database_url: str) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock, missed="all")
    await app.afire_schedules()
    clock.advance(17 * 60)  # 16:20
    assert await app.afire_schedules() == [
        "report@2026-12-01T16:05:00Z",
        "report@2026-12-01T16:10:00Z",
        "report@2026-12-01T16:15:00Z",
        "report@2026-12-01T16:20:00Z",
    ]
    await app.aclose()


async def test_paused_schedules_start_nothing_and_resume_from_now(database_url: str) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock, missed="all")
    await app.afire_schedules()
    row = await app.apause_schedule("report")
    assert row.paused
    clock.advance(20 * 60)  # 16:23: four ticks fall in the pause
    assert await app.afire_schedules() == []
    resumed = await app.apause_schedule("report", paused=False)
    assert not resumed.paused and resumed.fired_until == clock.now()
    clock.advance(2 * 60)  # 16:25
    assert await app.afire_schedules() == ["report@2026-12-01T16:25:00Z"]
    with pytest.raises(tether.InvalidArgumentError, match="no schedule named 'nope'"):
        await app.apause_schedule("nope")
    await app.aclose()


async def test_a_declared_schedule_is_paused_before_its_first_tick(database_url: str) -> None:
    """A deploy that pauses a schedule before any process fired it was told there is
    "no schedule named" the one its App declares; its first fire then started ticks."""
    clock = FakeClock(T0)
    app = await _app(database_url, clock, missed="all")
    row = await app.apause_schedule("report")
    assert row.paused and row.fired_until == T0
    clock.advance(20 * 60)
    assert await app.afire_schedules() == []  # paused from the start: nothing started
    assert [r.paused for r in await app.alist_schedules()] == [True]
    await app.aclose()


async def test_workers_fire_schedules_in_maintenance_and_run_the_ticks(
    database_url: str,
) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock)
    host = ServerlessHost(app)
    assert (await host.amaintenance_tick()).scheduled == []
    clock.advance(120)
    tick = await host.amaintenance_tick()
    assert tick.scheduled == ["report@2026-12-01T16:05:00Z"]
    assert (await host.aprocess_available_jobs(limit=5)).succeeded == 1
    done = await app.aresult("report@2026-12-01T16:05:00Z", timeout=30)
    assert (done.status, done.value) == (RunStatus.COMPLETED, "report for today")
    # another worker at the same moment skips the chore (its lock is held)
    other = ServerlessHost(app, worker_id="other")
    assert "schedules" in (await other.amaintenance_tick()).skipped
    await app.aclose()


async def test_a_changed_definition_updates_the_row_and_keeps_its_progress(
    database_url: str,
) -> None:
    clock = FakeClock(T0)
    app = await _app(database_url, clock)
    await app.afire_schedules()
    await app.apause_schedule("report")
    await app.aclose()
    changed = App(database_url, clock=clock)

    @changed.workflow(name="report", schedule="0 * * * *")
    async def report(wf: Workflow) -> str:
        return "hourly"

    await changed.afire_schedules()
    rows: list[ScheduleRow] = await changed.alist_schedules()
    assert [(r.name, r.cron, r.paused) for r in rows] == [("report", "0 * * * *", True)]
    await changed.aclose()


async def test_a_changed_cron_counts_from_the_change_not_from_the_old_cron(
    database_url: str,
) -> None:
    # the old cron's last tick (16:05) said nothing of the new cron's ticks since
    clock = FakeClock(T0)
    app = await _app(database_url, clock, missed="all")
    await app.afire_schedules()
    clock.advance(4 * 60)  # 16:07: one tick of */5 started
    assert await app.afire_schedules() == ["report@2026-12-01T16:05:00Z"]
    await app.aclose()
    clock.advance(30 * 60)  # 16:37, the old cron's ticks since 16:05 not started yet
    edited = App(database_url, clock=clock)

    @edited.workflow(name="report")
    async def report(wf: Workflow, day: str) -> str:
        return day

    edited.schedule(report, cron="* * * * *", input="today", missed="all")
    assert await edited.afire_schedules() == []  # not 32 runs back to 16:06
    clock.advance(60)
    assert await edited.afire_schedules() == ["report@2026-12-01T16:38:00Z"]
    # a change of queue alone keeps the progress (and the old cron's missed ticks)
    await edited.aclose()
    clock.advance(120)
    queued = App(database_url, clock=clock)
    queued.workflow(name="report")(report)
    queued.schedule(report, cron="* * * * *", input="today", missed="all", queue="other")
    assert await queued.afire_schedules() == [
        "report@2026-12-01T16:39:00Z",
        "report@2026-12-01T16:40:00Z",
    ]
    await queued.aclose()


async def test_one_schedule_that_cannot_start_does_not_stop_the_others(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    app = App(database_url, clock=clock)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    app.schedule(w, cron="*/5 * * * *", input=1, name="a")
    app.schedule(w, cron="*/5 * * * *", input=1, name="b")
    await app.afire_schedules()
    # another deploy started a's 16:05 tick with another input: a's submit is refused
    await app.asubmit(w, 2, workflow_id="a@2026-12-01T16:05:00Z")
    clock.advance(120)
    with caplog.at_level("ERROR", logger="tether"):
        assert await app.afire_schedules() == ["b@2026-12-01T16:05:00Z"]
    assert "schedule 'a' could not start its due runs" in caplog.text
    await app.aclose()


async def test_a_tick_that_cannot_start_is_skipped_not_blocking_the_later_ones(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With missed="all", a tick refused for good (another deploy started it with another
    input) was tried again at every pass and held back every later tick of its schedule;
    now it is logged once and skipped, and the next ticks start on time."""
    clock = FakeClock(T0)
    app = App(database_url, clock=clock)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    app.schedule(w, cron="*/5 * * * *", input=1, name="a", missed="all")
    await app.afire_schedules()
    await app.asubmit(w, 2, workflow_id="a@2026-12-01T16:05:00Z")
    clock.advance(120)  # 16:05
    with caplog.at_level("ERROR", logger="tether"):
        assert await app.afire_schedules() == []
        assert await app.afire_schedules() == []
    assert caplog.text.count("tick a@2026-12-01T16:05:00Z skipped") == 1
    clock.advance(300)  # 16:10
    assert await app.afire_schedules() == ["a@2026-12-01T16:10:00Z"]
    clock.advance(300)  # 16:15
    assert await app.afire_schedules() == ["a@2026-12-01T16:15:00Z"]
    await app.aclose()


async def test_two_apps_declaring_one_schedule_name_differently_say_so(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two services on one database, each with a schedule named 'sync' on its own cron:
    each pass saved its own definition over the other's, resetting the progress, and
    neither ever started a tick, with nothing in the log. Each replacement is logged
    now, naming both definitions and how to tell them apart."""
    clock = FakeClock(T0)
    apps = []
    for cron, name in (("0 * * * *", "sync-a"), ("30 * * * *", "sync-b")):
        app = App(database_url, clock=clock)

        @app.workflow(name=name)
        async def sync(wf: Workflow) -> str:
            return "synced"

        app.schedule(sync, cron=cron, name="sync")
        apps.append(app)
    try:
        with caplog.at_level("WARNING", logger="tether"):
            for _ in range(4):
                for app in apps:
                    await app.afire_schedules()
                    clock.advance(150)
    finally:
        for app in apps:
            await app.aclose()
    said = [r.getMessage() for r in caplog.records if "schedule 'sync' is saved" in r.message]
    assert len(said) == 7  # every pass but the very first replaced the other's
    assert "as workflow 'sync-a', cron '0 * * * *'" in said[0]
    assert "declares workflow 'sync-b', cron '30 * * * *'" in said[0]
    assert "give each its own name=" in said[0]
