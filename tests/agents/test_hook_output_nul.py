"""A hook whose output holds a NUL byte (a binary file cat'ed, a tool's raw progress):
its failure is recorded and retried on every store, PostgreSQL included."""

from __future__ import annotations

import json
from pathlib import Path

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker


async def test_a_failing_hook_whose_output_holds_a_nul_is_retried(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: the attempt's error (the hook's output tail) could not be stored as JSON,
    and the run failed for good with NotSerializableError, never retried; now the NUL
    is U+FFFD and the attempt waits for its retry, the hook's words in its reason."""
    front = {
        "tracker": {"kind": "memory", "active_states": ["todo"]},
        "workspace": {"root": str(tmp_path / "ws")},
        "hooks": {"after_create": "printf 'clone failed\\000here'; exit 1"},
        "agent": {"backend": "command", "command": "cat >/dev/null", "stall_timeout_ms": 0},
    }
    text = f"---\n{json.dumps(front)}\n---\nFix {{{{ issue.identifier }}}}"
    wf = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    issue = Issue(id="1", identifier="ENG-1", title="T", state="todo")
    d = Dispatcher(app, wf, tracker=MemoryTracker([issue]))
    await d.run_once()
    [row] = await d.status()
    assert (row.status, row.phase) == ("waiting", "retrying")
    assert row.reason == "hook_failed: hook after_create exited 1: clone failed\ufffdhere"
