"""Ages and points in time as people type them: ``30m``, ``2h``, ``7d``, ``2026-12-01``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidArgumentError

__all__ = ["parse_age", "parse_when"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXAMPLES = "e.g. 45s, 30m, 2h, 7d or 2w"


def parse_age(value: timedelta | str) -> timedelta:
    """A positive age: a timedelta, or a number with a unit (s, m, h, d, w)."""
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, str) and (found := _AGE.match(value.lower())):
        age = timedelta(seconds=float(found[1]) * _UNITS[found[2]])
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
