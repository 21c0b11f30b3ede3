"""A script that used the sync API, then serves a Worker under asyncio.run, exits clean.

`app.start(...)` drives its run on the App's loop thread; the worker used to run
the same App on asyncio.run's loop beside it, so the two took the store (on
PostgreSQL its connection pool) from each other: the started run's drive died
with a traceback (`'NoneType' object has no attribute 'connection'`) and was
left running with its step unrecorded. Real processes, normal exit and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import App, RunStatus
from tether.testing import eventually_sync

from .test_exit import MODULE

SERVE = """
import asyncio, os
import m
from tether.worker import Worker

m.app.start(m.five, workflow_id="bg")   # driven on the App's loop thread
m.app.submit(m.five, workflow_id="queued")  # the worker's job
m.wait_for_line("s1")

async def main() -> None:
    worker = Worker(m.app, poll_interval=0.05, maintenance_interval=0.2)
    if os.environ.get("UNTIL"):
        async def stop_when_done() -> None:
            while m.LEDGER_COUNT() < int(os.environ["UNTIL"]):
                await asyncio.sleep(0.01)
            worker.stop()
        asyncio.ensure_future(stop_when_done())
    await worker.run()

asyncio.run(main())
print("served", flush=True)
"""

COUNT = """
def LEDGER_COUNT() -> int:
    try:
        return len(open(LEDGER).read().split())
    except FileNotFoundError:
        return 0
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    (tmp_path / "m.py").write_text(MODULE + COUNT)
    return {
        **os.environ,
        "DB": database_url,
        "LEDGER": str(tmp_path / "ledger"),
        # the tether under test (PYTHONPATH may name a copy of src), after the module
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }


def _spawn(env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVE)],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ledger(env: dict[str, str]) -> list[str]:
    path = Path(env["LEDGER"])
    return path.read_text().split() if path.exists() else []


def _finish(env: dict[str, str], proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def _status(env: dict[str, str], workflow_id: str) -> RunStatus:
    app = App(env["DB"])
    try:
        return app.get_run(workflow_id).status
    finally:
        app.close()


def test_a_worker_after_the_sync_api_exits_clean_with_both_runs_done(
    env: dict[str, str],
) -> None:
    proc = _spawn(env, UNTIL="10")  # the worker stops once both runs wrote five lines
    out, err = _finish(env, proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "failed" not in err, err
    assert out.strip() == "served"
    assert _status(env, "bg") is RunStatus.COMPLETED
    assert _status(env, "queued") is RunStatus.COMPLETED
    assert sorted(_ledger(env)) == sorted([f"s{i}" for i in range(1, 6)] * 2)


def test_sigterm_stops_the_worker_and_the_sync_runs_cleanly(env: dict[str, str]) -> None:
    proc = _spawn(env)

    def serving() -> bool:
        if proc.poll() is not None:
            raise ChildProcessError(f"exited early ({proc.returncode})")
        assert len(_ledger(env)) >= 3, _ledger(env)  # both runs are past their first step
        return True

    eventually_sync(serving, timeout=60)
    proc.send_signal(signal.SIGTERM)
    _, err = _finish(env, proc)
    assert proc.returncode == 0, err  # a worker stopped by SIGTERM exits 0
    assert "Traceback" not in err and "failed" not in err, err

    # no step left half-done: whatever was in flight was recorded, so the next process
    # finishes both runs without repeating a side effect
    for wid in ("bg", "queued"):
        assert _status(env, wid) in (RunStatus.PENDING, RunStatus.COMPLETED)
    done = subprocess.run(
        [sys.executable, "-c", "import m\nfor w in ('bg', 'queued'): m.app.run(m.five, workflow_id=w)"],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(_ledger(env)) == sorted([f"s{i}" for i in range(1, 6)] * 2)
