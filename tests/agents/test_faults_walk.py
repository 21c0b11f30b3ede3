"""The dispatcher under faults as an operator meets them (a second walk): a tracker
that says "slow down" in the other shapes HTTP allows, over a real local server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.agents import Dispatcher, TrackerError
from tether.agents.trackers import GitHubTracker
from tether.agents.trackers._http import rate_limit_wait

from .trackers._servers import Answer, FakeGitHub, github_workflow, served


class _Limiting(FakeGitHub):
    """GitHub, answering the next request with `limit_next` (status, headers, message)."""

    def __init__(self) -> None:
        super().__init__()
        self.limit_next: tuple[int, dict[str, str], str] | None = None

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        if self.limit_next is not None:
            (status, limit, message), self.limit_next = self.limit_next, None
            return status, limit, {"message": message}
        return super().answer(method, path, headers, body)


@pytest.fixture
def limiting() -> Iterator[_Limiting]:
    yield from served(_Limiting())


def _tracker(fake: FakeGitHub) -> GitHubTracker:
    return GitHubTracker("acme/api", fake.token, endpoint=fake.base, states=("open",))


def _in_an_hour() -> str:
    return formatdate(time.time() + 3600, usegmt=True)


def test_a_retry_after_date_is_read_as_the_wait_it_names() -> None:
    """RFC 9110's ``Retry-After: <HTTP date>`` (what proxies and CDNs send) was not a
    number, so it was ignored: a 429 waited the default minute, not the hour asked."""
    now = 1_800_000_000.0
    date = formatdate(now + 600, usegmt=True)
    assert rate_limit_wait(429, {"retry-after": date}, now=now) == 600
    assert rate_limit_wait(403, {"retry-after": date}, now=now) == 600
    assert rate_limit_wait(429, {"retry-after": "soon"}, now=now) == 60  # unreadable: default


async def test_a_429_with_a_date_cools_down_until_that_date(limiting: _Limiting) -> None:
    limiting.add(1, "one")
    limiting.limit_next = (429, {"retry-after": _in_an_hour()}, "Too Many Requests")
    with pytest.raises(TrackerError) as err:
        await _tracker(limiting).fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_rate_limited"
    assert err.value.retry_after is not None and err.value.retry_after > 3000


async def test_a_403_with_a_retry_after_date_is_a_rate_limit_not_a_bad_token(
    limiting: _Limiting,
) -> None:
    """Before: "HTTP 403 ... does tracker.api_key have access to it?", no cooldown,
    and every tick asked the limited API again."""
    limiting.add(1, "one")
    limiting.limit_next = (403, {"retry-after": _in_an_hour()}, "Forbidden")
    with pytest.raises(TrackerError) as err:
        await _tracker(limiting).fetch_issues_by_states(["open"])
    assert err.value.code == "tracker_rate_limited" and "api_key" not in str(err.value)


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_retry_after_that_is_no_finite_number_waits_the_default(value: str) -> None:
    assert rate_limit_wait(429, {"retry-after": value}, now=0.0) == 60


async def test_a_tick_meeting_an_infinite_retry_after_cools_down_a_minute(
    database_url: str, tmp_path: Path, limiting: _Limiting
) -> None:
    """``Retry-After: inf`` from a broken proxy made a cooldown that could not be
    stored: the tick raised instead of reporting the tracker's answer."""
    app = tether.App(database_url, clock=tether.FakeClock())
    try:
        d = Dispatcher(app, github_workflow(limiting, tmp_path))
        limiting.add(1, "one")
        limiting.limit_next = (429, {"retry-after": "inf"}, "Too Many Requests")
        report = await d.tick()
        assert not report.ok and report.dispatched == []
        assert any("rate limited" in e for e in report.errors)
        until = await d.tracker_cooldown()
        assert until is not None and until - app.clock.now() <= timedelta(seconds=60)
    finally:
        await app.aclose()
