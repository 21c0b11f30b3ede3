"""`eventually`'s own arguments: a mistaken timeout or interval says what was wrong."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import tether
from tether.testing import eventually, eventually_sync


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timeout": "5"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"interval": -1}, "interval"),
        ({"interval": float("nan")}, "interval"),
    ],
    ids=["string-timeout", "zero-timeout", "negative-interval", "nan-interval"],
)
def test_a_bad_timeout_or_interval_is_refused_naming_it(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=rf"eventually's `{named}` must be"):
        eventually_sync(lambda: True, **kwargs)


async def test_a_timedelta_timeout_counts_as_its_seconds() -> None:
    """A test that already holds a timedelta (as pass_time takes) may pass it."""
    assert await eventually(lambda: 7, timeout=timedelta(seconds=5)) == 7
    with pytest.raises(AssertionError, match=r"did not hold within 0.2s"):
        await eventually(lambda: 0, timeout=timedelta(milliseconds=200))
