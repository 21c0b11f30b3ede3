"""A turn that is over leaves no process of its agent's group: not only the agent's
shell, but the tools it started (real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from tether.agents.backends import AgentEvent, CommandBackend, TurnRequest
from tether.testing import eventually

from .._procs import alive

# a tool the agent started (a compiler, a test run) that is slow to die: freeing the
# 256 MB it wrote takes the kernel a while after SIGKILL, long after the agent's shell
# was reaped; its output goes to a file, so no pipe of the agent's waits for it
AGENT = """
import json, os, subprocess, sys, time
sys.stdin.read()
tool = "import os, time; held = b'x' * (256 << 20); open('tool.pid', 'w').write(str(os.getpid())); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", tool], stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not os.path.exists("tool.pid") or not open("tool.pid").read():
    time.sleep(0.01)
how = sys.argv[1]
if how == "result":  # reports its result, then lingers
    print(json.dumps({"type": "result", "status": "completed", "message": "done"}), flush=True)
elif how == "exit":  # exits, its tool left running in the background
    sys.exit(3)
print(json.dumps({"type": "message", "text": "working"}), flush=True)
time.sleep(600)  # silent from here: the silence timeout, or a cancel, ends it
"""


async def _ignore(_: AgentEvent) -> None:
    return None


async def _turn(ws: Path, how: str) -> str:
    """The turn's status, or "cancelled" for one cancelled once its tool runs (as a
    stopped run, a stall, or its step cancelled by a dispatcher shutting down do)."""
    (ws / "agent.py").write_text(AGENT)
    backend = CommandBackend(f"{sys.executable} agent.py {how}")
    # only the silent agent waits for its silence timeout; it starts with the turn, and
    # a busy machine took more than a second to start the tool (256 MB), so a turn
    # meant to end on its result or its exit failed silent first
    silence = 5 if how == "silent" else 600
    request = TurnRequest("x", ws, 1, 1, None, {}, silence_timeout=silence)
    # bounded: a bound on a hang, not a timing the test depends on
    turn = asyncio.ensure_future(asyncio.wait_for(backend.run_turn(request, _ignore), 90))
    if how == "cancelled":
        pid = ws / "tool.pid"
        await eventually(lambda: pid.exists() and pid.read_text() != "", timeout=60)
        turn.cancel()
    try:
        return (await turn).status
    except asyncio.CancelledError:
        return "cancelled"


@pytest.mark.parametrize(
    ("how", "status"),
    [
        ("result", "completed"),  # ends on its result line, then is killed
        ("exit", "failed"),  # its shell exited 3, the tool left behind
        ("silent", "failed"),  # the silence timeout
        ("cancelled", "cancelled"),
    ],
)
async def test_a_turn_returns_once_no_process_of_its_group_is_left(
    tmp_path: Path, how: str, status: str
) -> None:
    """Before: the turn killed the group but waited only for the agent's shell, so it
    returned while a tool the agent started still ran and could write in a workspace
    handed to the next attempt or removed; now it returns once the group is gone."""
    pid = tmp_path / "tool.pid"
    try:
        assert await _turn(tmp_path, how) == status
        # no polling: the turn itself must have waited the group out (a zombie,
        # which this machine's init may never reap, is dead and counts as gone)
        assert not alive(int(pid.read_text()))
    finally:
        if pid.exists() and pid.read_text():  # a failing run's tool: its memory back at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGKILL)
