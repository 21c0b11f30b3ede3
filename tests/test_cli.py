"""The `tether` command, run as a real subprocess against a database in a temp folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether.testing import eventually_sync

ROOT = Path(__file__).resolve().parents[1]

FLOW = textwrap.dedent(
    """
    import asyncio
    import os

    from pydantic import BaseModel

    import tether

    class Who(BaseModel):
        name: str

    def effect(name):
        with open(os.environ["EFFECTS"], "a") as f:
            f.write(name + "\\n")
        return name

    async def greet(wf: tether.Workflow, who: Who) -> str:
        await wf.step("hello", lambda: effect("hello"))
        await wf.step("world", lambda: effect("world"))
        return "hi " + who.name  # an attribute: the input arrives as the model, not a dict

    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise RuntimeError("the agent gave up")

    async def misuses_api(wf: tether.Workflow) -> None:
        await wf.touch_lease("slot", holder="me", ttl=-1)  # tether's own error, raised in the run

    async def naps(wf: tether.Workflow) -> str:
        return await wf.step("nap", lambda: asyncio.sleep(0.6, result="rested"))

    async def waits(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go")

    app = tether.App(os.environ["FLOWS_DB"])
    for _fn in (greet, broken, waits):
        app.workflow(_fn)
    """
)


def tether(
    tmp: Path, *args: str, db: str | None = None, use_db: bool = True
) -> subprocess.CompletedProcess[str]:
    """`tether --db <tmp>/t.db ARGS` in `tmp`, with no $TETHER_DATABASE_URL to fall back on."""
    url = db or f"sqlite:///{tmp}/t.db"
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"EFFECTS": str(tmp / "effects.log"), "FLOWS_DB": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *(["--db", url] if use_db else []), *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(FLOW)
    return path


def effects(tmp: Path) -> list[str]:
    log = tmp / "effects.log"
    return log.read_text().split() if log.exists() else []


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


def test_input_from_file_and_module_target(tmp_path: Path, flow: Path) -> None:
    (tmp_path / "input.json").write_text('{"name": "lin"}')
    res = tether(tmp_path, "run", "flows:greet", "--input", "@input.json", "--id", "m1")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "hi lin"


def test_default_database_is_under_dot_tether(tmp_path: Path, flow: Path) -> None:
    res = tether(tmp_path, "run", "flows.py:greet", "-i", '{"name": "x"}', use_db=False)
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
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, flow: Path, args: list[str], message: str) -> None:
    (tmp_path / "import_fails.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "syntax.py").write_text("def (:\n")
    res = tether(tmp_path, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert json.loads(tether(tmp_path, "runs", "list", "--json").stdout) == []  # nothing created


def test_typers_own_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["run"], ["runs", "list", "--limit", "many"], ["frobnicate"]):
        assert tether(tmp_path, *args).returncode == 2


def test_unknown_run_exits_3(tmp_path: Path, flow: Path) -> None:
    for args in (
        ["runs", "show", "ghost"],
        ["runs", "events", "ghost"],
        ["runs", "export", "ghost"],
        ["runs", "cancel", "ghost"],
    ):
        res = tether(tmp_path, *args)
        assert res.returncode == 3, res.stderr
        assert "no run with workflow id 'ghost'" in res.stderr


def test_foreign_database_exits_4(tmp_path: Path, flow: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 512)
    for args in (["runs", "list"], ["run", "flows.py:broken"]):
        res = tether(tmp_path, *args, db=f"sqlite:///{junk}")
        assert res.returncode == 4, res.stderr
        assert "not a readable SQLite database" in res.stderr
        assert "Traceback" not in res.stderr


def test_signal_resume_and_cancel(tmp_path: Path, flow: Path) -> None:
    started = tether(tmp_path, "run", f"{flow}:waits", "--id", "w1")
    assert started.returncode == 0 and json.loads(started.stdout)["status"] == "waiting"
    shown = tether(tmp_path, "runs", "show", "w1")
    assert re.search(r"driven by\s+nobody: no live process drives workflow 'waits'", shown.stdout)
    sent = tether(tmp_path, "runs", "signal", "w1", "go", "--payload", '{"ok": true}')
    assert sent.returncode == 0 and "woke" in sent.stdout
    assert "note: no live process drives workflow 'waits'" in sent.stdout  # it will sit
    resumed = tether(tmp_path, "runs", "resume", "w1", "--app", f"{flow}:app")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {
        "workflowId": "w1",
        "status": "completed",
        "result": {"ok": True},
    }

    rerun_done = tether(
        tmp_path, "runs", "rerun", "w1", "--from", "signal:go#1", "--app", f"{flow}:app"
    )
    assert rerun_done.returncode == 2 and "has no step" in rerun_done.stderr
    failed = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1")
    assert failed.returncode == 1
    rerun = tether(tmp_path, "runs", "rerun", "b1", "--from", "ok", "--app", f"{flow}:app")
    assert rerun.returncode == 1 and "the agent gave up" in rerun.stderr  # ran again, same end
    assert "run.rerun_from" in tether(tmp_path, "runs", "events", "b1").stdout

    tether(tmp_path, "run", f"{flow}:waits", "--id", "w2")
    cancelled = tether(tmp_path, "runs", "cancel", "w2", "--reason", "not needed")
    assert cancelled.returncode == 0 and "w2" in cancelled.stdout
    again = tether(tmp_path, "runs", "cancel", "w2")
    assert again.returncode == 2 and "already ended" in again.stderr
    rerun = tether(tmp_path, "run", f"{flow}:waits", "--id", "w2")
    assert rerun.returncode == 1 and "run w2 was cancelled" in rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "cancelled"
    evt = tether(tmp_path, "runs", "event", "nobody.listens", "--payload", "{}")
    assert evt.returncode == 0 and "woke 0 run(s)" in evt.stdout


def test_help_and_version(tmp_path: Path) -> None:
    res = tether(tmp_path, "--help")
    assert res.returncode == 0
    assert "Exit codes: 0 ok; 1 the workflow failed" in " ".join(res.stdout.split())
    assert "worker" in res.stdout and "runs" in res.stdout
    assert tether(tmp_path, "--version").stdout.strip() == "tether 0.1.0"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_live_progress_on_a_terminal(tmp_path: Path, flow: Path) -> None:
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"FLOWS_DB": f"sqlite:///{tmp_path}/t.db", "TERM": "xterm", "COLUMNS": "120"}
    run_naps = ["run", "flows.py:naps", "--id", "n1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "--db", f"sqlite:///{tmp_path}/t.db", *run_naps],
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


def test_worker_command_serves_and_stops_on_sigterm(tmp_path: Path, flow: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    env = {**os.environ, "EFFECTS": str(tmp_path / "effects.log"), "FLOWS_DB": db}
    submit = (
        "import sys; sys.path.insert(0, '.'); from flows import app, greet, Who;"
        "print(app.submit(greet, Who(name='q'), workflow_id='queued-1')); app.close()"
    )
    subprocess.run([sys.executable, "-c", submit], cwd=tmp_path, env=env, timeout=60, check=True)
    serve = ["worker", "--app", f"{flow}:app", "--concurrency", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "--db", db, *serve],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def completed() -> bool:
            status = json.loads(tether(tmp_path, "runs", "list", "--json").stdout)[0]["status"]
            assert status == "completed", f"the run is {status}"
            return True

        eventually_sync(completed, timeout=60, interval=0.1)
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "claimed" in log and "run=queued-1" in log and "finished" in log
    assert effects(tmp_path) == ["hello", "world"]


def test_interrupted_run_exits_130_and_resumes(tmp_path: Path, flow: Path) -> None:
    (tmp_path / "slow.py").write_text(
        "import asyncio\n\nasync def tick(i):\n"
        "    with open('ticks.log', 'a') as f:\n"
        "        f.write(f'{i}\\n')\n"
        "    await asyncio.sleep(0.1)\n\n"
        "async def slow(wf):\n"
        "    for i in range(30):\n"
        "        await wf.step(f's{i}', lambda: tick(i))\n"
        "    return 'done'\n"
    )
    db = f"sqlite:///{tmp_path}/t.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "--db", db, "run", "slow.py:slow", "--id", "s1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ticks = tmp_path / "ticks.log"
    # interrupt once a few steps have run
    eventually_sync(lambda: ticks.exists() and len(ticks.read_text().split()) >= 3, timeout=60)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "resume it with `tether run slow.py:slow --id s1`" in stderr
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
    first_calls = re.search(r"agent adapter calls in this process: (\d+)", runs[0].stdout)
    assert first_calls is not None and int(first_calls[1]) >= 4  # 4 distinct jobs, + retries
    assert "agent adapter calls in this process: 0" in runs[1].stdout
    assert (tmp_path / ".tether" / "tether.db").exists()

    jobs = '[{"company": "Acme", "role": "SRE"}, {"company": "Acme", "role": "SRE"}]'
    via_cli = tether(tmp_path, "run", f"{script}:apply_batch", "--input", jobs, "--id", "cli")
    assert via_cli.returncode == 0, via_cli.stderr
    assert json.loads(via_cli.stdout)["result"] == {"applied": 2, "failed": 0}
