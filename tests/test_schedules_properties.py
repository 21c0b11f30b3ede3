"""Schedules against an oracle: random crons, zones and instants, ticks walked minute by minute.

The oracle knows each cron's fields as sets (the strategy builds the text and the
sets together, so nothing of tether or cronsim reads the text for it) and walks
UTC minutes, reading each in the schedule's zone. Daylight saving as the README
says cron does it: a cron whose minute and hour fields do not start with '*'
(a fixed time) fires once in an hour repeated when clocks go back (its first
copy) and, for a time a jump forward skips, once at the first time after the gap;
any other cron fires on the wall times that exist, both copies of a repeated hour
included. Day-of-month and day-of-week are ORed when neither starts with '*'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tether import TetherError
from tether.schedules import MAX_CATCH_UP, Schedule, _ticks

PROPS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
MINUTE = timedelta(minutes=1)
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (low, high, names from low) of minute, hour, day-of-month, month, day-of-week
FIELDS = [(0, 59, None), (0, 23, None), (1, 31, None), (1, 12, MONTHS), (0, 7, DAYS)]
# instants near the zones' clock changes of 2026 (UTC), and a few plain ones
EDGES = [
    datetime(2026, 3, 29, 1, 0),  # Berlin forward
    datetime(2026, 10, 25, 1, 0),  # Berlin back
    datetime(2026, 3, 8, 7, 0),  # New York forward
    datetime(2026, 11, 1, 6, 0),  # New York back
    datetime(2026, 4, 4, 15, 0),  # Lord Howe back (02:00 -> 01:30)
    datetime(2026, 10, 3, 15, 30),  # Lord Howe forward (02:00 -> 02:30)
    datetime(2026, 6, 15, 12, 0),
    datetime(2028, 2, 28, 23, 0),
]


@dataclass(frozen=True)
class Cron:
    text: str
    fields: tuple[frozenset[int], ...]  # minute, hour, day, month, weekday (0 = Sunday)
    fixed: bool  # neither the minute nor the hour field starts with '*'
    days_or: bool  # neither day field starts with '*'

    def day_ok(self, d: date) -> bool:
        dom = d.day in self.fields[2]
        dow = (d.weekday() + 1) % 7 in self.fields[4]
        day = (dom or dow) if self.days_or else (dom and dow)
        return day and d.month in self.fields[3]

    def wall_ok(self, wall: datetime) -> bool:
        return wall.minute in self.fields[0] and wall.hour in self.fields[1]


@st.composite
def _field(draw: st.DrawFn, low: int, high: int, names: list[str] | None) -> tuple[str, set[int]]:
    def show(v: int) -> str:
        if names and v - low < len(names) and draw(st.booleans()):
            return names[v - low]
        return str(v)

    kind = draw(st.sampled_from(["star", "step", "list"]))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "step":
        n = draw(st.integers(1, high - low + 2))
        return f"*/{n}", set(range(low, high + 1, n))
    terms, values = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, high))
        form = draw(st.sampled_from(["one", "range", "range-step"]))
        if form == "one":
            terms.append(show(a))
            values.add(a)
        elif form == "range":
            terms.append(f"{show(a)}-{show(b)}")
            values |= set(range(a, b + 1))
        else:
            n = draw(st.integers(1, high - low + 1))
            terms.append(f"{a}-{b}/{n}")
            values |= set(range(a, b + 1, n))
    return ",".join(terms), values


@st.composite
def crons(draw: st.DrawFn) -> Cron:
    texts, sets = [], []
    for low, high, names in FIELDS:
        text, values = draw(_field(low, high, names))
        texts.append(text)
        sets.append(frozenset(v % 7 for v in values) if names is DAYS else frozenset(values))
    days_or = not texts[2].startswith("*") and not texts[4].startswith("*")
    if not days_or:  # days and months must meet: cron refuses '0 0 30 2 *' as never firing
        assume(min(sets[2]) <= max((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
                                   for m in sets[3]))  # fmt: skip
    fixed = not texts[0].startswith("*") and not texts[1].startswith("*")
    return Cron(" ".join(texts), tuple(sets), fixed, days_or)


instants = st.builds(
    lambda edge, minutes, seconds: (edge + timedelta(minutes=minutes, seconds=seconds)).replace(
        tzinfo=UTC
    ),
    st.sampled_from(EDGES),
    st.integers(-36 * 60, 36 * 60),
    st.sampled_from([0, 0, 0, 1, 30, 59.5]),
)


def _next_midnight(zone: ZoneInfo, d: date) -> datetime:
    return datetime.combine(d + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)


def _fires(cron: Cron, zone: ZoneInfo, u: datetime) -> bool:
    """Whether the cron fires at the UTC minute `u` (its day already matched)."""
    local = u.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if not cron.fixed:
        return cron.wall_ok(wall)
    if cron.wall_ok(wall) and local.fold == 0:
        return True
    skipped = (u - MINUTE).astimezone(zone).replace(tzinfo=None) + MINUTE
    while skipped < wall:  # wall times a jump forward skipped fire now
        if cron.wall_ok(skipped):
            return True
        skipped += MINUTE
    return False


def _walk(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """The ticks in (`after`, `until`], walked minute by minute (whole days skipped
    where the day does not match)."""
    u = after.replace(second=0, microsecond=0) + MINUTE
    while u <= until:
        d = u.astimezone(zone).date()
        if not cron.day_ok(d):
            u = _next_midnight(zone, d)
            continue
        if _fires(cron, zone, u):
            yield u
        u += MINUTE


def oracle(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    return list(_walk(cron, zone, after, until))


def _oracle_next(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    # most crons tick within a year; Feb 29 on a Sunday may take 28 (or 40 across 2100)
    return next(_walk(cron, zone, after, after + timedelta(days=366 * 41)), None)


@PROPS
@given(crons(), st.sampled_from(ZONES), instants)
def test_next_tick_is_the_first_tick_the_oracle_walks_to(
    cron: Cron, zone: str, at: datetime
) -> None:
    sched = Schedule("s", "w", cron.text, timezone=zone)
    expected = _oracle_next(cron, ZoneInfo(zone), at)
    assume(expected is not None)
    assert sched.next_tick(at) == expected, cron.text


@PROPS
@given(
    crons(),
    st.sampled_from(ZONES),
    instants,
    st.integers(0, 3 * 24 * 3600),
    st.sampled_from(["latest", "all", "skip"]),
)
def test_due_starts_what_the_missed_policy_says_of_the_oracle_ticks(
    cron: Cron, zone: str, fired_until: datetime, gap: int, missed: Any
) -> None:
    sched = Schedule("s", "w", cron.text, timezone=zone, missed=missed)
    now = fired_until + timedelta(seconds=gap)
    walked = oracle(cron, ZoneInfo(zone), fired_until, now)
    ticks, through = sched.due(fired_until, now)
    if not walked:
        assert (ticks, through) == ([], fired_until)
        return
    assert through == walked[-1], cron.text
    if missed == "all":
        assert ticks == walked[-MAX_CATCH_UP:]
    elif missed == "latest" or now - walked[-1] <= timedelta(seconds=60):
        assert ticks == walked[-1:]
    else:
        assert ticks == []


@PROPS
@given(
    crons(),
    st.sampled_from(ZONES),
    instants,
    st.lists(st.integers(1, 4 * 3600), min_size=1, max_size=30),
)
def test_passes_start_each_tick_once_and_none_before_the_schedule(
    cron: Cron, zone: str, created: datetime, steps: list[int]
) -> None:
    """Passes at random moments with missed='all' start exactly the oracle's ticks
    since the schedule was saved (the latest 100 of a pass): none twice, none from
    before the schedule."""
    sched = Schedule("s", "w", cron.text, timezone=zone, missed="all")
    fired_until, now = created, created
    started: list[datetime] = []
    expected: list[datetime] = []
    for step in steps:
        expected += oracle(cron, ZoneInfo(zone), now, now + timedelta(seconds=step))[-MAX_CATCH_UP:]
        now += timedelta(seconds=step)
        ticks, fired_until = sched.due(fired_until, now)
        started += ticks
    assert started == expected, cron.text


def test_a_fixed_time_schedule_saved_in_a_repeated_hour_starts_no_earlier_tick() -> None:
    """Berlin, 2026-10-25 02:15 CET (the second 02:15): '30 2 * * *' ticked at the first
    02:30 (00:30Z), already past, so a schedule saved then started a tick from before it
    was saved and next_tick named a time before the one asked after."""
    sched = Schedule("s", "w", "30 2 * * *", timezone="Europe/Berlin")
    saved = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert sched.next_tick(saved) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    assert sched.due(saved, datetime(2026, 10, 25, 1, 16, tzinfo=UTC)) == ([], saved)


def test_lord_howe_wall_times_after_the_half_hour_shift_back_tick() -> None:
    """Lord Howe, 2026-04-05: 02:00 (+11) goes back to 01:30 (+10:30); 02:00-02:29 then
    exist once and '* */2 * * *' should tick from 02:00 (15:30Z), not 02:30."""
    sched = Schedule("s", "w", "* */2 * * *", timezone="Australia/Lord_Howe")
    at = datetime(2026, 4, 4, 15, 0, tzinfo=UTC)
    assert sched.next_tick(at) == datetime(2026, 4, 4, 15, 30, tzinfo=UTC)


def test_lord_howe_wall_times_after_the_half_hour_shift_forward_tick() -> None:
    """Lord Howe, 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11); '* 3 * * *' ticked
    from 03:30, cronsim's hour steps landing on the half hour after the jump."""
    sched = Schedule("s", "w", "* 3 * * *", timezone="Australia/Lord_Howe")
    assert sched.next_tick(datetime(2026, 10, 3, 14, tzinfo=UTC)) == datetime(
        2026, 10, 3, 16, 0, tzinfo=UTC
    )


def test_a_shift_back_and_forward_between_two_ticks_is_walked() -> None:
    """Lord Howe's offset is +11 at both of cronsim's ticks (2026-04-05 01:00 and
    October 5 02:00), yet 02:00 on April 5, after the shift back between, was lost."""
    sched = Schedule("s", "w", "*/60 2 4,5 4,10 *", timezone="Australia/Lord_Howe")
    assert sched.next_tick(datetime(2026, 4, 4, 14, tzinfo=UTC)) == datetime(
        2026, 4, 4, 15, 30, tzinfo=UTC
    )


def test_ticks_walked_back_over_the_half_hour_shift_back_are_the_wall_times() -> None:
    """The reverse walk (due's bound for missed='latest'/'all') from Lord Howe 02:02
    (+10:30) went from 02:00 to 00:29 (+11), losing 00:30-00:59."""
    start = datetime(2026, 4, 4, 15, 32, tzinfo=UTC).astimezone(ZoneInfo("Australia/Lord_Howe"))
    back = [t.astimezone(UTC) for t in islice(_ticks("* */2 * * *", start, reverse=True), 4)]
    assert [f"{t:%H:%M}" for t in back] == ["15:31", "15:30", "13:59", "13:58"]


@pytest.mark.timeout(30)
def test_a_walk_from_the_second_copy_of_chathams_repeated_hour_goes_on() -> None:
    """Chatham, 2010-04-04: 03:45 (+13:45) goes back to 02:45 (+12:45). From 02:48 (the
    second copy) cronsim went back to 03:00 (the first) and round again for ever: a
    schedule saved then never fired, its pass hung."""
    sched = Schedule("s", "w", "* */3 * * *", timezone="Pacific/Chatham", missed="all")
    saved = datetime(2010, 4, 3, 14, 3, 37, tzinfo=UTC)
    assert sched.next_tick(saved) == datetime(2010, 4, 3, 14, 15, tzinfo=UTC)
    ticks, _ = sched.due(saved, datetime(2010, 4, 3, 14, 17, tzinfo=UTC))
    assert [f"{t:%H:%M}" for t in ticks] == ["14:15", "14:16", "14:17"]


BAD_TOKENS = ["60", "-1", "5-3", "*/0", "1,,2", "", "x", "1-", "/5", "1/2/3", "?", "2#", "mon#9"]


@st.composite
def bad_crons(draw: st.DrawFn) -> str:
    """A valid cron with one field broken, a wrong count of fields, or random text."""
    kind = draw(st.sampled_from(["field", "count", "text"]))
    fields = draw(crons()).text.split()
    if kind == "field":
        i = draw(st.integers(0, 4))
        token = draw(st.sampled_from([*BAD_TOKENS, "24" if i == 1 else "99", "32", "13", "8"]))
        fields[i] = token or ","
        return " ".join(fields)
    if kind == "count":
        n = draw(st.sampled_from([1, 2, 3, 4, 6, 7]))
        return " ".join((fields * 2)[:n])
    return draw(st.text(st.sampled_from("0123456789*/,-# LWmonjaf\t"), max_size=30))


@PROPS
@given(bad_crons())
def test_a_cron_is_read_or_refused_with_a_clear_error(text: str) -> None:
    """Any text: either a schedule that walks, or a TetherError naming the cron and
    saying how to write one (no bare ValueError, IndexError, no hang)."""
    try:
        sched = Schedule("s", "w", text)
    except TetherError as exc:
        assert repr(text) in str(exc) and ("write" in str(exc) or "pick" in str(exc)), exc
        return
    at = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert sched.next_tick(at) > at


odd_values = st.one_of(
    st.text(max_size=12), st.integers(), st.none(), st.binary(max_size=4), st.lists(st.none())
)


@PROPS
@given(st.sampled_from(["timezone", "missed", "overlap"]), odd_values)
def test_bad_options_are_refused_naming_the_option(option: str, value: Any) -> None:
    known = {"timezone": ZONES, "missed": ["latest", "all", "skip"], "overlap": ["allow", "skip"]}
    assume(value not in known[option])
    with pytest.raises(TetherError) as caught:
        Schedule("s", "w", "* * * * *", **{option: value})
    text = str(caught.value)
    hints = ("e.g.", "such as", "did you mean", "one of", "'allow'")
    assert option in text and any(hint in text for hint in hints), text
