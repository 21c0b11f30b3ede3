"""Backends: usage deltas from totals, and the CLI agents' real JSON lines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tether.agents.backends import (
    AgentEvent,
    CommandBackend,
    TurnRequest,
    Usage,
    UsageMeter,
    parse_claude_line,
    parse_codex_line,
)
from tether.testing import eventually

from .._procs import alive


def test_session_totals_become_deltas_and_are_never_counted_twice() -> None:
    m = UsageMeter()
    assert m.feed("s", Usage(100, 10)).input_tokens == 100
    assert m.feed("s", Usage(100, 10)).total == 0  # the same total again: nothing new
    assert m.feed("s", Usage(250, 30)).input_tokens == 150
    assert m.feed("s", Usage(50, 5)).input_tokens == 50  # went down: a new session
    m.feed("t", Usage(7, 1, cumulative=False))
    assert (m.delta.input_tokens, m.delta.output_tokens) == (307, 36)


def test_claude_stream_json() -> None:
    init = parse_claude_line({"type": "system", "subtype": "init", "session_id": "abc"})
    assert init.event is not None and init.event.session_id == "abc"
    done = parse_claude_line(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "ok",
            "session_id": "abc",
            "total_cost_usd": 0.5,
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 90,
                "cache_creation_input_tokens": 5,
                "output_tokens": 7,
            },
        }
    )
    assert done.result is not None and done.result.status == "completed"
    assert done.event is not None and done.event.usage == Usage(105, 7, 90, 0.5, cumulative=False)
    limited = parse_claude_line(
        {"type": "result", "is_error": True, "result": "Claude AI usage limit reached"}
    )
    assert limited.result is not None and limited.result.status == "rate_limited"


def test_codex_exec_json() -> None:
    assert parse_codex_line({"type": "thread.started", "thread_id": "t1"}).event.session_id == "t1"  # type: ignore[union-attr]
    done = parse_codex_line(
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 5, "cached_input_tokens": 2, "output_tokens": 3},
        }
    )
    assert (
        done.result is not None
        and done.event is not None
        and done.event.usage == Usage(5, 3, 2, None, cumulative=True)
    )
    failed = parse_codex_line({"type": "turn.failed", "error": {"message": "boom"}})
    assert failed.result is not None and failed.result.status == "failed"


async def test_the_command_backend_runs_a_real_process(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, sys\n"
        "prompt = sys.stdin.read()\n"
        "print('not json')\n"
        "print(json.dumps({'type': 'heartbeat'}))\n"
        "print(json.dumps({'type': 'usage', 'input_tokens': len(prompt), 'output_tokens': 2}))\n"
        "print(json.dumps({'type': 'input_required', 'question': 'which colour?'}))\n"
    )
    seen: list[AgentEvent] = []

    async def on_event(e: AgentEvent) -> None:
        seen.append(e)

    request = TurnRequest("paint it", tmp_path, 1, 3, None, {}, silence_timeout=30)
    result = await CommandBackend(f"{sys.executable} {script}").run_turn(request, on_event)
    assert result.status == "input_required" and result.message == "which colour?"
    assert [e.kind for e in seen] == ["other_message", "heartbeat", "usage", "input_required"]
    assert [e.progress for e in seen][:2] == [True, False]
    assert seen[2].usage == Usage(8, 2)


async def test_a_failing_process_fails_the_turn_with_its_stderr(tmp_path: Path) -> None:
    request = TurnRequest("x", tmp_path, 1, 1, None, {}, silence_timeout=30)
    result = await CommandBackend("echo broken >&2; exit 4").run_turn(request, _ignore)
    assert (
        result.status == "failed"
        and result.error is not None
        and "exited 4: broken" in result.error
    )


async def _ignore(_: AgentEvent) -> None:
    return None


@pytest.mark.parametrize(
    ("last_line", "status"),
    [
        ({"type": "result", "status": "completed", "message": "done"}, "completed"),
        ({"type": "input_required", "question": "which db?"}, "input_required"),
    ],
)
async def test_a_turn_ends_on_its_result_even_if_the_agent_lingers(
    tmp_path: Path, last_line: dict[str, str], status: str
) -> None:
    """An agent that reports its result (or asks for input) and then goes on running,
    with a background child holding its output, ends its turn there: no stall, no
    silence time-out; and the whole process group is killed."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, subprocess, sys, time\n"
        "sys.stdin.read()\n"
        f"child = subprocess.Popen(['sleep', '60'])\n"  # inherits stdout
        f"open('child.pid', 'w').write(str(child.pid))\n"
        f"print(json.dumps({last_line!r}), flush=True)\n"
        "time.sleep(60)\n"
    )
    request = TurnRequest("x", tmp_path, 1, 1, None, {}, silence_timeout=30)
    result = await asyncio.wait_for(
        CommandBackend(f"{sys.executable} {script}").run_turn(request, _ignore), 25
    )
    assert result.status == status
    child = int((tmp_path / "child.pid").read_text())
    await eventually(lambda: not alive(child), timeout=60)  # SIGKILL lands in a moment


async def test_background_children_do_not_outlive_a_turn_whose_shell_exited(
    tmp_path: Path,
) -> None:
    request = TurnRequest("x", tmp_path, 1, 1, None, {}, silence_timeout=30)
    command = 'sleep 60 >/dev/null 2>&1 & echo $! > child.pid; echo \'{"type": "result"}\''
    result = await CommandBackend(command).run_turn(request, _ignore)
    assert result.status == "completed"
    await eventually(lambda: not alive(int((tmp_path / "child.pid").read_text())), timeout=60)


async def test_a_line_over_the_limit_fails_the_turn_as_malformed(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, sys\n"
        "sys.stdin.read()\n"
        "sys.stdout.write(json.dumps({'type': 'message', 'text': 'x' * (11 * 2**20)}) + '\\n')\n"
        "print(json.dumps({'type': 'result', 'status': 'completed'}), flush=True)\n"
    )
    request = TurnRequest("x", tmp_path, 1, 1, None, {}, silence_timeout=30)
    result = await CommandBackend(f"{sys.executable} {script}").run_turn(request, _ignore)
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith("malformed: an output line longer than 10 MB")
