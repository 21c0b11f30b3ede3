"""The dispatcher end to end on a real database: memory tracker, scripted agent."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker


def _config(tmp: Path, extra: str = "") -> tether.agents.WorkflowFile:
    text = f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
hooks: {{after_create: "echo created > created.txt", before_run: "echo run >> runs.txt"}}
agent: {{backend: mock, max_turns: 3, max_retries: 2, stall_timeout_ms: 0}}
{extra}
---
Work on {{{{ issue.identifier }}}}: {{{{ issue.title }}}}{{% if attempt %}} (attempt {{{{ attempt }}}}){{% endif %}}
"""
    return parse_workflow(text, path=tmp / "WORKFLOW.md")


def _issue(ident: str, **kw: object) -> Issue:
    return Issue(id=ident, identifier=ident, title=f"title {ident}", state="todo", **kw)  # type: ignore[arg-type]


@pytest.fixture
async def app(database_url: str) -> tether.App:
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


async def test_an_issue_runs_once_hands_off_and_its_run_ends(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("A-1"), _issue("A-2", priority=1)])
    backend = MockBackend(
        [{"files": {"out.txt": "done"}, "usage": {"input_tokens": 100, "output_tokens": 20}}] * 6
    )
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    report = await d.run_once()
    assert report.dispatched == ["A-2", "A-1"]  # priority first
    prompts = [r.prompt for r in backend.requests]
    # turn 1 gets the rendered prompt; while the issue stays active, continuation turns
    # follow up to max_turns (3); then the hand-off moves it out of the active states
    assert prompts[0] == "Work on A-2: title A-2" and prompts[3] == "Work on A-1: title A-1"
    assert prompts[1].startswith("Continuation turn #2 of 3") and len(prompts) == 6
    assert {i.state for i in tracker.issues.values()} == {"review"}
    for ident in ("A-1", "A-2"):
        run = await app.aget_run(f"agent:memory:{ident}")
        assert run.status.value == "completed"
        ws = tmp_path / "ws" / ident
        assert (ws / "out.txt").read_text() == "done"
        assert (ws / "created.txt").exists() and (ws / "runs.txt").read_text() == "run\n"
    usage = await app.ausage(run="agent:memory:A-1")
    assert usage[0].input_tokens == 100 and usage[0].output_tokens == 20
    again = await d.run_once()  # nothing active: nothing dispatched again
    assert again.dispatched == [] and len(backend.requests) == 6
