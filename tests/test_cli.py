"""The `tether` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FLOW = textwrap.dedent(
    """
    import os
    import tether

    def effect(name):
        with open(os.environ["EFFECTS"], "a") as f:
            f.write(name + "\\n")
        return name

    async def greet(wf: tether.Workflow, who: dict) -> str:
        await wf.step("hello", lambda: effect("hello"))
        await wf.step("world", lambda: effect("world"))
        return "hi " + who["name"]

    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise RuntimeError("the agent gave up")

    async def waits(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go")

    app = tether.App(os.environ.get("TETHER_DATABASE_URL"))
    for fn in (greet, broken, waits):
        app.workflow(fn)
    """
)


def tether(tmp: Path, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EFFECTS": str(tmp / "effects.log"),
        "TETHER_DATABASE_URL": db or f"sqlite:///{tmp}/t.db",
    }
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args],
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


def test_run_resume_and_inspect(tmp_path: Path, flow: Path) -> None:
    first = tether(tmp_path, "run", f"{flow}:greet", "--input", '{"name": "ada"}', "--id", "g1")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "workflowId": "g1",
        "status": "completed",
        "result": "hi ada",
    }
    again = tether(tmp_path, "run", f"{flow}:greet", "--id", "g1")  # resumes: recorded input
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["result"] == "hi ada"
    assert (tmp_path / "effects.log").read_text().split() == ["hello", "world"]

    listed = tether(tmp_path, "runs", "list", "--json")
    assert [r["workflowId"] for r in json.loads(listed.stdout)] == ["g1"]
    shown = tether(tmp_path, "runs", "show", "g1")
    assert shown.returncode == 0 and "hello" in shown.stdout and "completed" in shown.stdout
    events = json.loads(tether(tmp_path, "runs", "events", "g1", "--json").stdout)
    assert events[0]["type"] == "workflow.running" and events[-1]["type"] == "workflow.completed"
    exported = json.loads(tether(tmp_path, "runs", "export", "g1").stdout)
    assert exported["version"] == 1 and exported["workflowId"] == "g1"
    assert set(exported["steps"]) == {"hello", "world"}


def test_input_from_file_and_module_target(tmp_path: Path, flow: Path) -> None:
    (tmp_path / "input.json").write_text('{"name": "lin"}')
    res = tether(tmp_path, "run", "flows:greet", "--input", "@input.json", "--id", "m1")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "hi lin"


def test_failing_workflow_exits_1(tmp_path: Path, flow: Path) -> None:
    res = tether(tmp_path, "run", f"{flow}:broken", "--id", "b1")
    assert res.returncode == 1
    assert "the agent gave up" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py:greet"], "no such file"),
        (["run", "flows.py:nope"], "has no 'nope'"),
        (["run", "flows.py:greet", "--input", "{not json"], "not valid JSON at line 1 column 2"),
        (["run", "flows.py:greet", "--input", "@absent.json"], "file not found"),
        (["run", "nocolon"], "FILE.py:NAME"),
        (["runs", "list", "--status", "sleepy"], "unknown run status"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, flow: Path, args: list[str], message: str) -> None:
    res = tether(tmp_path, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_run_exits_3(tmp_path: Path, flow: Path) -> None:
    for args in (
        ["runs", "show", "ghost"],
        ["runs", "export", "ghost"],
        ["runs", "cancel", "ghost"],
    ):
        res = tether(tmp_path, *args)
        assert res.returncode == 3, res.stderr
        assert "ghost" in res.stderr


def test_foreign_database_exits_4(tmp_path: Path, flow: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 512)
    res = tether(tmp_path, "runs", "list", db=f"sqlite:///{junk}")
    assert res.returncode == 4
    assert "not a readable SQLite database" in res.stderr


def test_signal_resume_and_cancel(tmp_path: Path, flow: Path) -> None:
    started = tether(tmp_path, "run", f"{flow}:waits", "--id", "w1")
    assert json.loads(started.stdout)["status"] == "waiting"
    sent = tether(tmp_path, "runs", "signal", "w1", "go", "--payload", '{"ok": true}')
    assert sent.returncode == 0 and "woke" in sent.stdout
    resumed = tether(tmp_path, "runs", "resume", "w1", "--app", f"{flow}:app")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {
        "workflowId": "w1",
        "status": "completed",
        "result": {"ok": True},
    }

    tether(tmp_path, "run", f"{flow}:waits", "--id", "w2")
    cancelled = tether(tmp_path, "runs", "cancel", "w2", "--reason", "not needed")
    assert cancelled.returncode == 0 and "w2" in cancelled.stdout
    again = tether(tmp_path, "runs", "cancel", "w2")
    assert again.returncode == 2 and "already ended" in again.stderr
    evt = tether(tmp_path, "runs", "event", "nobody.listens", "--payload", "{}")
    assert evt.returncode == 0 and "woke 0 run(s)" in evt.stdout


def test_help_and_version(tmp_path: Path) -> None:
    res = tether(tmp_path, "--help")
    assert res.returncode == 0 and "Exit codes" in res.stdout
    assert "worker" in res.stdout and "runs" in res.stdout
    assert tether(tmp_path, "--version").stdout.startswith("tether ")


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
        assert "completed" in r.stdout
    assert "agent adapter calls in this process: 0" in runs[1].stdout
    assert (tmp_path / ".tether" / "tether.db").exists()


def test_worker_command_serves_and_stops_on_sigterm(tmp_path: Path, flow: Path) -> None:
    import signal
    import time

    db = f"sqlite:///{tmp_path}/t.db"
    env = {**os.environ, "EFFECTS": str(tmp_path / "effects.log"), "TETHER_DATABASE_URL": db}
    submit = (
        "import sys; sys.path.insert(0, '.'); from flows import app, greet;"
        "print(app.submit(greet, {'name': 'q'}, workflow_id='queued-1')); app.close()"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", submit], cwd=tmp_path, env=env, timeout=60, check=True
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether.cli",
            "worker",
            "--app",
            f"{flow}:app",
            "--concurrency",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = tether(tmp_path, "runs", "list", "--json")
            if json.loads(shown.stdout)[0]["status"] == "completed":
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "claimed" in log and "run=queued-1" in log and "finished" in log
    assert (tmp_path / "effects.log").read_text().split() == ["hello", "world"]
