"""`tether worker`: serves the App's queue on the database the rule picks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._helpers import TETHER, effects, tether


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
        [TETHER, *serve, "--db", db],  # --db after the command
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
    assert f"database: {db} (from --db)" in log
    assert "claimed" in log and "run=queued-1" in log and "finished" in log
    assert "ghost" not in log  # the engine's word, not the reader's
    assert effects(tmp_path) == ["hello", "world"]


def _serve_until_started(tmp: Path, args: list[str], env: dict[str, str]) -> str:
    """Start `tether worker ARGS`, wait until it has started, stop it; its stderr."""
    proc = subprocess.Popen([TETHER, *args], cwd=tmp, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = ""
        while "worker started" not in first:
            line = proc.stderr.readline()
            if not line:
                break
            first += line
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return first + rest


def test_worker_db_wins_over_the_app_in_the_module(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import tether\n\napp = tether.App('sqlite:///mod.db')\n\n"
        "@app.workflow\nasync def w(wf):\n    return 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    other = f"sqlite:///{tmp_path}/other.db"
    log = _serve_until_started(tmp_path, ["--db", other, "worker", "--app", "mod.py:app"], env)
    assert f"database: {other} (from --db)" in log, log
    assert (tmp_path / "other.db").exists() and not (tmp_path / "mod.db").exists()
    log = _serve_until_started(tmp_path, ["worker", "--app", "mod.py:app"], env)
    assert "database: sqlite:///mod.db (from the App in mod.py)" in log, log


def test_worker_refuses_what_is_not_an_app(tmp_path: Path, flow: Path) -> None:
    res = tether(tmp_path, "worker", "--app", "flows.py:greet")
    assert res.returncode == 2 and "not a tether.App" in res.stderr
    res = tether(tmp_path, "worker", "--app", "flows.py:app", "--concurrency", "0")
    assert res.returncode == 2 and "--concurrency" in res.stderr
    # before: served with no grace at all (a SIGTERM cut the step in flight off)
    res = tether(tmp_path, "worker", "--app", "flows.py:app", "--grace", "nan")
    assert res.returncode == 2 and "grace must be a number of seconds" in res.stderr


def test_queues_may_be_given_separated_by_commas(tmp_path: Path) -> None:
    # `-q a,b` (Celery's way) served one queue named "a,b", idle without a word
    (tmp_path / "mod.py").write_text(
        "import tether\n\napp = tether.App('sqlite:///mod.db')\n\n"
        "@app.workflow\nasync def w(wf):\n    return 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    args = ["worker", "--app", "mod.py:app", "-q", "a,b", "-q", "c,a"]
    log = _serve_until_started(tmp_path, args, env)
    assert "worker started" in log and "queues=['a', 'b', 'c']" in log, log


def test_a_worker_pointed_at_a_database_that_does_not_exist_exits_4(tmp_path: Path) -> None:
    # it retried for ever (a missing database, role or password never comes back by
    # itself), where the README's exit codes promise 4 for a database it cannot use
    (tmp_path / "mod.py").write_text(
        "import tether\n\napp = tether.App('sqlite:///mod.db')\n\n"
        "@app.workflow\nasync def w(wf):\n    return 1\n"
    )
    missing = "postgresql://127.0.0.1:5432/tether_no_such_database"
    res = tether(tmp_path, "worker", "--app", "mod.py:app", db=missing)
    assert res.returncode == 4, res.stderr
    assert 'database "tether_no_such_database" does not exist' in res.stderr
