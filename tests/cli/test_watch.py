"""`tether runs watch`: a live view that follows a run driven elsewhere, to its end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tether.testing import eventually_sync

from ._helpers import TETHER, tether


def test_watch_once_shows_the_wait_and_watch_follows_the_run_to_its_end(
    tmp_path: Path, flow: Path
) -> None:
    started = tether(tmp_path, "run", f"{flow}:waits", "--id", "w1")
    assert json.loads(started.stdout)["status"] == "waiting"
    once = tether(tmp_path, "runs", "watch", "w1", "--once")
    assert once.returncode == 0, once.stderr
    assert "waiting on: signal:go#1" in once.stdout and "steps (last" in once.stdout

    url = f"sqlite:///{tmp_path}/t.db"
    env = {**os.environ, "COLUMNS": "120"}
    watcher = subprocess.Popen(
        [TETHER, "--db", url, "runs", "watch", "w1", "--interval", "0.1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tether(tmp_path, "runs", "signal", "w1", "go", "--payload", "1").returncode == 0
        assert tether(tmp_path, "runs", "resume", "w1", "--app", f"{flow}:app").returncode == 0
        eventually_sync(lambda: watcher.poll() is not None, timeout=60)
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, stderr
    assert "completed" in stdout


def test_watch_exits_1_for_a_failed_run_and_3_for_an_unknown_one(
    tmp_path: Path, flow: Path
) -> None:
    assert tether(tmp_path, "run", f"{flow}:broken", "--id", "b1").returncode == 1
    failed = tether(tmp_path, "runs", "watch", "b1")
    assert failed.returncode == 1 and "the agent gave up" in failed.stdout
    assert tether(tmp_path, "runs", "watch", "nope").returncode == 3
    assert tether(tmp_path, "runs", "watch", "b1", "--interval", "0").returncode == 2


def test_watch_exits_1_for_a_run_that_failed_and_was_compensated(
    tmp_path: Path, flow: Path
) -> None:
    """Its status is `compensated`, not `failed`: it still did not complete (before: 0)."""
    assert tether(tmp_path, "run", f"{flow}:undone", "--id", "u1").returncode == 1
    watched = tether(tmp_path, "runs", "watch", "u1")
    assert watched.returncode == 1 and "compensated" in watched.stdout


def test_watch_into_a_pipe_ends_its_last_line(tmp_path: Path, flow: Path) -> None:
    """Before: the frame printed to a pipe had no final newline, and a script reading
    it line by line (`| while read line`) lost the last one, the run's end event."""
    assert tether(tmp_path, "run", f"{flow}:broken", "--id", "b1").returncode == 1
    watched = tether(tmp_path, "runs", "watch", "b1")
    assert watched.returncode == 1, watched.stderr
    assert watched.stdout.endswith("\n"), watched.stdout[-200:]
    assert "workflow.failed" in watched.stdout.splitlines()[-1]
