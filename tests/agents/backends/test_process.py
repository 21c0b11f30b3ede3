"""`ProcessBackend`, the loop every CLI agent runs in: how a turn ends (real processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tether.agents.backends import AgentEvent, CommandBackend, TurnRequest


async def _ignore(_: AgentEvent) -> None:
    return None


@pytest.mark.parametrize(("code", "status"), [(0, "completed"), (3, "rate_limited")])
async def test_a_rate_limit_notice_is_no_result(tmp_path: Path, code: int, status: str) -> None:
    """An agent that said it met a rate limit, then went on: a clean exit without a
    result completes its turn (no back-off, no cooldown); a failed exit is explained
    by the notice (a rate-limited turn, with its `retry_after`)."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, sys\n"
        "sys.stdin.read()\n"
        "print(json.dumps({'type': 'rate_limit', 'retry_after': 7}), flush=True)\n"
        "print(json.dumps({'type': 'message', 'text': 'waited it out'}), flush=True)\n"
        f"sys.exit({code})\n"
    )
    request = TurnRequest("x", tmp_path, 1, 1, None, {}, silence_timeout=30)
    result = await CommandBackend(f"{sys.executable} {script}").run_turn(request, _ignore)
    assert result.status == status
    assert result.retry_after == (7 if code else None)
