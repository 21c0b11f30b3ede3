"""Retry policies: validation and capped exponential back-off with jitter."""

from __future__ import annotations

import random

import pytest

from tether import InvalidArgumentError, RetryPolicy
from tether.retry import as_policy


def test_backoff_grows_and_caps() -> None:
    p = RetryPolicy(attempts=10, backoff=1, multiplier=2, max_delay=5, jitter=0)
    assert [p.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_spreads_within_bounds() -> None:
    p = RetryPolicy(attempts=3, backoff=1, jitter=0.2)
    rng = random.Random(7)
    delays = {round(p.delay(1, rng), 6) for _ in range(50)}
    assert len(delays) > 10
    assert all(0.8 <= d <= 1.2 for d in delays)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"backoff": -1},
        {"multiplier": 0.5},
        {"jitter": 2},
        {"interrupted_reruns": -1},
    ],
)
def test_bad_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"backoff": 1e12}, "retry backoff must be a finite number >= 0 and at most a century"),
        ({"max_delay": 1e300}, "retry max_delay must be a finite number >= 0 and at most a"),
        ({"attempts": 10**100}, "retry attempts must be an integer from 1 to 1,000,000"),
    ],
)
def test_waits_a_clock_cannot_hold_are_refused_when_declared(
    kwargs: dict[str, float], says: str
) -> None:
    # before: accepted, then a FakeClock refused the sleep mid-run, or the run slept for
    # 31,700 years in its process
    with pytest.raises(InvalidArgumentError, match=says):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert RetryPolicy(backoff=86400, max_delay=86400).max_delay == 86400


def test_as_policy() -> None:
    assert as_policy(None).attempts == 1
    assert as_policy(4).attempts == 4
    with pytest.raises(InvalidArgumentError, match="int \\(attempts\\) or a RetryPolicy"):
        as_policy("3")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        as_policy(True)
