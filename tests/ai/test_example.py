"""examples/ai_triage.py runs offline, twice, the second time from the record."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ai_triage.py"


def test_the_ai_example_runs_and_replays_without_calling_the_model(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    script = tmp_path / "examples" / "ai_triage.py"
    shutil.copy(EXAMPLE, script)
    first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "URGENT [outage] Roll back" in first.stdout
    assert "7 model calls (7 made by this process)" in first.stdout
    again = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "7 model calls (0 made by this process)" in again.stdout
    assert "$0.000145 of a $0.01 budget" in again.stdout
