"""A rate limit asking for a wait beyond any sense (a broken proxy's
``Retry-After: 1e308``, a 400-digit number) is capped, said so, and never raises
OverflowError (a real local HTTP server, the dispatcher on a FakeClock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, TrackerError, parse_workflow
from tether.agents.backends import MockBackend, parse_command_line
from tether.agents.trackers import GitHubTracker, MemoryTracker

from .trackers._servers import FakeGitHub
from .trackers.test_github import _workflow

HUGE = ["1e308", "9" * 400]
MAX_RETRY_AFTER = 86_400.0  # a day: the longest wait a rate limit may ask


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tether.App]:
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


@pytest.mark.parametrize("header", HUGE)
async def test_a_huge_retry_after_is_capped_and_named(github: FakeGitHub, header: str) -> None:
    github.rate_limit_next = {"retry-after": header}
    tracker = GitHubTracker("acme/api", github.token, endpoint=github.base, states=("open",))
    with pytest.raises(TrackerError) as err:
        await tracker.fetch_issues_by_states(["open"])
    assert err.value.retry_after == MAX_RETRY_AFTER
    assert f"rate limited for {MAX_RETRY_AFTER:.0f} s" in str(err.value)
    assert "capped" in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("header", HUGE)
async def test_the_dispatcher_cools_down_for_the_cap_not_forever(
    app: tether.App, github: FakeGitHub, tmp_path: Path, header: str
) -> None:
    """Before: ``1e308`` raised out of the tick (OverflowError on SQLite, "timestamp
    out of range" on PostgreSQL: the cooldown's expiry), and a 400-digit number
    (beyond a float) was taken for no header at all: a minute."""
    github.add(1, "Fix the typo", labels=("agent",))
    d = Dispatcher(app, _workflow(github, tmp_path), backend=MockBackend([{}]))
    github.rate_limit_next = {"retry-after": header}
    limited = await d.tick()
    assert any("capped" in e for e in limited.errors), limited.errors
    until = await d.tracker_cooldown()
    assert until is not None and until - app.clock.now() == timedelta(seconds=MAX_RETRY_AFTER)
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    clock.advance(MAX_RETRY_AFTER + 1)
    again = await d.tick()
    assert again.errors == [] and again.dispatched == ["api#1"]


@pytest.mark.parametrize("wait", [1e308, 10**400])
def test_an_agent_asking_for_a_huge_wait_is_capped(wait: float) -> None:
    """A command agent's ``rate_limit`` line: ``10**400`` raised OverflowError in
    ``float()``, ``1e308`` made a retry delay in ms that overflowed ``int()``."""
    parsed = parse_command_line({"type": "rate_limit", "retry_after": wait})
    assert parsed.result is not None
    assert parsed.result.retry_after == MAX_RETRY_AFTER


async def test_an_agent_rate_limited_for_ages_retries_after_the_cap(
    app: tether.App, tmp_path: Path
) -> None:
    """Any backend's (a user's too) ``retry_after`` is capped before it becomes the
    retry's delay in ms: before, 1e308 raised OverflowError in ``int()`` and the run
    failed instead of waiting."""
    tracker = MemoryTracker([Issue(id="R-1", identifier="R-1", title="t", state="open")])
    backend = MockBackend([{"result": "rate_limited", "retry_after": 1e308}])
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [open], terminal_states: [closed]}}
workspace: {{root: {tmp_path / "ws"}}}
agent: {{backend: mock, max_turns: 1, stall_timeout_ms: 0}}
---
Fix {{{{ issue.identifier }}}}""",
        path=tmp_path / "WORKFLOW.md",
    )
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    report = await d.run_once()
    assert report.failed == [], report
    [row] = await d.status()
    assert row.phase == "retrying" and row.due_at is not None
    due = datetime.fromisoformat(row.due_at) - app.clock.now()
    assert due == timedelta(seconds=MAX_RETRY_AFTER)
