"""A command agent that ends while a child it started still holds its pipes, or that
never reads its prompt (real processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tether.agents.backends import AgentEvent, CommandBackend, TurnRequest, TurnResult

MESSAGE = """echo '{"type": "message", "text": "started the dev server"}'"""


async def _turn(command: str, ws: Path, *, prompt: str = "x", silence: float = 20) -> TurnResult:
    async def on_event(_: AgentEvent) -> None:
        return None

    request = TurnRequest(prompt, ws, 1, 1, None, {}, silence_timeout=silence)
    # a bound on a hang (the bug), not a timing the test depends on
    return await asyncio.wait_for(CommandBackend(command).run_turn(request, on_event), 90)


async def test_an_exit_is_seen_while_a_background_child_holds_stdout(tmp_path: Path) -> None:
    """An agent that starts a server in the background (its stdout inherited) and exits
    0 without a result line: before, the turn waited for the end of stdout, which the
    server held, and failed "turn_timeout: no output for 20s" a full silence timeout
    later (an hour by default); now the exit completes the turn."""
    result = await _turn(f"cat >/dev/null; sleep 300 & {MESSAGE}; exit 0", tmp_path)
    assert result == TurnResult("completed", None)


async def test_a_failed_exit_keeps_its_stderr_while_a_child_holds_the_pipes(
    tmp_path: Path,
) -> None:
    """The same with a failing exit: the failure names the exit code and stderr's tail
    (before: a turn_timeout, the agent's last words lost)."""
    command = f"cat >/dev/null; sleep 300 & {MESSAGE}; echo 'tests failed' >&2; exit 3"
    result = await _turn(command, tmp_path)
    assert result == TurnResult("failed", None, error="process_exit: exited 3: tests failed")


async def test_an_agent_that_never_reads_a_large_prompt_still_times_out(tmp_path: Path) -> None:
    """A prompt larger than a pipe holds (an issue with a pasted log), and an agent hung
    before reading it: before, the dispatcher waited forever writing the prompt, and
    the silence timeout never started; now the turn fails on it."""
    result = await _turn("exec sleep 300", tmp_path, prompt="log line\n" * 100_000, silence=1)
    assert result == TurnResult("failed", None, error="turn_timeout: no output for 1s")
