"""Tables on a terminal narrower than their rows: every column is kept, folded, none
cropped at the right edge."""

from __future__ import annotations

from pathlib import Path

from tether import App, Workflow

from ._helpers import tether


async def greet(wf: Workflow) -> str:
    return "hi"


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def test_runs_list_on_80_columns_keeps_its_right_edge(tmp_path: Path) -> None:
    # before: the id column's wish for its whole id outgrew what rich left it, and rich
    # cropped the table: "updated (U" and no right border on 80 columns
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    app.workflow(greet)
    app.run(greet, workflow_id="greet-0a45c370c4ba")
    app.close()
    listed = tether(tmp_path, "runs", "list", db=url, env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    lines = _lines(listed.stdout)
    assert all(len(line) <= 80 for line in lines), listed.stdout
    assert lines[0].endswith("┓") and lines[-1].endswith("┘"), listed.stdout
    assert "updated" in listed.stdout and "(UTC)" in lines[1] + lines[2], listed.stdout


def test_runs_list_wide_with_an_id_longer_than_the_terminal_keeps_every_column(
    tmp_path: Path,
) -> None:
    # before: --wide made the id column as wide as the 94-character id, and every other
    # column (workflow, status, times) was cropped away on 80 columns
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    app.workflow(greet)
    long_id = "run-" + "q" * 90
    app.run(greet, workflow_id=long_id)
    app.close()
    listed = tether(tmp_path, "runs", "list", "--wide", db=url, env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    lines = _lines(listed.stdout)
    assert all(len(line) <= 80 for line in lines), listed.stdout
    for word in ("workflow", "status", "greet", "completed"):
        assert word in listed.stdout, listed.stdout
    ids = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert ids == long_id, listed.stdout  # folded, whole: --wide's promise kept
