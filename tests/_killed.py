"""A child process SIGKILLed at a chosen point: the crash half of a crash test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tether.testing import eventually

from ._env import child_pythonpath


async def killed_once_marked(script: Path, marker: Path, *args: str) -> None:
    """Run `script` with `args` in a child process until it creates `marker` (inside the
    step to be cut short, say), then SIGKILL it; its output is kept beside the script."""
    log = script.with_suffix(".log")
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )

    def marked() -> bool:
        assert proc.poll() is None, f"child exited early: {log.read_text()}"
        return marker.exists()

    try:
        await eventually(marked, timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == -signal.SIGKILL
