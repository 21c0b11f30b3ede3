"""examples/document_pipeline.py runs offline, replays from the record, and the
`tether` command shows its stages and reruns it from a stage (real processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .._env import child_pythonpath

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "document_pipeline.py"
TETHER = str(Path(sys.executable).with_name("tether"))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": child_pythonpath(cwd / "examples"), "COLUMNS": "160"}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_the_document_pipeline_runs_shows_its_stages_and_reruns_from_one(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "document_pipeline.py")
    first = _run([sys.executable, "examples/document_pipeline.py"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "extract    20% normalising whitespace" in first.stdout
    assert "summarize  completed" in first.stdout
    assert "run cost: $0.000174 over 2 model calls" in first.stdout
    again = _run([sys.executable, "examples/document_pipeline.py"], tmp_path)
    assert again.returncode == 0 and "started" not in again.stdout  # all from the record
    assert "run cost: $0.000174 over 2 model calls" in again.stdout

    db = f"sqlite:///{tmp_path}/.tether/document_pipeline.db"
    shown = _run([TETHER, "runs", "show", "doc-demo", "--db", db], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "stages (4), attempt 1" in shown.stdout and "$0.000102" in shown.stdout

    rerun = _run([TETHER, "runs", "rerun", "doc-demo", "--from", "summarize",
                  "--app", "document_pipeline:app", "--db", db], tmp_path)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "run here" in rerun.stderr
    record = json.loads(_run([TETHER, "runs", "export", "doc-demo", "--db", db], tmp_path).stdout)
    attempts = {s["id"]: s["attempt"] for s in record["stages"]}
    assert attempts == {"extract": 1, "summarize": 2, "keywords": 2, "aggregate": 2}
    assert record["attempt"] == 2
    blobs = sorted(p.relative_to(tmp_path / ".tether" / "blobs").as_posix()
                   for p in (tmp_path / ".tether" / "blobs").rglob("*") if p.is_file())  # fmt: skip
    assert blobs == ["runs/doc-demo/stages/extract/1/files/clean.txt~blob"]
