"""A command agent that fails loudly: far too much stderr, or no such command
(real processes)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from tether.agents.backends import AgentEvent, CommandBackend, TurnRequest


async def _ignore(_: AgentEvent) -> None:
    return None


def _request(ws: Path) -> TurnRequest:
    return TurnRequest("x", ws, 1, 1, None, {}, silence_timeout=30)


async def test_huge_stderr_is_kept_to_its_tail(tmp_path: Path) -> None:
    """An agent that dumps 60 MB on stderr (a core dump's worth of logging) then fails:
    before, all of it was held in the dispatcher's memory until the turn ended; now
    only its tail is, and the failure still ends with the agent's last words."""
    command = (
        "cat >/dev/null; head -c 60000000 /dev/zero | tr '\\0' x >&2; echo ' gave up' >&2; exit 4"
    )
    tracemalloc.start()
    try:
        result = await CommandBackend(command).run_turn(_request(tmp_path), _ignore)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith("process_exit: exited 4: xxx")
    assert result.error.endswith("x gave up")
    assert peak < 20_000_000, peak


async def test_a_command_not_found_says_to_check_agent_command(tmp_path: Path) -> None:
    """Before: "process_exit: exited 127: sh: 1: claude-cdoe: not found", leaving the
    operator to know what 127 means; now it names the setting to fix."""
    result = await CommandBackend("claude-cdoe --json").run_turn(_request(tmp_path), _ignore)
    assert result.status == "failed" and result.error is not None
    assert "exited 127 (command not found: is agent.command 'claude-cdoe --json'" in result.error
    assert result.error.endswith("claude-cdoe: not found")
