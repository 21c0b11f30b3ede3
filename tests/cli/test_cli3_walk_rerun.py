"""`tether runs rerun` of a failed run refused before anything runs: a usage error."""

from __future__ import annotations

from pathlib import Path

from ._helpers import tether


def test_rerun_from_a_step_the_failed_run_has_not_is_bad_usage_not_a_failure(
    tmp_path: Path, flow: Path
) -> None:
    assert tether(tmp_path, "run", f"{flow}:broken", "--id", "b1").returncode == 1
    rerun = tether(tmp_path, "runs", "rerun", "b1", "--from", "okk", "--app", f"{flow}:app")
    # before: exit 1, "run b1 failed: InvalidArgumentError: ... (it had already failed ...)"
    assert rerun.returncode == 2, rerun.stderr
    assert "error: run 'b1' has no step 'okk'; its steps: 'ok'" in rerun.stderr
    assert "failed" not in rerun.stderr and rerun.stdout == ""
    again = tether(tmp_path, "runs", "resume", "b1", "--app", f"{flow}:app")
    assert again.returncode == 1 and "already failed" in again.stderr


def test_a_run_that_failed_on_a_tether_error_still_reads_as_failed_when_run_again(
    tmp_path: Path, flow: Path
) -> None:
    first = tether(tmp_path, "run", f"{flow}:misuses_api", "--id", "m1")
    assert first.returncode == 1 and "InvalidArgumentError" in first.stderr
    again = tether(tmp_path, "run", f"{flow}:misuses_api", "--id", "m1")
    assert again.returncode == 1, again.stderr
    assert "error: run m1 failed: InvalidArgumentError:" in again.stderr
    assert "it had already failed" in again.stderr
