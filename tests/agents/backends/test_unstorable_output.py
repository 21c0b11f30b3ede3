"""What a command agent prints that no database stores (a NUL, a lone surrogate),
through the dispatcher on SQLite and PostgreSQL, with real agent processes."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tether.App]:
    the_app = tether.App(database_url, clock=tether.FakeClock())
    yield the_app
    await the_app.aclose()


def _dispatcher(app: tether.App, tmp: Path, script: str) -> tuple[Dispatcher, MemoryTracker]:
    (tmp / "agent.py").write_text(script)
    config = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: command, command: "{sys.executable} {tmp / "agent.py"}", max_turns: 1}}
---
Work on {{{{ issue.identifier }}}}
""",
        path=tmp / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="U-1", identifier="U-1", title="t", state="todo")])
    return Dispatcher(app, config, tracker=tracker), tracker


async def test_nul_and_lone_surrogates_in_agent_lines_do_not_fail_the_run(
    app: tether.App, tmp_path: Path
) -> None:
    """An agent whose JSON lines carry ``\\u0000`` or half an emoji (``\\ud83d``, as a
    tool cutting UTF-16 text writes), or a raw NUL in a plain line: before, the turn's
    result could not be stored ("contains a NUL character", "a lone surrogate")
    and the run ended failed for good, the issue never handed
    off. Now they are U+FFFD and the turn completes."""
    lines = [
        json.dumps({"type": "message", "text": "a\u0000b"}),
        "plain \x00 line",
        json.dumps({"type": "result", "message": "done \ud83d", "session_id": "s\u0000"}),
    ]
    script = "import sys\nsys.stdin.read()\n" + "".join(
        f"sys.stdout.write({line + chr(10)!r})\n" for line in lines
    )
    d, tracker = _dispatcher(app, tmp_path, script)
    report = await d.run_once()
    assert report.ok, report.failed
    assert tracker.issues["U-1"].state == "review"
    run = await app.aget_run("agent:memory:U-1")
    assert run.status.value == "completed", run.error


async def test_a_nul_in_a_failed_agents_stderr_is_retried_not_a_failed_run(
    app: tether.App, tmp_path: Path
) -> None:
    """An agent that fails with binary on its stderr: before, its error (the stderr
    tail) could not be stored and the run ended failed, with no back-off
    and a storage message instead of the agent's; now it waits for its retry, the
    tail readable."""
    script = "import sys\nsys.stdin.read()\nsys.stderr.write('boom\\x00\\n')\nsys.exit(2)\n"
    d, _ = _dispatcher(app, tmp_path, script)
    await d.run_once()
    [row] = await d.status()
    assert row.phase == "retrying", row
    assert row.reason is not None and "exited 2: boom\ufffd" in row.reason
