"""A cron's ticks in a time zone, across its clock changes as cron reads them.

cronsim walks a cron with '*' leading its minute or hour field in steps of UTC, so a
clock change of other than whole hours puts its hour steps on the half hour: in Lord
Howe, after 02:00 (+11) went back to 01:30 (+10:30), '* */2 * * *' went from 01:30 to
02:30 and 02:00-02:29, wall times that exist, never ticked. Its walk is kept from one
tick to the next where the zone's UTC offset does not change on the way (nearly
always, and as fast); where it does, the next tick is walked here a minute at a time,
passing over the days and hours the cron has not, and cronsim starts again from it. A
fixed-time cron cronsim walks on the wall clock (one tick in a repeated hour, one after
a skipped time), which has no such gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, tzinfo

from cronsim import CronSim

__all__ = ["ticks"]

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)  # no zone changes its offset and back within a day
_TINY = timedelta(microseconds=1)
_BEHIND = timedelta(hours=3)  # as far as cronsim's walk goes back: an hour and a shift
_EDGE_LOW = datetime.min.replace(tzinfo=UTC) + _BEHIND
_EDGE_HIGH = datetime.max.replace(tzinfo=UTC) - _BEHIND


def ticks(cron: str, start: datetime, *, reverse: bool = False) -> Iterator[datetime]:
    """The cron's ticks (in UTC) strictly after `start`, or from it back, in the zone of
    `start`. Ends where datetime's calendar ends: CronSim raised OverflowError there,
    which lost the ticks walked to (the last minute of the year 9999 never fired) and
    failed every pass of the schedule after. Each tick is past the one before: from
    the second copy of an hour repeated when clocks go back, a fixed-time cron's walk
    on the wall clock named the first copy's tick, already past."""
    walk = CronSim(cron, start, reverse=reverse)
    zone = start.tzinfo or UTC
    on_wall = walk.fixup_tz is not None  # a fixed-time cron
    prev = start.astimezone(UTC)  # in UTC: a comparison within one zone ignores fold
    steady = _Steady(zone)
    while True:
        try:
            at = next(walk).astimezone(UTC)
            ahead = at < prev if reverse else at > prev
            if on_wall or (ahead and steady.holds(prev, at, reverse)):
                if not ahead:
                    continue
                tick: datetime | None = at
            else:  # the offset changed on cronsim's way, or it went back (and round)
                tick, at = _next_by_minutes(walk, zone, prev, at if ahead else None, reverse)
                walk = CronSim(cron, at.astimezone(zone), reverse=reverse)
        except OverflowError:
            return
        if tick is not None:
            yield tick
        prev = at


def _next_by_minutes(
    cron: CronSim, zone: tzinfo, prev: datetime, bound: datetime | None, back: bool
) -> tuple[datetime | None, datetime]:
    """The cron's next tick after `prev` up to `bound` (a day on without one) walked a
    minute at a time, and where the walk got to. cronsim starts again from there: in
    Chatham, where 03:45 goes back to 02:45, '* */3 * * *' went from 02:48 (the second
    copy) back to 03:00 (the first) over and over, and next_tick never returned."""
    if bound is None:
        bound = prev - _DAY if back else prev + _DAY
    tick = next(_minutes(cron, zone, prev, bound, back), None)
    return tick, bound if tick is None else tick


class _Steady:
    """A stretch of UTC time the zone's offset was seen not to change in, grown as a walk
    goes, so that a tick costs one reading of the offset, as cronsim's own steps do."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.offset: timedelta | None = None  # no stretch yet
        self.lo = self.hi = _EDGE_LOW

    def holds(self, prev: datetime, at: datetime, back: bool) -> bool:
        """Whether the offset stays one from `prev` to `at`, and in the three hours
        before `prev` (after it, `back`) where cronsim's walk goes too: it sets the
        minute to 0 (59) in a repeated hour's second copy, which is in its first."""
        near = _BEHIND if _EDGE_LOW < prev < _EDGE_HIGH else timedelta(0)  # no overflow
        lo, hi = (at, prev + near) if back else (prev - near, at)
        if self.offset is None or hi < self.lo or lo > self.hi:
            self.offset, self.lo, self.hi = lo.astimezone(self.zone).utcoffset(), lo, lo
        if self._same(self.hi, hi) and self._same(self.lo, lo):
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
            return True
        self.offset = None
        return False

    def _same(self, edge: datetime, to: datetime) -> bool:
        """Whether the offset at `to` is the stretch's, read a day apart on the way from
        its `edge` (a cron ticking once a year sees the offset change and change back)."""
        if self.lo <= to <= self.hi:
            return True
        step = _DAY if to > edge else -_DAY
        while abs(to - edge) > _DAY:
            edge += step
            if edge.astimezone(self.zone).utcoffset() != self.offset:
                return False
        return to.astimezone(self.zone).utcoffset() == self.offset


def _minutes(
    cron: CronSim, zone: tzinfo, prev: datetime, at: datetime, back: bool
) -> Iterator[datetime]:
    """The cron's ticks after `prev` up to `at` (before `prev` down to `at`, `back`),
    each UTC minute read in `zone`: a wall time that exists ticks, in both copies of a
    repeated hour; one a jump forward skipped does not (cronsim's tick at a skipped
    midnight read as the hour after it, which the cron may not have)."""
    u = (prev - _TINY if back else prev + _MINUTE).replace(second=0, microsecond=0)
    while u >= at if back else u <= at:
        wall = u.astimezone(zone)
        if _matches(cron, wall):
            yield u
        u = _onward(cron, zone, u, wall, back)


def _matches(cron: CronSim, wall: datetime) -> bool:
    return (
        wall.minute in cron.minutes
        and wall.hour in cron.hours
        and wall.month in cron.months
        and cron.match_day(wall.date())
    )


def _onward(cron: CronSim, zone: tzinfo, u: datetime, wall: datetime, back: bool) -> datetime:
    """The minute after `u` (read as `wall`), or before it `back`; past the rest of a day
    or an hour the cron has not, unless the offset changes within that hour."""
    step = -_MINUTE if back else _MINUTE
    if wall.month not in cron.months or not cron.match_day(wall.date()):
        day = wall.date() if back else wall.date() + _DAY
        edge = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        edge += step if back else timedelta(0)
    elif wall.hour not in cron.hours:
        edge = u + (-(wall.minute + 1) if back else 60 - wall.minute) * _MINUTE
        if edge.astimezone(zone).utcoffset() != wall.utcoffset():
            return u + step
    else:
        return u + step
    return min(edge, u + step) if back else max(edge, u + step)
