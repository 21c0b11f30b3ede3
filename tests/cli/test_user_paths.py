"""What a new user meets following the README: the hints the command gives name the
command that actually helps, and its errors say how to fix them."""

from __future__ import annotations

import re
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tether import App, FakeClock, Workflow

from .._postgres import PostgresServer
from ._helpers import TETHER, tether


def test_show_of_a_queued_run_names_its_queue_in_the_worker_hint(
    tmp_path: Path, flow: Path
) -> None:
    # `runs show` of a run queued on 'agents' told to start `tether worker --app
    # FILE.py:app`: a worker of the default queue, which never takes it
    queued = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "ada"}', "--id", "q1",
                    "-q", "agents")  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    shown = tether(tmp_path, "runs", "show", "q1")
    assert shown.returncode == 0, shown.stderr
    facts = " ".join(shown.stdout.split())
    assert "no live process drives workflow 'greet' on queue 'agents'" in facts
    assert "`tether worker --app FILE.py:app -q agents`" in facts


def _finished(url: str, count: int) -> None:
    """`count` runs that finished 40 days ago."""

    async def done(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1)

    app = App(url, clock=FakeClock(datetime.now(UTC) - timedelta(days=40)))
    for i in range(count):
        app.run(done, workflow_id=f"old-{i}")
    app.close()


def test_prune_says_what_it_is_deleting_before_it_starts(tmp_path: Path) -> None:
    # thousands of runs took 14 s on PostgreSQL without a word on the terminal
    url = f"sqlite:///{tmp_path}/t.db"
    _finished(url, 3)
    res = tether(tmp_path, "runs", "prune", "--older-than", "30d", "--status", "completed")
    assert res.returncode == 0, res.stderr
    assert "deleting 3 finished run(s) older than 30d" in res.stderr
    assert "deleted 3 finished run(s)" in res.stdout


def test_an_interrupted_prune_says_how_many_it_deleted(postgres: PostgresServer) -> None:
    # Ctrl-C said only "interrupted": each batch deleted stays deleted, and the user
    # could not tell whether anything was
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.url_with_schema(schema)
    _finished(url, 3)
    with psycopg.connect(postgres.url, autocommit=False) as lock:
        lock.execute(f"SELECT 1 FROM {schema}.runs FOR UPDATE").fetchall()  # the delete waits
        proc = subprocess.Popen(
            [TETHER, "--db", url, "runs", "prune", "--older-than", "30d"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert proc.stderr is not None
            assert "deleting 3 finished run(s)" in proc.stderr.readline()
            proc.send_signal(signal.SIGINT)  # the lock held: nothing can be deleted meanwhile
            _, errors = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    try:
        assert proc.returncode == 130, errors
        said = re.search(r"interrupted after deleting (\d) of 3 finished run\(s\)", errors)
        assert said is not None, errors
        assert "the same command deletes the rest" in errors and "Traceback" not in errors
        app = App(url)
        left = len(app.list_runs())
        app.close()
        assert left == 3 - int(said.group(1))
    finally:
        postgres.drop_schema(schema)


def test_run_of_the_app_instead_of_a_workflow_says_which_names_would_do(
    tmp_path: Path, flow: Path
) -> None:
    # `tether run flows.py:app` (the App, as `worker --app` takes it) said only "got
    # <tether.app.App object at 0x7f...>"
    res = tether(tmp_path, "run", f"{flow}:app")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "is an object of type App, not a workflow" in res.stderr
    assert "async functions there: " in res.stderr and "greet" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("grace", ["nan", "inf"])
def test_worker_refuses_a_grace_that_is_no_number_of_seconds_naming_the_option(
    tmp_path: Path, flow: Path, grace: str
) -> None:
    # nan said "... or a timedelta; pass e.g. 60 or timedelta(days=2)": Python, not a
    # command line; inf was not refused by click's range
    res = tether(tmp_path, "worker", "--app", f"{flow}:app", "--grace", grace)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"--grace {grace}: grace must be a number of seconds" in res.stderr
    assert "timedelta" not in res.stderr and "--grace 60" in res.stderr


@pytest.mark.parametrize("queues", [["-q", "agents,"], ["-q", "agents", "-q", ""]])
def test_worker_refuses_a_blank_queue_name_naming_the_option(
    tmp_path: Path, flow: Path, queues: list[str]
) -> None:
    # `-q agents,` said "queue name must be a non-empty string, got ''; pass a name such
    # as 'fetch-user'", with no word of which option or of the commas
    res = tether(tmp_path, "worker", "--app", f"{flow}:app", *queues)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "a queue name is blank; give names separated by commas" in res.stderr
