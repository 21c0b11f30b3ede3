"""`tether run` of a run that had already failed: it reads as the first time did."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ._helpers import tether


def test_running_a_failed_run_again_says_it_failed_with_its_error(
    tmp_path: Path, flow: Path
) -> None:
    first = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1")
    assert first.returncode == 1
    assert "error: run b1 failed: RuntimeError: the agent gave up" in first.stderr
    again = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1")
    assert again.returncode == 1, again.stderr
    # before: "error: run b1 stopped: RuntimeError: ...", as if tether had a bug
    assert "error: run b1 failed: RuntimeError: the agent gave up" in again.stderr
    assert "already failed" in again.stderr and "tether runs rerun b1" in again.stderr
    assert "stopped" not in again.stderr


def test_a_failed_run_whose_error_class_is_gone_still_fails_with_exit_1(tmp_path: Path) -> None:
    """A class defined in the workflow itself cannot be found again: the App answers
    with RunFailedError, a tether error (before: exit 2, as if the usage were wrong)."""
    path = tmp_path / "local.py"
    path.write_text(
        textwrap.dedent(
            """
            import tether

            async def odd(wf: tether.Workflow) -> None:
                class Quirk(Exception):
                    pass

                raise Quirk("a local class")
            """
        )
    )
    first = tether(tmp_path, "run", f"{path}:odd", "--id", "q1")
    assert first.returncode == 1 and "run q1 failed: Quirk: a local class" in first.stderr
    again = tether(tmp_path, "run", f"{path}:odd", "--id", "q1")
    assert again.returncode == 1, again.stderr
    assert "error: run q1 failed: Quirk: a local class (it had already failed" in again.stderr
