"""`tether agents` as a real process: the example runs offline; steer an issue."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ._helpers import ROOT, tether


def _example(tmp: Path) -> Path:
    where = tmp / "examples" / "agents"
    shutil.copytree(ROOT / "examples" / "agents", where)
    return where


def test_run_once_dispatches_the_example_offline(tmp_path: Path) -> None:
    where = _example(tmp_path)
    done = tether(where, "agents", "run", "--once")
    assert done.returncode == 0, done.stderr
    assert "dispatched DEMO-1" in done.stdout
    assert "skipped DEMO-2: blocked by DEMO-1" in done.stdout
    assert "DEMO-3: missing required labels" in done.stdout
    assert "- status: review" in (where / "ISSUES.md").read_text()
    assert (where / ".workspaces" / "DEMO-1" / "hello.txt").read_text().startswith("Hello")
    shown = tether(where, "agents", "show", "DEMO-1")
    assert shown.returncode == 0, shown.stderr
    assert "You are working on DEMO-1: Write a greeting." in shown.stdout
    listed = tether(where, "agents", "status", "--all")
    assert (
        "DEMO-1" in listed.stdout and "2700" in listed.stdout
    )  # 2 turns × 1,350 tokens, from the call log
    # as the run ended, not as its last attempt began: handed off, nothing failing
    # the row's first line (a long workspace path folds onto a second one)
    row = next(line for line in listed.stdout.splitlines() if "DEMO-1" in line)
    assert "review" in row and "ended (completed)" in row and "todo" not in row
    assert re.search(r"ended \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row), row  # and when
    assert "phase: ended" in shown.stdout and "issue_state: review" in shown.stdout


def test_an_issue_sent_back_is_dispatched_again_in_a_new_run(tmp_path: Path) -> None:
    where = _example(tmp_path)
    text = (
        (where / "ISSUES.md")
        .read_text()
        .replace("- status: todo\n- priority: 2", "- status: done\n- priority: 2")
    )
    (where / "ISSUES.md").write_text(text)
    assert tether(where, "agents", "run", "--once").returncode == 0
    issues = (where / "ISSUES.md").read_text().replace("- status: review", "- status: todo")
    (where / "ISSUES.md").write_text(issues)  # a person sends it back
    stopped = tether(where, "agents", "stop", "DEMO-1")  # its run has ended: nothing to stop
    assert stopped.returncode == 2 and "agent:file:DEMO-1" in stopped.stderr
    again = tether(where, "agents", "run", "--once")
    assert "dispatched DEMO-1" in again.stdout  # its first run ended: a second run
    missing = tether(where, "agents", "answer", "NOPE-1", "hi")
    assert missing.returncode == 3, missing.stderr


def test_run_once_exits_1_when_the_tick_went_wrong(tmp_path: Path) -> None:
    """A tracker that cannot be read is not a quiet tick: scripts and CI must see it."""
    where = _example(tmp_path)
    (where / "ISSUES.md").unlink()
    broken = tether(where, "agents", "run", "--once")
    assert broken.returncode == 1, broken.stdout
    assert "error: fetching candidates" in broken.stdout
    assert "the tick had errors or failed runs" in broken.stderr


def test_run_once_exits_1_when_the_agent_cannot_start(tmp_path: Path) -> None:
    """An agent command that does not exist fails each attempt: its run waits for a
    retry, and the tick says it went wrong."""
    where = _example(tmp_path)
    workflow = where / "WORKFLOW.md"
    text = workflow.read_text()
    assert "command: python3 ../../agent.py" in text
    workflow.write_text(text.replace("python3 ../../agent.py", "no-such-agent-binary"))
    broken = tether(where, "agents", "run", "--once")
    assert broken.returncode == 1, broken.stdout
    assert "failed: agent:file:DEMO-1" in broken.stdout
    assert "the tick had errors or failed runs" in broken.stderr


def test_an_agents_error_with_brackets_is_shown_as_written(tmp_path: Path) -> None:
    """What agents and trackers say is text, not rich markup: a `[/tmp/x]` in an error
    crashed `run --once`, `status` and `show` (a closing tag no one opened), and a
    `[bold]` vanished from it."""
    where = _example(tmp_path)
    workflow = where / "WORKFLOW.md"
    said = "echo '[/tmp/x] [bold]boom' >&2; exit 3"
    workflow.write_text(workflow.read_text().replace("python3 ../../agent.py", f'"{said}"'))
    once = tether(where, "agents", "run", "--once")
    assert once.returncode == 1, once.stderr
    assert "[/tmp/x] [bold]boom" in once.stdout
    listed = tether(where, "agents", "status")
    assert listed.returncode == 0, listed.stderr
    assert "[/tmp/x] [bold]boom" in listed.stdout
    shown = tether(where, "agents", "show", "DEMO-1")
    assert shown.returncode == 0, shown.stderr
    assert "error: process_exit: exited 3: [/tmp/x] [bold]boom" in shown.stdout


def test_reading_and_steering_never_create_a_database(tmp_path: Path) -> None:
    """`agents status|show|answer|retry|stop` exit 4 where there is no database, as
    `tether runs list` does: an empty one made at a mistyped --db said "no issue runs"."""
    where = _example(tmp_path)
    for args in (("status",), ("show", "DEMO-1"), ("answer", "DEMO-1", "yes"), ("stop", "DEMO-1")):
        done = tether(where, "agents", *args)
        assert done.returncode == 4, (args, done.stdout, done.stderr)
        assert "no tether database at" in done.stderr
    assert not (where / "t.db").exists()


def test_status_folds_ids_and_paths_rather_than_cutting_them(tmp_path: Path) -> None:
    # on 100 columns the run read "agent:file…" and the workspace "/tmp/…": neither
    # could be copied into `tether runs show` or a shell
    where = _example(tmp_path)
    assert tether(where, "agents", "run", "--once").returncode == 0
    listed = tether(where, "agents", "status", "--all", env={"COLUMNS": "100"})
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout, listed.stdout
    rows = [line.split("│") for line in listed.stdout.splitlines() if line.startswith("│")]
    assert "".join(r[5].strip() for r in rows) == "agent:file:DEMO-1", listed.stdout
    workspace = "".join(r[9].strip() for r in rows)
    assert workspace == str(where / ".workspaces" / "DEMO-1"), listed.stdout
