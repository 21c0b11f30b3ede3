"""A new user's walk of the dispatcher's loop: the stale-dispatch check, and `serve`
when the worker driving the issue runs cannot go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

import tether
from tether.agents import Blocker, Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker


def _config(tmp: Path) -> tether.agents.WorkflowFile:
    return parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
polling: {{interval_ms: 50}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 1}}
---
Work on {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )


class ChangingTracker(MemoryTracker):
    """The tracker as a person changes it right after a poll: each listing is
    answered, then the issue `changed` becomes what it will be when asked by id."""

    def __init__(self, issue: Issue) -> None:
        super().__init__([issue])
        self.changed: Issue | None = None

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        found = await super().fetch_issues_by_states(states)
        if self.changed is not None:
            self.put(self.changed)
        return found


@pytest.mark.parametrize(
    "change",
    [
        {"dispatchable": False},  # reassigned to somebody else (linear's `assignee`)
        {"blocked_by": (Blocker("B-9", "B-9", "todo"),)},  # a blocker added
    ],
    ids=["reassigned", "blocked"],
)
async def test_an_issue_reassigned_or_blocked_since_the_poll_is_not_dispatched_again(
    database_url: str, tmp_path: Path, change: dict[str, object]
) -> None:
    """Symphony's stale-dispatch check re-reads the issue before a new run: an issue
    that is no longer eligible then (given to somebody else, blocked) gets no agent,
    not only one that left the active states."""
    issue = Issue(id="R-1", identifier="R-1", title="t", state="todo")
    tracker = ChangingTracker(issue)
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend())
        assert (await d.run_once()).dispatched == ["R-1"]  # run 1 hands it off
        tracker.set_state("R-1", "todo")  # sent back for more work
        tracker.changed = replace(tracker.issues["R-1"], **change)  # type: ignore[arg-type]
        report = await d.tick()
        assert report.dispatched == [] and report.skipped["R-1"] == "changed since the poll"
        assert [r.run_id for r in await d.status()] == []  # no second run queued


async def test_serve_ends_with_the_error_when_its_worker_cannot_run(tmp_path: Path) -> None:
    """The worker driving the runs died (here: the database is no tether database):
    `serve` raised that error rather than polling on, logging a failed tick every
    interval, dispatching runs nobody would ever work."""
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a database at all" * 100)
    app = tether.App(f"sqlite:///{db}")
    try:
        d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker(), backend=MockBackend())
        serving = asyncio.ensure_future(d.serve())
        done, _ = await asyncio.wait({serving}, timeout=20)
        serving.cancel()  # the old code served on: cancelled, it then raised the error
        with pytest.raises(tether.IncompatibleStoreError, match="not a readable SQLite"):
            await serving
        assert done == {serving}
    finally:
        await app.aclose()


def _write(tmp: Path, agent: str, prompt: str = "Work on {{ issue.identifier }}") -> Path:
    path = tmp / "WORKFLOW.md"
    path.write_text(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done]}}
workspace: {{root: {tmp / "ws"}}}
agent: {{{agent}, max_turns: 1}}
---
{prompt}"""
    )
    return path


async def test_a_reload_naming_a_backend_that_cannot_be_built_keeps_the_last_good_config(
    database_url: str, tmp_path: Path
) -> None:
    """WORKFLOW.md edited to an api model of a provider nobody configured: valid as
    YAML, but no backend can be built from it. It is refused like an invalid edit
    (the last good config kept, the error reported, reconciliation going on); every
    tick raised instead, and no closed issue's agent was stopped."""
    path = _write(tmp_path, "backend: mock")
    tracker = MemoryTracker([Issue(id="K-1", identifier="K-1", title="t", state="todo")])
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, path, tracker=tracker)
        good = d.config().sha256
        assert (await d.tick()).dispatched == ["K-1"]
        _write(tmp_path, 'backend: api, model: "nosuch:model"')
        tracker.set_state("K-1", "done")
        report = await d.tick()
        assert report.stopped == ["agent:memory:K-1"]  # reconciled under the last good one
        broken = d.broken() or ""
        assert "nosuch" in broken and "UnknownProviderError" in broken
        assert any("no new dispatch" in e and "nosuch" in e for e in report.errors)
        assert d.config().sha256 == good and d.backend().name == "mock"
        _write(tmp_path, "backend: mock", prompt="fixed")  # fixed: it applies
        await d.tick()
        assert d.broken() is None and d.config().prompt == "fixed"


async def test_an_edit_of_the_prompt_keeps_the_agent_backend_and_its_sessions(
    database_url: str, tmp_path: Path
) -> None:
    """Only an edit of what the backend is built from builds a new one: every edit did,
    and the api backend's conversations (kept in it) were forgotten, so the next turn
    of an agent at work, or a person's answer, began a new one knowing nothing."""
    path = _write(tmp_path, "backend: mock")
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, path, tracker=MemoryTracker())
        backend, tracker = d.backend(), d.tracker()
        _write(tmp_path, "backend: mock, max_concurrent_agents: 3", prompt="a new prompt")
        assert d.reload() and d.config().prompt == "a new prompt"
        assert d.backend() is backend and d.tracker() is tracker
        _write(tmp_path, 'backend: mock, script: [{result: "failed"}]')
        assert d.reload() and d.backend() is not backend  # its own settings changed
