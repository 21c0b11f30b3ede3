"""examples/approval.py as a reader runs it: each command a process of its own, in
any order, answered with a line that says what to do next, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._env import child_pythonpath

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "approval.py"


def _approval(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env["PYTHONPATH"] = child_pythonpath()
    return subprocess.run(
        [sys.executable, "examples/approval.py", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_command_says_what_to_do_in_any_order(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "approval.py")

    for early in ("status", "approve"):  # before any start
        done = _approval(tmp_path, early)
        assert (done.returncode, done.stderr) == (3, ""), done.stderr
        assert "no run publish-q3-report yet: start it with" in done.stdout

    started = _approval(tmp_path, "start")
    assert started.returncode == 0, started.stderr
    assert "run publish-q3-report: waiting; approve it:" in started.stdout

    approved = _approval(tmp_path, "approve")
    assert approved.returncode == 0, approved.stderr
    assert "completed -> published, approved by ada" in approved.stdout

    again = _approval(tmp_path, "approve")
    assert (again.returncode, again.stderr) == (1, ""), again.stderr
    assert "has ended: nothing waits for approval" in again.stdout

    restarted = _approval(tmp_path, "start")
    assert restarted.returncode == 0, restarted.stderr
    assert "completed earlier -> published, approved by ada" in restarted.stdout
    assert "drafted" not in restarted.stdout  # nothing ran again

    wrong = _approval(tmp_path, "publish")
    assert wrong.returncode == 2 and "usage: python examples/approval.py" in wrong.stderr
