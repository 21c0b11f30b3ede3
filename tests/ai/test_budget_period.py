"""A budget over a period (an hour, a day, a week, a month, in UTC): it counts the calls
made since the period began, and a run it paused goes on by itself in the next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tether import App, FakeClock, InvalidArgumentError, RunStatus, Workflow, ai
from tether.testing import pass_time

from ._priced import priced_app

EVENING = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)  # a Friday, two hours before midnight
DAILY = ai.Budget(key="project:x", max_usd=2, period="day")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EVENING)


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App whose every call of fake:m costs $1.20, two hours before midnight."""
    the_app = priced_app(database_url, clock)
    yield the_app
    await the_app.aclose()


def _asker(app: App, budget: ai.Budget) -> object:
    @app.workflow(name="asker", budget=budget)
    async def asker(wf: Workflow, calls: int) -> int:
        for i in range(calls):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return calls

    return asker


@pytest.mark.parametrize(
    ("period", "since", "until"),
    [
        ("hour", datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("day", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("week", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("month", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_calendar_periods_in_utc(period: str, since: datetime, until: datetime) -> None:
    budget = ai.Budget(max_usd=1, period=period)  # type: ignore[arg-type]
    # 2027-01-01 00:30 in UTC+01:00 is 2026-12-31 23:30 UTC
    now = datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert (budget.since(now), budget.until(now)) == (since, until)
    assert ai.Budget(max_usd=1).since(now) is None and ai.Budget(max_usd=1).until(now) is None


def test_an_unknown_period_says_which_there_are() -> None:
    with pytest.raises(InvalidArgumentError, match="'hour', 'day', 'week' or 'month'"):
        ai.Budget(max_usd=1, period="year")  # type: ignore[arg-type]


async def test_a_daily_budget_counts_the_day_and_starts_again_the_next(
    app: App, clock: FakeClock
) -> None:
    """Without a period a key counts every call it ever logged: a project's $2 a day
    stopped its runs for good once the first day spent it."""
    asker = _asker(app, DAILY)
    assert (await app.arun(asker, 1, workflow_id="a")).value == 1  # $1.20 today
    with pytest.raises(ai.BudgetExceededError) as stopped:
        await app.arun(asker, 2, workflow_id="b")  # $2.40 > $2: its second call stops
    said = str(stopped.value)
    assert "budget key 'project:x' has spent $2.4000 of $2.0000 today" in said
    assert "(since 2026-12-04 00:00 UTC)" in said
    assert "period='day'" in said and "2026-12-05T00:00:00+00:00" in said
    clock.advance(timedelta(hours=2, minutes=1).total_seconds())  # past midnight
    assert (await app.arun(asker, 1, workflow_id="c")).value == 1  # a new day, $0
    [stop] = [e for e in (await app.aget_record("b")).events if e.type == "budget.exceeded"]
    assert stop.detail["since"] == "2026-12-04T00:00:00+00:00"
    [today] = await app.ausage(run="c")
    assert today.cost_usd == pytest.approx(1.2)


async def test_a_run_paused_by_its_period_goes_on_when_the_next_begins(
    app: App, clock: FakeClock
) -> None:
    asker = _asker(
        app, ai.Budget(key="project:y", max_usd=2, period="day", on_exceed="pause", warn_at=0.5)
    )
    parked = await app.arun(asker, 4, workflow_id="p")
    assert parked.status is RunStatus.WAITING
    [stop] = [e for e in parked.record.events if e.type == "budget.exceeded"]
    assert "next day begins at 2026-12-05T00:00:00+00:00, when the run goes on" in (
        stop.message or ""
    )
    await pass_time(app, timedelta(hours=1))  # still today: it waits on
    assert (await app.aget_run("p")).status is RunStatus.WAITING
    await pass_time(app, timedelta(hours=2))  # midnight passes
    done = await app.aresult("p", timeout=10)
    assert done.value == 4 and done.status is RunStatus.COMPLETED
    types = [e.type for e in done.record.events if e.type.startswith("budget.")]
    # warned once each day, stopped once; no raise was sent
    assert types == ["budget.warning", "budget.exceeded", "budget.warning"]
    warned = [e.detail["since"] for e in done.record.events if e.type == "budget.warning"]
    assert warned == ["2026-12-04T00:00:00+00:00", "2026-12-05T00:00:00+00:00"]


async def test_a_raise_still_wakes_a_run_paused_by_its_period(app: App, clock: FakeClock) -> None:
    asker = _asker(app, ai.Budget(max_usd=2, period="month", on_exceed="pause"))
    assert (await app.arun(asker, 3, workflow_id="m")).status is RunStatus.WAITING
    await app.asignal("m", "budget.raise", {"max_usd": 10})
    assert (await app.aresult("m", timeout=10)).value == 3
