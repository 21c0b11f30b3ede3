"""`tether run`: results, exit codes, the database it picks, progress, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ._helpers import ROOT, SLOW, TETHER, effects, interrupted, tether


def test_run_resume_and_inspect(tmp_path: Path, flow: Path) -> None:
    first = tether(tmp_path, "run", f"{flow}:greet", "--input", '{"name": "ada"}', "--id", "g1")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "workflowId": "g1",
        "status": "completed",
        "result": "hi ada",
    }
    assert "run g1 completed" in first.stderr and "2 step(s) run here" in first.stderr
    again = tether(tmp_path, "run", f"{flow}:greet", "--id", "g1")  # resumes: recorded input
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["result"] == "hi ada"
    assert "0 step(s) run here, 2 completed earlier" in again.stderr
    assert effects(tmp_path) == ["hello", "world"]  # not re-executed

    listed = tether(tmp_path, "runs", "list", "--json")
    assert [(r["workflowId"], r["status"]) for r in json.loads(listed.stdout)] == [
        ("g1", "completed")
    ]
    table = tether(tmp_path, "runs", "list").stdout
    assert re.search(r"g1\s+│\s+greet\s+│\s+completed", table), table
    shown = tether(tmp_path, "runs", "show", "g1")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"status\s+completed", shown.stdout)
    assert re.search(r"hello\s+│\s+completed\s+│\s+1", shown.stdout)
    assert "last 6 of 6 events" in shown.stdout and "workflow.completed" in shown.stdout
    events = json.loads(tether(tmp_path, "runs", "events", "g1", "--json").stdout)
    assert events[0]["type"] == "workflow.running" and events[-1]["type"] == "workflow.completed"
    assert "step.started" in tether(tmp_path, "runs", "events", "g1").stdout
    exported = json.loads(tether(tmp_path, "runs", "export", "g1").stdout)
    assert exported["version"] == 1 and exported["workflowId"] == "g1"
    assert set(exported["steps"]) == {"hello", "world"}


def test_a_run_id_with_brackets_is_printed_as_written(tmp_path: Path, flow: Path) -> None:
    """`--id job[/x]` is an id, not rich markup: the summary line crashed on it (a closing
    tag no one opened) after the run completed, and `[x]` vanished from it."""
    done = tether(tmp_path, "run", f"{flow}:greet", "-i", '{"name": "ada"}', "--id", "job[/x]")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workflowId"] == "job[/x]"
    assert "run job[/x] completed" in done.stderr
    kept = tether(tmp_path, "run", f"{flow}:greet", "-i", '{"name": "ada"}', "--id", "job[x]")
    assert kept.returncode == 0, kept.stderr
    assert "run job[x] completed" in kept.stderr


def test_input_from_file_and_module_target(tmp_path: Path, flow: Path) -> None:
    (tmp_path / "input.json").write_text('{"name": "lin"}')
    res = tether(tmp_path, "run", "flows:greet", "--input", "@input.json", "--id", "m1")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "hi lin"


def test_input_from_a_pipe(tmp_path: Path, flow: Path) -> None:
    # `--input @/dev/stdin` (and a shell's `@<(jq ...)`, a pipe at /dev/fd/N) was
    # refused as "input file not found": only a regular file was read
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"EFFECTS": str(tmp_path / "effects.log"), "FLOWS_DB": f"sqlite:///{tmp_path}/t.db"}
    res = subprocess.run(
        [TETHER, "run", "flows.py:greet", "--input", "@/dev/stdin", "--id", "p1"],
        cwd=tmp_path,
        env=env,
        input='{"name": "pipe"}',
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "hi pipe"
    folder = tether(tmp_path, "run", "flows.py:greet", "--input", f"@{tmp_path}")
    assert folder.returncode == 2 and "is a folder" in folder.stderr, folder.stderr


def test_default_database_is_under_dot_tether(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("async def greet(wf, who):\n    return 'hi ' + who\n")
    res = tether(tmp_path, "run", "plain.py:greet", "-i", '"x"', use_db=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / ".tether" / "tether.db").is_file()
    assert not (tmp_path / "t.db").exists()


def test_sibling_imports_of_a_workflow_file(tmp_path: Path) -> None:
    pkg = tmp_path / "flows"
    pkg.mkdir()
    (pkg / "helpers.py").write_text("def shout(s):\n    return s.upper()\n")
    (pkg / "main.py").write_text(
        "from helpers import shout\n\nasync def main(wf, who):\n"
        "    return await wf.step('shout', lambda: shout(who))\n"
    )
    res = tether(tmp_path, "run", "flows/main.py:main", "--input", '"ada"')
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "ADA"


TYPED = """
import tether
from pydantic import BaseModel

class Quote(BaseModel):
    price: int

class OutOfStock(Exception):
    pass

def reserve():
    raise OutOfStock("sku-1")

async def typed(wf: tether.Workflow) -> str:
    quote = await wf.step("quote", lambda: Quote(price=5))  # recorded with its class
    try:
        await wf.step("reserve", reserve)
        branch = "reserved"
    except OutOfStock:
        branch = "out of stock"
    await wf.wait_for_signal("go")
    return f"{type(quote).__name__} / {branch}"
"""


def test_a_workflow_files_classes_come_back_in_the_next_process(tmp_path: Path) -> None:
    # before: the file was imported as _tether_<random>, so the next process found no
    # class by that name: the model came back a dict, the error a StepFailedError
    (tmp_path / "typed.py").write_text(TYPED)
    parked = tether(tmp_path, "run", "typed.py:typed", "--id", "t1")
    assert json.loads(parked.stdout)["status"] == "waiting", parked.stderr
    assert tether(tmp_path, "runs", "signal", "t1", "go").returncode == 0
    done = tether(tmp_path, "run", "typed.py:typed", "--id", "t1")
    assert json.loads(done.stdout)["result"] == "Quote / out of stock", done.stderr


def test_failing_workflow_exits_1(tmp_path: Path, flow: Path) -> None:
    res = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1")
    assert res.returncode == 1
    assert "run b1 failed: RuntimeError: the agent gave up" in res.stderr
    assert "Traceback" not in res.stderr
    shown = tether(tmp_path, "runs", "show", "b1").stdout
    assert re.search(r"status\s+failed", shown) and "the agent gave up" in shown

    traced = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1", "--traceback")
    assert traced.returncode == 1 and "Traceback" in traced.stderr


def test_tether_error_raised_by_the_workflow_is_a_failure_not_usage(
    tmp_path: Path, flow: Path
) -> None:
    res = tether(tmp_path, "run", f"{flow}:misuses_api", "--id", "x1")
    assert res.returncode == 1, res.stderr
    assert "run x1 failed: InvalidArgumentError: lease ttl" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py:greet"], "no such file: missing.py does not exist"),
        (["run", "flows.py:nope"], "has no 'nope'; async functions there: broken, greet,"),
        (["run", "nosuchmod:greet"], "no module named 'nosuchmod'"),
        (["run", "import_fails.py:f"], "importing it raised ModuleNotFoundError"),
        (["run", "syntax.py:f"], "syntax error at line 1"),
        (["run", "nocolon"], "FILE.py:FUNC"),
        (
            ["run", "flows.py:greet", "--input", '{"name": 1'],
            "input is not valid JSON at line 1 column 11",
        ),
        (["run", "flows.py:greet", "--input", "@absent.json"], "input file not found"),
        (["run", "flows.py:greet", "--input", '{"nom": "x"}'], "input.name: Field required"),
        (["run", "flows.py:greet", "--state", "{x"], "state is not valid JSON"),
        (["run", "flows.py:waits", "--input", "1"], "takes no input"),
        (["run", "flows.py:greet"], "takes an input; pass --input"),
        (["runs", "list", "--status", "sleepy"], "unknown run status"),
        (["runs", "list", "--limit", "5", "--all"], "--limit and --all contradict"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, flow: Path, args: list[str], message: str) -> None:
    (tmp_path / "import_fails.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "syntax.py").write_text("def (:\n")
    res = tether(tmp_path, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    if (tmp_path / "t.db").exists():  # no run was created
        assert json.loads(tether(tmp_path, "runs", "list", "--json").stdout) == []


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_live_progress_on_a_terminal(tmp_path: Path, flow: Path) -> None:
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"FLOWS_DB": f"sqlite:///{tmp_path}/t.db", "TERM": "xterm", "COLUMNS": "120"}
    run_naps = ["run", "flows.py:naps", "--id", "n1"]
    proc = subprocess.Popen(
        [TETHER, "--db", f"sqlite:///{tmp_path}/t.db", *run_naps],
        cwd=tmp_path,
        env=env,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    _, stderr = proc.communicate(timeout=60)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    assert proc.returncode == 0, stderr
    assert re.search(r"n1\s+running\s+done 0\s+running 1\s+failed 0", screen), screen
    assert "now: nap" in screen  # the running step's name
    assert '"result": "rested"' in screen


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupted_run_exits_130_and_resumes(
    tmp_path: Path, flow: Path, sig: int, code: int, said: str
) -> None:
    """SIGTERM as Ctrl-C: the run is handed back and the message says how to resume it
    (before: exit 143 without a word)."""
    (tmp_path / "slow.py").write_text(SLOW)
    db = f"sqlite:///{tmp_path}/t.db"
    proc = interrupted(tmp_path, sig, "--db", db, "run", "slow.py:slow", "--id", "s1")
    stderr = proc.stderr
    ticks = tmp_path / "ticks.log"
    assert proc.returncode == code, stderr
    assert f"{said}; run s1 keeps" in stderr
    # with the --db it ran on: without, the command resumed nothing, it started afresh
    assert f"resume it with `tether run slow.py:slow --id s1 --db {db}`" in stderr
    assert "Traceback" not in stderr
    resumed = tether(tmp_path, "run", "slow.py:slow", "--id", "s1")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == "done"
    assert "completed earlier" in resumed.stderr
    assert len(ticks.read_text().split()) <= 31  # only the interrupted step may run twice


def test_demo_example_runs_twice_without_reapplying(tmp_path: Path) -> None:
    script = ROOT / "examples" / "apply_batch.py"
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    runs = [
        subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert "run apply-batch-demo: completed" in r.stdout
        # 5 jobs, one listed twice: 4 applications, the count matching the list printed
        assert "result {'applied': 4, 'duplicates': 1, 'failed': 0}" in r.stdout
        assert r.stdout.count(" APPLIED after ") == 4
    first_calls = re.search(r"agent adapter calls in this process: (\d+)", runs[0].stdout)
    assert first_calls is not None and int(first_calls[1]) >= 4  # 4 distinct jobs, + retries
    assert "agent adapter calls in this process: 0" in runs[1].stdout
    assert (tmp_path / ".tether" / "tether.db").exists()

    jobs = '[{"company": "Acme", "role": "SRE"}, {"company": "Acme", "role": "SRE"}]'
    via_cli = tether(tmp_path, "run", f"{script}:apply_batch", "--input", jobs, "--id", "cli")
    assert via_cli.returncode == 0, via_cli.stderr
    assert json.loads(via_cli.stdout)["result"] == {"applied": 1, "duplicates": 1, "failed": 0}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("database: ")]


@pytest.mark.parametrize(
    ("files", "target", "names"),
    [
        ({"bad.py": "def (:\n"}, "bad.py:f", ["bad.py", "syntax error at line 1"]),
        ({"boom.py": "raise KeyError('x')\n"}, "boom.py:f", ["boom.py", "KeyError"]),
        ({"imp.py": "import nope_nope\n"}, "imp.py:f", ["imp.py", "nope_nope"]),
        ({"sib.py": "x = (\n", "top.py": "import sib\n"}, "top.py:f", ["sib.py", "line 1"]),
        ({"modsyn.py": "def (:\n"}, "modsyn:f", ["modsyn.py", "syntax error"]),
        ({"modboom.py": "1/0\n"}, "modboom:f", ["modboom.py", "ZeroDivisionError"]),
    ],
)
def test_a_file_that_does_not_import_exits_2_with_one_line(
    tmp_path: Path, files: dict[str, str], target: str, names: list[str]
) -> None:
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    res = tether(tmp_path, "run", target)
    assert res.returncode == 2, res.stderr
    lines = _error_lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(n in lines[0] for n in names), lines[0]
    assert "Traceback" not in res.stderr


MODULE_APP = """
import tether

app = tether.App("sqlite:///mod.db")

@app.workflow
async def w(wf):
    return await wf.step("one", lambda: 1)
"""


def test_run_uses_the_database_of_the_app_in_the_module(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(MODULE_APP)
    res = tether(tmp_path, "run", "mod.py:w", "--id", "m1", use_db=False)
    assert res.returncode == 0, res.stderr
    assert "database: sqlite:///mod.db (from the App in mod.py)" in res.stderr
    assert (tmp_path / "mod.db").is_file() and not (tmp_path / ".tether").exists()

    env_db = f"sqlite:///{tmp_path}/env.db"
    res = tether(tmp_path, "run", "mod.py:w", use_db=False, env={"TETHER_DATABASE_URL": env_db})
    assert res.returncode == 0 and f"database: {env_db} (from $TETHER_DATABASE_URL)" in res.stderr
    flag_db = f"sqlite:///{tmp_path}/flag.db"
    res = tether(tmp_path, "run", "mod.py:w", "--db", flag_db, env={"TETHER_DATABASE_URL": env_db})
    assert res.returncode == 0 and f"database: {flag_db} (from --db)" in res.stderr
    assert (tmp_path / "flag.db").is_file()
    listed = tether(tmp_path, "runs", "list", "--json", db=f"sqlite:///{tmp_path}/mod.db")
    assert [r["workflowId"] for r in json.loads(listed.stdout)] == ["m1"]


@pytest.mark.parametrize("where", ["--db", "env"])
def test_an_unreadable_database_url_exits_2(tmp_path: Path, flow: Path, where: str) -> None:
    bad = "postgresql://u@[::1:5432/x"
    res = (
        tether(tmp_path, "run", "flows.py:waits", db=bad)
        if where == "--db"
        else tether(
            tmp_path, "run", "flows.py:waits", use_db=False, env={"TETHER_DATABASE_URL": bad}
        )
    )
    assert res.returncode == 2, res.stderr
    assert "cannot be parsed" in res.stderr and "Traceback" not in res.stderr


def test_the_database_line_hides_the_password(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("async def f(wf):\n    return 1\n")
    db = "postgresql://ada:s3cret@127.0.0.1:1/nowhere?connect_timeout=1"
    res = tether(tmp_path, "run", "plain.py:f", db=db)
    assert res.returncode == 4, res.stderr
    assert "database: postgresql://ada:***@127.0.0.1:1/nowhere" in res.stderr
    assert "s3cret" not in res.stderr


MUTEXED = """
import tether
app = tether.App()

@app.workflow(name="locked")
async def locked(wf: tether.Workflow) -> str:
    async with wf.mutex("acme"):
        await wf.step("apply", lambda: "ok")
    return "done"
"""


def test_a_new_run_says_nothing_completed_earlier(tmp_path: Path) -> None:
    # before: "1 step(s) run here, 3 completed earlier" on a brand-new run: the record's
    # own entries (the mutex's release, the state) counted as another process's steps
    (tmp_path / "locked.py").write_text(MUTEXED)
    first = tether(tmp_path, "run", f"{tmp_path / 'locked.py'}:locked", "--id", "l1")
    assert first.returncode == 0, first.stderr
    assert "1 step(s) run here" in first.stderr and "earlier" not in first.stderr
    again = tether(tmp_path, "run", f"{tmp_path / 'locked.py'}:locked", "--id", "l1")
    assert again.returncode == 0, again.stderr
    assert "0 step(s) run here" in again.stderr and "completed earlier" in again.stderr
