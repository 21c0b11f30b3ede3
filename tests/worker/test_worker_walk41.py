"""An operator stopping `tether worker` processes mid-step: the worker says at once that
it is stopping (and how long it may take), a run whose step ends within the grace is
logged as handed back (not "finished ... status=pending"), and `--help` states the exit
code of a stop, which is not the 130/143 of tether's other commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether import App, RunStatus
from tether.app import run_on_loop
from tether.cli import cli
from tether.store import JobStatus
from tether.testing import eventually_sync

from .._env import child_pythonpath

FLOWS = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import tether

    app = tether.App(os.environ["DB_URL"])
    GATES = Path(os.environ["GATES"])

    @app.workflow(name="gated")
    async def gated(wf: tether.Workflow, tag: str) -> str:
        await wf.step("first", lambda: tag)
        def held():
            (GATES / f"{tag}.in").touch()  # the step is running
            while not (GATES / f"{tag}.go").exists():  # until the test lets it end
                time.sleep(0.01)
            return tag
        await wf.step("held", held)
        return await wf.step("last", lambda: tag)
    """
)


@pytest.fixture
def flows(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "walk41flows.py").write_text(FLOWS)
    monkeypatch.setenv("DB_URL", database_url)
    monkeypatch.setenv("GATES", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("walk41flows", None)
    yield tmp_path
    sys.modules.pop("walk41flows", None)


def _app() -> App:
    import walk41flows  # type: ignore[import-not-found]

    return walk41flows.app  # type: ignore[no-any-return]


def _serve(folder: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`tether worker` on the flows of `folder`, serving (its signal handlers set)."""
    env = {**os.environ, "PYTHONPATH": child_pythonpath(folder)}
    path = folder / f"worker-{time.monotonic_ns()}.log"
    cli_args = [sys.executable, "-m", "tether.cli", "worker", "--app", "walk41flows:app", *args]
    with path.open("wb") as log:
        proc = subprocess.Popen(cli_args, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    eventually_sync(lambda: "worker started" in path.read_text(), timeout=60)
    return proc, path


def _stopped_mid_step(folder: Path, app: App, proc: subprocess.Popen[bytes], log: Path,
                      tag: str, sig: signal.Signals) -> str:  # fmt: skip
    """Submit a run of `gated`, send `sig` while its held step runs, and wait for the
    worker to say it is stopping (said while the step still runs); the run's id."""
    wid = app.submit(app.get_workflow("gated").fn, tag, workflow_id=tag)
    eventually_sync((folder / f"{tag}.in").exists, timeout=60)
    proc.send_signal(sig)
    eventually_sync(lambda: bool(_lines(log, "stopping:")), timeout=30)
    return wid


def _lines(path: Path, word: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if f" {word} " in f" {line} "]


def test_sigterm_mid_step_says_it_is_stopping_and_logs_the_run_handed_back(flows: Path) -> None:
    """Before, nothing was logged between the SIGTERM and the end of the step (up to the
    grace, 30 s by default), and the run then showed as "finished ... status=pending"."""
    proc, log = _serve(flows, "--grace", "120")
    app = _app()
    try:
        wid = _stopped_mid_step(flows, app, proc, log, "t1", signal.SIGTERM)
        (stopping,) = _lines(log, "stopping:")
        assert "in_flight=1" in stopping and "grace=120.0" in stopping
        assert proc.poll() is None  # the step in flight is waited for
        (flows / "t1.go").touch()
        assert proc.wait(timeout=60) == 0
        assert app.get_run(wid).status is RunStatus.PENDING
        (job,) = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
        assert (job.status, job.attempt) == (JobStatus.QUEUED, 0)  # runnable at once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        app.close()
    (back,) = _lines(log, "handed back")
    assert f"run={wid}" in back
    assert not [line for line in _lines(log, "finished") if f"run={wid}" in line]


def test_asked_twice_the_worker_exits_0_at_once_as_its_help_says(flows: Path) -> None:
    """A second Ctrl-C hands the run back without waiting for its step; the exit code
    (0, not the 130 tether's other commands exit with on Ctrl-C) is in `--help`."""
    proc, log = _serve(flows, "--grace", "600")
    app = _app()
    try:
        wid = _stopped_mid_step(flows, app, proc, log, "t2", signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # the held step never ends: not waited for
        (job,) = run_on_loop(app, app.store.list_jobs(workflow_id=wid))
        assert (job.status, job.attempt) == (JobStatus.QUEUED, 0)
    finally:
        (flows / "t2.go").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        app.close()
    assert [f"run={wid}" in line for line in _lines(log, "handed back")] == [True]
    shown = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=100).output
    assert "Exit codes:" in shown
    assert "0    stopped by SIGTERM or Ctrl-C" in shown and "second Ctrl-C" in shown
