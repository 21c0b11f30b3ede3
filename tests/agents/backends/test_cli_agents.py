"""The claude and codex backends driven through fake CLIs: executable scripts that
speak the real ``--output-format stream-json`` / ``exec --json`` lines, run as
subprocesses by a dispatcher; each turn's usage is recorded once, as a delta."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker

FAKE_CLAUDE = r"""
import json, os, sys, uuid
args = sys.argv[1:]
log = os.environ["FAKE_AGENT_LOG"]
prompt = sys.stdin.read()
session = args[args.index("--resume") + 1] if "--resume" in args else str(uuid.uuid4())
with open(log, "a") as f:
    f.write(json.dumps({"args": args, "prompt": prompt, "cwd": os.getcwd()}) + "\n")
def say(**line):
    print(json.dumps(line), flush=True)
turn = sum(1 for _ in open(log))
usage = {"input_tokens": 3, "cache_creation_input_tokens": 100 * turn,
         "cache_read_input_tokens": 1000, "output_tokens": 40 * turn}
say(type="system", subtype="init", session_id=session, cwd=os.getcwd(), model="claude-sonnet-4-5",
    tools=["Bash", "Edit"], permissionMode="bypassPermissions", apiKeySource="none")
message = {"id": f"msg_{turn}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "text", "text": f"working on turn {turn}"}],
           "usage": usage, "stop_reason": None}
say(type="assistant", message=message, parent_tool_use_id=None, session_id=session)
tool = dict(message, content=[{"type": "tool_use", "id": "t1", "name": "Edit", "input": {}}])
say(type="assistant", message=tool, parent_tool_use_id=None, session_id=session)  # same usage again
say(type="user", message={"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
    "content": "ok"}]}, parent_tool_use_id=None, session_id=session)
open("claude.txt", "a").write(f"turn {turn}\n")
say(type="result", subtype="success", is_error=False, duration_ms=1200, duration_api_ms=1100,
    num_turns=2, result=f"done with turn {turn}", session_id=session,
    total_cost_usd=0.01 * turn, usage=usage)
"""

FAKE_CODEX = r"""
import json, os, sys, uuid
args = sys.argv[1:]
assert args[:3] == ["exec", "--json", "--skip-git-repo-check"], args
log = os.environ["FAKE_AGENT_LOG"]
prompt = sys.stdin.read()
thread = args[args.index("resume") + 1] if "resume" in args else str(uuid.uuid4())
with open(log, "a") as f:
    f.write(json.dumps({"args": args, "prompt": prompt}) + "\n")
totals = os.path.join(os.path.dirname(log), f"thread-{thread}.json")
seen = json.load(open(totals)) if os.path.exists(totals) else {"input_tokens": 0,
    "cached_input_tokens": 0, "output_tokens": 0}
seen = {"input_tokens": seen["input_tokens"] + 2000, "cached_input_tokens":
        seen["cached_input_tokens"] + 500, "output_tokens": seen["output_tokens"] + 300}
json.dump(seen, open(totals, "w"))
def say(**line):
    print(json.dumps(line), flush=True)
say(type="thread.started", thread_id=thread)
say(type="turn.started")
say(type="item.started", item={"id": "item_0", "type": "command_execution", "command": "ls",
    "aggregated_output": "", "exit_code": None, "status": "in_progress"})
say(type="item.completed", item={"id": "item_0", "type": "command_execution", "command": "ls",
    "aggregated_output": "README\n", "exit_code": 0, "status": "completed"})
say(type="item.completed", item={"id": "item_1", "type": "agent_message", "text": "edited"})
say(type="turn.completed", usage=seen)  # the thread's running total, as codex reports it
"""


def _script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tether.App]:
    the_app = tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


async def _run(app: tether.App, tmp: Path, backend: str, body: str) -> list[dict[str, object]]:
    log = tmp / "agent.log"
    os.environ["FAKE_AGENT_LOG"] = str(log)
    cli = _script(tmp, backend, body)
    wf = parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: {backend}, command: "{cli}", max_turns: 2, stall_timeout_ms: 0}}
---
Fix {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )
    tracker = MemoryTracker([Issue(id="1", identifier="ENG-1", title="Typo", state="todo")])
    d = Dispatcher(app, wf, tracker=tracker)
    await d.run_once()
    assert tracker.issues["1"].state == "review"
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_claude_stream_json_through_a_real_process(
    app: tether.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_LOG", "")
    calls = await _run(app, tmp_path, "claude", FAKE_CLAUDE)
    assert len(calls) == 2 and calls[0]["prompt"] == "Fix ENG-1"
    assert "--output-format" in calls[0]["args"] and "--resume" not in calls[0]["args"]
    first_session = calls[1]["args"][calls[1]["args"].index("--resume") + 1]  # type: ignore[union-attr]
    assert str(calls[1]["prompt"]).startswith("Continuation turn #2 of 2")
    assert calls[0]["cwd"] == str(tmp_path / "ws" / "ENG-1")
    assert (tmp_path / "ws" / "ENG-1" / "claude.txt").read_text() == "turn 1\nturn 2\n"
    usage = await app.alist_ai_calls("agent:memory:ENG-1")
    # each turn once: the result's totals of its own process, not the assistant
    # messages' repeated per-call usage, not the previous turn's again
    assert [(u.input_tokens, u.cached_input_tokens, u.output_tokens) for u in usage] == [
        (1103, 1000, 40),
        (1203, 1000, 80),
    ]
    assert [u.cost_micro_usd for u in usage] == [10_000, 20_000]
    assert all(u.provider == "claude" and u.call_type == "agent" for u in usage)
    assert len(first_session) == 36


async def test_codex_exec_json_through_a_real_process(
    app: tether.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_LOG", "")
    calls = await _run(app, tmp_path, "codex", FAKE_CODEX)
    assert len(calls) == 2 and calls[0]["args"][-1] == "-"  # type: ignore[index]
    assert "resume" in calls[1]["args"]  # type: ignore[operator]
    usage = await app.alist_ai_calls("agent:memory:ENG-1")
    # codex reports the thread's running total (2,300 then 4,600): recorded as deltas
    assert [(u.input_tokens, u.cached_input_tokens, u.output_tokens) for u in usage] == [
        (2000, 500, 300),
        (2000, 500, 300),
    ]
    assert sum(u.input_tokens + u.output_tokens for u in usage) == 4600
