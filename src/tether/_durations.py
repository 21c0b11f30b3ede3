"""Durations: ages and points in time as people type them (``30m``, ``2h``, ``7d``,
``2026-12-01``), and seconds as code passes them, checked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidArgumentError

__all__ = [
    "LAST_DUE",
    "MAX_SECONDS",
    "check_seconds",
    "due_after",
    "due_at",
    "parse_age",
    "parse_when",
    "seconds_of",
]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXAMPLES = "e.g. 45s, 30m, 2h, 7d or 2w"
MAX_SECONDS = 100 * 366 * 24 * 3600.0  # a century: beyond it a datetime soon overflows
# The last moment a wait is recorded due at: the last whole second of the year 9999 in UTC.
# A later one (``datetime.max``) is past what SQLite, keeping unix seconds as a float, reads
# back: the wait was refused with a bare "ValueError: year 10000 is out of range".
LAST_DUE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)


def seconds_of(value: Any) -> Any:
    """`value` in seconds if it is a `timedelta` (a wait of days reads best as one),
    else as given, for the checks that follow to judge."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def check_seconds(what: str, value: object, *, positive: bool = False) -> float:
    """`value` as seconds (0, or above 0 if `positive`, to a century); else a clear error.
    A `timedelta` counts as its seconds. NaN, infinities, strings and booleans are
    refused: a NaN deadline never comes, an infinite one overflows a datetime."""
    value = seconds_of(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_SECONDS  # also refuses NaN
        or (positive and value == 0)
    ):
        low = "above 0" if positive else "from 0"
        raise InvalidArgumentError(
            f"{what} must be a number of seconds {low} to {MAX_SECONDS:.0f} (a century) or "
            f"a timedelta, got {value!r}; pass e.g. 60 or timedelta(days=2)"
        )
    return float(value)


def due_at(when: datetime) -> datetime:
    """`when` (timezone-aware) as the UTC moment a wait is recorded due at: one past
    `LAST_DUE` is due then (as good as never), one before the year 1 in UTC at its
    first moment (long past: due at once). Such a moment failed the run with a bare
    ValueError on SQLite and a StoreError ("timestamp too large") on PostgreSQL."""
    try:
        utc = when.astimezone(UTC)
    except OverflowError:  # within a day of datetime's ends: its offset carries it out
        return LAST_DUE if when.year > 1 else _FIRST
    return min(utc, LAST_DUE)


def due_after(now: datetime, seconds: float) -> datetime:
    """`seconds` after `now`, held to `LAST_DUE`: a clock near the end of the year 9999
    (a FakeClock) failed a wait's timeout with a bare "OverflowError: date value out of
    range"."""
    try:
        return due_at(now + timedelta(seconds=seconds))
    except OverflowError:
        return LAST_DUE


def parse_age(value: timedelta | str) -> timedelta:
    """A positive age: a timedelta, or a number with a unit (s, m, h, d, w)."""
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, str) and (found := _AGE.match(value.lower())):
        try:
            age = timedelta(seconds=float(found[1]) * _UNITS[found[2]])
        except OverflowError:  # before: a bare "int too large to convert to float"
            raise InvalidArgumentError(
                f"the age {value!r} is longer than any calendar holds; give one of at most "
                f"{timedelta.max.days:,} days"
            ) from None
    else:
        raise InvalidArgumentError(f"cannot read {value!r} as an age; {_EXAMPLES}")
    if age <= timedelta(0):
        raise InvalidArgumentError(f"an age must be more than zero, got {value!r}")
    return age


def parse_when(value: str, now: datetime) -> datetime:
    """A point in time: an age before `now` (``2h``), a date (``2026-12-01``, local
    midnight) or an ISO datetime (local time unless it names its zone)."""
    if _AGE.match(value.lower()):
        return now - parse_age(value)
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"cannot read {value!r} as a time; give a date (2026-12-01), a date and time "
            f"(2026-12-01T09:30, 2026-12-01T09:30+02:00) or an age ({_EXAMPLES})"
        ) from None
    if at.tzinfo is None:
        at = at.astimezone()  # the reader's clock, as the tables show it
    return at.astimezone(UTC)
