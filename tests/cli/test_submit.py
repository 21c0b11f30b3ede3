"""`tether submit`: a run queued from the shell for the workers, and waited for."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._helpers import TETHER, effects, tether


@pytest.fixture
def worker(tmp_path: Path, flow: Path) -> Iterator[subprocess.Popen[str]]:
    """`tether worker` serving the flows' queue 'default', a real process."""
    env = {**os.environ, "EFFECTS": str(tmp_path / "effects.log")}
    env |= {"FLOWS_DB": f"sqlite:///{tmp_path}/t.db"}
    proc = subprocess.Popen(
        [TETHER, "--db", env["FLOWS_DB"], "worker", "--app", f"{flow}:app"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while "worker started" not in (line := proc.stderr.readline()):
        assert line, "the worker exited before it started"
    try:
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_a_submitted_run_waits_for_a_worker_and_says_so(tmp_path: Path, flow: Path) -> None:
    # there was no way to queue a run from a shell: `tether run` runs it in place
    done = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "ada"}', "--id", "q1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "q1"  # the id alone: ID=$(tether submit ...)
    assert "no live worker serves queue 'default' yet" in done.stderr
    assert "tether worker --app FILE.py:app -q default" in done.stderr
    again = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "ada"}', "--id", "q1")
    assert again.returncode == 0 and again.stdout.strip() == "q1"
    listed = json.loads(tether(tmp_path, "runs", "list", "--json").stdout)
    assert [(r["workflowId"], r["status"]) for r in listed] == [("q1", "pending")]
    assert effects(tmp_path) == []  # nothing ran here


def test_submit_and_wait_prints_the_result_a_worker_made(
    tmp_path: Path, flow: Path, worker: subprocess.Popen[str]
) -> None:
    done = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "bo"}', "--wait")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["result"] == "hi bo"
    assert "no live worker" not in done.stderr
    assert effects(tmp_path) == ["hello", "world"]
    failed = tether(tmp_path, "submit", f"{flow}:broken", "--id", "b1", "--wait")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout) == {"workflowId": "b1", "status": "failed", "result": None}
    assert "run b1 failed: RuntimeError: the agent gave up" in failed.stderr


def test_bad_input_is_refused_before_anything_is_queued(tmp_path: Path, flow: Path) -> None:
    bad = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"nom": 1}', "--id", "x")
    assert bad.returncode == 2 and "does not fit its declared type" in bad.stderr
    missing = tether(tmp_path, "submit", f"{flow}:greet", "--id", "y")
    assert missing.returncode == 2 and "takes an input" in missing.stderr
    blank = tether(tmp_path, "submit", f"{flow}:greet", "-i", "{}", "--queue", " ")
    assert blank.returncode == 2 and "--queue" in blank.stderr
    listed = tether(tmp_path, "runs", "list", "--json")
    assert listed.returncode in (0, 4) and "x" not in listed.stdout and "y" not in listed.stdout
