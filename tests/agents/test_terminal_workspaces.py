"""Races between a tick and an issue run, forced with gates (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

import tether
import tether.worker
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually

HANG = 60  # seconds: a bound for a deadlock, never a measure of speed


def _config(tmp: Path) -> tether.agents.WorkflowFile:
    return parse_workflow(_workflow_text(tmp), path=tmp / "WORKFLOW.md")


def _workflow_text(tmp: Path) -> str:
    return f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 1, max_retries: 3, stall_timeout_ms: 0}}
---
Work on {{{{ issue.identifier }}}}
"""


class GatedTracker(MemoryTracker):
    """A memory tracker whose next `fetch_issues_by_ids`, once `arm`ed, reads the
    issues, then holds its answer until `release` is set."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        super().__init__(issues)
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        found = await super().fetch_issues_by_ids(ids)
        if self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        return found


@pytest.fixture
async def app(database_url: str) -> tether.App:
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


async def test_an_issue_closed_while_its_due_retry_rechecks_it_loses_its_workspace(
    app: tether.App, tmp_path: Path
) -> None:
    """The retry timer fired and the run, driven, asked the tracker about its issue; the
    issue closed and a tick cancelled the run before that answer came. The tick leaves
    the removal to the run's driver (it is running), which only removed a workspace when
    cancelled inside an attempt: the closed issue's workspace stayed behind."""
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    tracker = GatedTracker([Issue(id="R-1", identifier="R-1", title="t", state="todo")])
    backend = MockBackend([{"result": "failed", "message": "tests fail"}, {}])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    ws = tmp_path / "ws" / "R-1"
    [row] = await d.status()
    assert row.phase == "retrying" and ws.is_dir()
    clock.advance(10)
    await app.afire_due_timers()
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    [job] = await host.aclaim(1)
    tracker.armed = True  # the run's re-check reads "todo", then waits
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await asyncio.wait_for(tracker.entered.wait(), HANG)
    tracker.set_state("R-1", "done")
    report = await d.tick()
    assert report.stopped == ["agent:memory:R-1"]
    tracker.release.set()
    await asyncio.wait_for(driving, HANG)
    assert (await app.aget_run("agent:memory:R-1")).status.value == "cancelled"
    assert len(backend.requests) == 1  # no attempt started after the cancel
    assert not ws.exists()


async def test_a_tick_never_removes_the_workspace_of_a_run_claimed_while_it_cancels(
    app: tether.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick read the closed issue's run as queued, so it was to remove the workspace
    itself; a worker claimed the run before the cancel landed and its agent was at work.
    The tick removed the workspace under that agent (`before_remove` ran while it
    worked), and the driver's `after_run` then ran in a folder no longer there."""
    hooks = (
        'hooks: {after_run: "touch ../in_after_run; while [ ! -f ../go ]; do sleep 0.05; '
        'done; echo after >> ../after.log", before_remove: "echo removed >> ../removed.log"}'
    )
    config = parse_workflow(
        _workflow_text(tmp_path).replace("agent:", hooks + "\nagent:", 1),
        path=tmp_path / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="C-1", identifier="C-1", title="t", state="todo")])
    backend = MockBackend([{"block": HANG}])
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    assert (await d.tick()).dispatched == ["C-1"]  # queued, not yet driven
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    cancel_run = app.store.cancel_run
    driving: list[asyncio.Future[object]] = []

    async def claimed_first(workflow_id: str, **kw: object) -> list[str]:
        [job] = await host.aclaim(1)  # after the tick read the run, before its cancel
        driving.append(asyncio.ensure_future(host.ahandle_job(job)))
        await eventually(lambda: len(backend.requests) == 1, timeout=HANG)
        return await cancel_run(workflow_id, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(app.store, "cancel_run", claimed_first)
    tracker.set_state("C-1", "done")
    assert (await d.tick()).stopped == ["agent:memory:C-1"]
    logs = tmp_path / "ws"
    assert not (logs / "removed.log").exists()  # the tick left it to the driver
    await eventually(lambda: (logs / "in_after_run").exists(), timeout=HANG)
    (logs / "go").touch()
    await asyncio.wait_for(driving[0], HANG)
    assert (logs / "after.log").read_text() == "after\n"
    assert (logs / "removed.log").read_text() == "removed\n"  # once, by the driver
    assert not (logs / "C-1").exists()
