"""`tether agents` as a real process: the example runs offline; steer an issue."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..agents.trackers._servers import FakeGitHub, serving
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


def test_run_once_removes_the_workspace_of_an_issue_closed_after_its_run(
    tmp_path: Path,
) -> None:
    """The retention chore ran only in `run`: a `--once` from cron left the workspace of
    an issue closed after its run ended for good."""
    where = _example(tmp_path)
    assert tether(where, "agents", "run", "--once").returncode == 0
    workspace = where / ".workspaces" / "DEMO-1"
    assert workspace.is_dir()
    issues = (where / "ISSUES.md").read_text().replace("- status: review", "- status: done")
    (where / "ISSUES.md").write_text(issues)  # a person merged it
    again = tether(where, "agents", "run", "--once")
    assert again.returncode == 0, again.stderr
    assert "removed workspace DEMO-1" in again.stdout
    assert not workspace.exists()


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


def test_an_issue_never_dispatched_is_named_as_an_issue(tmp_path: Path) -> None:
    """`show`, `answer`, `retry` and `stop` of an issue with no run said "no run with
    workflow id 'agent:file:DEMO-3'; `tether runs list` ...": the dispatcher's
    internal run id, and a command that lists every run instead of the issues."""
    where = _example(tmp_path)
    assert tether(where, "agents", "run", "--once").returncode == 0
    for verb in (["show"], ["answer", "--", "hi"], ["retry"], ["stop"]):
        args = [verb[0], "DEMO-3", *verb[1:]]
        got = tether(where, "agents", *args)
        assert got.returncode == 3, (args, got.stderr)
        assert "no run of issue 'DEMO-3': it was never dispatched" in got.stderr, got.stderr
        assert "tether agents status --all" in got.stderr and "agent:file" not in got.stderr


ASKING_AGENT = """
import json, os, sys

def say(**line):
    print(json.dumps(line), flush=True)

prompt = sys.stdin.read()
if os.environ.get("TETHER_SESSION_ID"):  # the answer continues the session
    say(type="result", status="completed", message="painted", session_id="s1")
else:
    say(type="input_required", question="Which colour?", session_id="s1")
"""

ASKING_WORKFLOW = """---
tracker: {kind: file, path: ISSUES.md, active_states: [todo], terminal_states: [done],
          handoff_state: review}
workspace: {root: .ws}
agent: {backend: command, command: python3 ../../agent.py, max_turns: 1}
---
Work on {{ issue.identifier }}.
"""


def test_an_agent_asking_for_input_is_answered_then_continued(tmp_path: Path) -> None:
    """The status said "waiting (waiting)", and `answer` said only "answer: ASK-1 (run
    ...)", not that the run goes on only once a dispatcher runs."""
    (tmp_path / "agent.py").write_text(ASKING_AGENT)
    (tmp_path / "WORKFLOW.md").write_text(ASKING_WORKFLOW)
    (tmp_path / "ISSUES.md").write_text(
        "# Issues\n\n## ASK-1: Paint it\n- status: todo\n\nPick a colour.\n"
    )
    assert tether(tmp_path, "agents", "run", "--once").returncode == 0
    status = tether(tmp_path, "agents", "status")
    row = next(line for line in status.stdout.splitlines() if "ASK-1" in line)
    assert "input_required: Which colour?" in row and "waiting (" not in row, row
    answered = tether(tmp_path, "agents", "answer", "ASK-1", "blue")
    assert answered.returncode == 0, answered.stderr
    assert "a dispatcher (`tether agents run`) takes it on" in answered.stdout
    assert tether(tmp_path, "agents", "run", "--once").returncode == 0
    assert "- status: review" in (tmp_path / "ISSUES.md").read_text()


def test_once_with_a_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """The refusal came after the start-up line ("database: ..."), as if the dispatcher
    had begun."""
    where = _example(tmp_path)
    got = tether(where, "agents", "run", "--once", "--port", "0")
    assert got.returncode == 2
    assert got.stderr == (
        "error: --port serves while the dispatcher runs; it cannot go with --once\n"
    ), got.stderr
    assert not (where / ".tether").exists()


def test_the_dispatchers_log_is_not_drowned_by_its_http_requests(tmp_path: Path) -> None:
    """Each tracker request logged "HTTP Request: GET ..." at INFO, burying the
    dispatcher's own lines; the HTTP clients now log warnings only."""
    fake = FakeGitHub()
    fake.add(1, "Fix the build", labels=("agent",))
    with serving(fake) as base:
        (tmp_path / "WORKFLOW.md").write_text(
            "---\n"
            f'tracker: {{kind: github, repo: acme/api, endpoint: "{base}", api_key: gh-token}}\n'
            "workspace: {root: ws}\nagent: {backend: mock}\n---\nhi\n"
        )
        done = tether(tmp_path, "agents", "run", "--once")
    assert done.returncode == 0, done.stderr
    assert fake.requests, "the tracker was asked"
    assert "HTTP Request" not in done.stderr


STATUS_KEYS = {
    "issue_identifier",
    "title",
    "state",
    "run_id",
    "run_status",
    "phase",
    "attempt",
    "reason",
    "question",
    "due_at",
    "workspace",
    "tokens",
    "cost_usd",
    "ended",
    "ended_at",
}


def test_status_json_is_a_document_for_scripts(tmp_path: Path) -> None:
    """`agents status` only printed a table (a script had to scrape folded columns);
    `--json` prints one array of issues with the keys its help names."""
    (tmp_path / "agent.py").write_text(ASKING_AGENT)
    (tmp_path / "WORKFLOW.md").write_text(ASKING_WORKFLOW)
    (tmp_path / "ISSUES.md").write_text(
        "# Issues\n\n## ASK-1: Paint it\n- status: todo\n\nPick a colour.\n"
    )
    empty = tether(tmp_path, "agents", "status", "--json", "--db", "sqlite:///x.db")
    assert empty.returncode == 4  # no database yet: as the table, never an empty one made
    assert tether(tmp_path, "agents", "run", "--once").returncode == 0
    got = tether(tmp_path, "agents", "status", "--json")
    assert got.returncode == 0, got.stderr
    [issue] = json.loads(got.stdout)
    assert set(issue) == STATUS_KEYS
    assert issue["issue_identifier"] == "ASK-1" and issue["title"] == "Paint it"
    assert (issue["phase"], issue["run_status"], issue["question"]) == (
        "waiting",
        "waiting",
        "Which colour?",
    )
    assert issue["run_id"].startswith("agent:file:") and issue["ended"] is None
    assert issue["tokens"] == {"total_tokens": 0}
    helped = tether(tmp_path, "agents", "status", "--help").stdout
    assert all(key in helped for key in STATUS_KEYS)
    assert tether(tmp_path, "agents", "answer", "ASK-1", "blue").returncode == 0
    assert tether(tmp_path, "agents", "run", "--once").returncode == 0
    assert json.loads(tether(tmp_path, "agents", "status", "--json").stdout) == []
    [ended] = json.loads(tether(tmp_path, "agents", "status", "--all", "--json").stdout)
    assert (ended["phase"], ended["run_status"], ended["state"]) == (
        "ended",
        "completed",
        "review",
    )
    assert ended["ended_at"] and ended["reason"] is None
