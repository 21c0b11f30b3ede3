"""Time at its edges: waits due in the last moments of the year 9999 (or before the
year 1 in UTC), timeouts from a clock near the end of the calendar, a datetime
subclass as a due time, and cron schedules whose next tick lies past the year 9999."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tether import App, FakeClock, RunStatus, WaitStatus, Workflow
from tether.errors import InvalidArgumentError
from tether.schedules import Schedule

LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # the last moment a wait is due at
NEAR_END = datetime(9999, 12, 31, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    "when",
    [
        datetime.max.replace(tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))),  # 10000 in UTC
    ],
    ids=["max", "last-microsecond", "offset-past-10000"],
)
async def test_sleep_until_the_end_of_time_is_recorded_and_read_back(
    app: App, clock: FakeClock, when: datetime
) -> None:
    """Such a sleep failed the run with "ValueError: year 10000 is out of range" on
    SQLite (its unix seconds as a float round past the year) and with a StoreError
    ("timestamp too large") on PostgreSQL; now it is due at the last whole second."""

    @app.workflow
    async def forever(wf: Workflow) -> str:
        await wf.sleep_until(when)
        return "woke"

    res = await app.arun(forever, workflow_id="forever")
    assert res.status is RunStatus.WAITING
    (wait,) = await app.alist_waits("forever")
    assert (wait.status, wait.due_at) == (WaitStatus.PENDING, LAST)
    record = await app.aget_record("forever")
    assert record.status is RunStatus.WAITING
    clock.set(LAST)
    assert await app.afire_due_timers() == ["forever"]
    assert [w.status for w in await app.alist_waits("forever")] == [WaitStatus.RESOLVED]


async def test_sleep_until_before_the_year_one_in_utc_is_due_at_once(app: App) -> None:
    """01:00 on 1 January of the year 1 at +05:00 is in the year 0 in UTC: "ValueError:
    year 0 is out of range" on SQLite, a StoreError on PostgreSQL. Long past: due now."""

    @app.workflow
    async def early(wf: Workflow) -> str:
        await wf.sleep_until(datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
        return "done"

    res = await app.arun(early, workflow_id="early")
    assert (res.status, res.value) == (RunStatus.COMPLETED, "done")
    (wait,) = await app.alist_waits("early")
    assert wait.due_at == datetime.min.replace(tzinfo=UTC)


async def test_timeouts_from_a_clock_near_the_end_of_the_calendar(
    app: App, clock: FakeClock
) -> None:
    """A sleep or a wait's timeout reaching past the year 9999 failed the run with a
    bare "OverflowError: date value out of range"; now it is due at the last second."""

    @app.workflow
    async def late(wf: Workflow) -> str:
        await wf.sleep(timedelta(days=2))
        return "slept"

    @app.workflow
    async def asks(wf: Workflow) -> str:
        return str(await wf.wait_for_signal("go", timeout=timedelta(days=36500), default="-"))

    clock.set(NEAR_END)
    assert (await app.arun(late, workflow_id="late")).status is RunStatus.WAITING
    assert (await app.arun(asks, workflow_id="asks")).status is RunStatus.WAITING
    waits = [w for r in ("late", "asks") for w in await app.alist_waits(r)]
    assert [w.due_at for w in waits] == [LAST, LAST]
    assert (await app.aget_record("asks")).status is RunStatus.WAITING
    clock.set(LAST)
    assert sorted(await app.afire_due_timers()) == ["asks", "late"]
    assert [w.status for w in await app.alist_waits("late")] == [WaitStatus.RESOLVED]
    assert [w.status for w in await app.alist_waits("asks")] == [WaitStatus.TIMED_OUT]


class _Stamp(datetime):
    """A datetime subclass, as pandas' Timestamp and freezegun's times are."""


async def test_a_datetime_subclass_is_a_due_time(app: App, clock: FakeClock) -> None:
    """SQLite refused it: "Error binding parameter: type '_Stamp' is not supported"."""

    @app.workflow
    async def stamped(wf: Workflow) -> str:
        await wf.sleep_until(_Stamp(2026, 1, 2, tzinfo=UTC))
        return "woke"

    assert (await app.arun(stamped, workflow_id="stamped")).status is RunStatus.WAITING
    clock.set(datetime(2026, 1, 2, tzinfo=UTC))
    assert await app.afire_due_timers() == ["stamped"]
    assert (await app.aresult("stamped", timeout=10)).value == "woke"


async def test_a_naive_sleep_until_is_refused_naming_what_to_pass(app: App) -> None:
    @app.workflow
    async def naive(wf: Workflow) -> None:
        await wf.sleep_until(datetime(2030, 1, 1))

    with pytest.raises(InvalidArgumentError, match=r"timezone-aware.*tzinfo=timezone.utc"):
        await app.arun(naive, workflow_id="naive")


@pytest.mark.parametrize(
    ("cron", "after"),
    [
        ("* * * * *", datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
        ("0 0 29 2 *", datetime(9996, 3, 1, tzinfo=UTC)),  # no 29 February after 9996
    ],
)
def test_a_schedule_past_the_calendar_has_no_next_tick(cron: str, after: datetime) -> None:
    """`next_tick` and `due` raised a bare OverflowError at the end of the calendar."""
    sched = Schedule("edge", "w", cron)
    assert sched.next_tick(after) == datetime.max.replace(tzinfo=UTC)
    ticks, through = sched.due(after, after + timedelta(seconds=30))
    assert (ticks, through) == ([], after)


async def test_the_last_minute_of_the_calendar_fires(app: App, clock: FakeClock) -> None:
    """The tick at 9999-12-31 23:59 was lost: the walk past it overflowed, and every
    pass of the schedule after failed ("could not start its due runs")."""
    clock.set(datetime(9999, 12, 31, 23, 58, tzinfo=UTC))

    @app.workflow
    async def nye(wf: Workflow) -> str:
        return "ok"

    app.schedule(nye, cron="59 23 31 12 *", name="nye")
    assert await app.afire_schedules() == []  # saved now: history is not backfilled
    clock.set(datetime(9999, 12, 31, 23, 59, 30, tzinfo=UTC))
    assert await app.afire_schedules() == ["nye@9999-12-31T23:59:00Z"]
    assert await app.afire_schedules() == []
