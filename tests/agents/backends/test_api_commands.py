"""The api agent's `run_command` tool with commands that misbehave: a daemon left
holding its output, and output far larger than the model is shown."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from tests.ai._server import ProviderServer
from tether.agents.backends import ApiBackend

from .test_api_backend import _providers, _sent, _turn


async def test_a_daemon_the_command_started_does_not_hold_the_answer_up(
    tmp_path: Path, server: ProviderServer
) -> None:
    """A command that starts a server in a new session (``setsid``) and exits 0 at
    once: before, its still-open output pipe kept the tool waiting past the timeout,
    and the model was told "killed after 1 s" about a command that had succeeded;
    now it gets the exit code and the output."""
    server.queue_chat(
        "", tool_calls=[("run_command", {"command": "setsid sleep 30 & echo started"})]
    )
    server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini", command_timeout=10)
    result, _ = await _turn(backend, tmp_path)
    answer = _sent(server, "/v1/chat/completions")[1]["messages"][-1]["content"]
    assert answer == "exit code 0\nstarted\n" and result.status == "completed"


async def test_huge_command_output_is_cut_to_its_tail_without_holding_it(
    tmp_path: Path, server: ProviderServer
) -> None:
    """60 MB of output: before, all of it was read into the dispatcher's memory (a
    `yes` for the full command timeout could exhaust it) and cut afterwards; now it
    is written to a file and only its tail is read back."""
    command = "head -c 60000000 /dev/zero | tr '\\0' a; echo; echo the end"
    server.queue_chat("", tool_calls=[("run_command", {"command": command})])
    server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini", max_output=1000)
    tracemalloc.start()
    try:
        result, _ = await _turn(backend, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    answer = _sent(server, "/v1/chat/completions")[1]["messages"][-1]["content"]
    assert answer.startswith("exit code 0\n[... 59999009 bytes cut]\n")
    assert answer.endswith("a\nthe end\n") and result.status == "completed"
    assert peak < 20_000_000, peak
