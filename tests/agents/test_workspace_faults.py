"""A workspace path that is taken by a file of the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, WorkspaceError, WorkspaceManager, parse_workflow
from tether.agents._config import HooksSettings
from tether.agents.trackers import MemoryTracker


async def test_a_file_where_the_workspace_belongs_is_refused_not_deleted(tmp_path: Path) -> None:
    """Before, `ensure` unlinked whatever file stood at ``<root>/<identifier>`` (notes
    the user kept beside the workspaces, say) and made the folder: data lost without
    a word, though only what the dispatcher created is ever removed. Now the attempt
    is refused naming the file and the fix, and the file is left as it was."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "A-1").write_text("my notes")
    with pytest.raises(WorkspaceError) as err:
        await WorkspaceManager(root, HooksSettings()).ensure("A-1")
    assert err.value.code == "workspace_not_a_folder"
    assert "is not a folder: move or remove that file" in str(err.value)
    assert (root / "A-1").read_text() == "my notes"


async def test_the_dispatcher_retries_such_an_issue_and_says_why(tmp_path: Path) -> None:
    """Through a dispatcher on a SQLite file: the attempt fails (the run waits for its
    retry, the reason naming the file) and the file survives."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "A-1").write_text("my notes")
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
workspace: {{root: {root}}}
agent: {{backend: mock, max_turns: 1}}
---
Fix {{{{ issue.identifier }}}}""",
        path=tmp_path / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="1", identifier="A-1", title="t", state="todo")])
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock()) as app:
        d = Dispatcher(app, config, tracker=tracker)
        report = await d.run_once()
        [row] = await d.status()
    assert not report.ok and row.phase == "retrying"
    assert row.reason is not None and "is not a folder" in row.reason, row
    assert (root / "A-1").read_text() == "my notes" and tracker.issues["1"].state == "todo"
