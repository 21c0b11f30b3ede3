"""Exits a user meets beyond one clean SIGTERM, with real processes.

A second Ctrl-C or SIGTERM while the first waits out the grace period cuts it
short, as it does for a worker: the run is handed back at once, its step in
flight recorded interrupted, not left `running` with a traceback. An App built
in the main thread and first used from another thread (a web server's) still
turns SIGTERM into a normal exit that hands its runs back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import RunStatus
from tether.testing import eventually_sync

from .test_exit import _ledger, _record

MODULE = textwrap.dedent(
    """
    import logging, os, sys, time
    import tether

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    LEDGER = os.environ["LEDGER"]
    app = tether.App(os.environ["DB"])

    def effect(line: str, seconds: float) -> str:
        with open(LEDGER, "a") as f:
            f.write(line + "\\n")
        time.sleep(seconds)
        return line

    @app.workflow()
    async def two(wf: tether.Workflow) -> str:
        await wf.step("long", lambda: effect("long", float(os.environ.get("LONG", "0"))))
        await wf.step("after", lambda: effect("after", 0))
        return "done"
    """
)


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """`m` importable by the children, and the tether under test when PYTHONPATH names one."""
    (tmp_path / "m.py").write_text(MODULE)
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    ledger = str(tmp_path / "ledger")
    return dict(os.environ) | {"DB": database_url, "LEDGER": ledger, "PYTHONPATH": path}


@contextlib.contextmanager
def _child(env: dict[str, str], code: str, **extra: str) -> Iterator[subprocess.Popen[str]]:
    """A child process running `code`, killed on the way out if it still runs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _signalled(proc: subprocess.Popen[str], sig: int) -> str:
    """Send `sig`; the child's stderr once it ended."""
    proc.send_signal(sig)
    return proc.communicate(timeout=60)[1]


def _when_in_ledger(env: dict[str, str], line: str, proc: subprocess.Popen[str]) -> None:
    def written() -> bool:
        assert proc.poll() is None, f"the child exited early ({proc.returncode})"
        assert line in _ledger(env), f"the ledger holds {_ledger(env)}"
        return True

    eventually_sync(written, timeout=60)


def _handed_back_interrupted(env: dict[str, str], workflow_id: str) -> None:
    """The run is runnable at once, its cut-off step named, and the next process
    runs that step again and goes on."""
    rec = _record(env, workflow_id)
    assert rec.status is RunStatus.PENDING  # type: ignore[attr-defined]
    handed = [e for e in rec.events if e.type == "workflow.handed_back"]  # type: ignore[attr-defined]
    assert [e.message for e in handed] == ["interrupted step: long"]
    again = subprocess.run(
        [sys.executable, "-c", f"import m; print(m.app.run(m.two, workflow_id={workflow_id!r}))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert _ledger(env) == ["long", "long", "after"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_during_the_grace_period_hands_the_run_back_at_once(
    env: dict[str, str], sig: signal.Signals
) -> None:
    code = "import m, time\nm.app.start(m.two, workflow_id='r1')\ntime.sleep(120)"
    with _child(env, code, LONG="60") as proc:
        _when_in_ledger(env, "long", proc)
        proc.send_signal(sig)
        assert proc.stderr is not None
        for line in proc.stderr:  # the exit waits for the step in flight (grace 30 s)
            if line.startswith("stopping:"):
                break
        stderr = _signalled(proc, sig)
    _handed_back_interrupted(env, "r1")  # (before: left running, waiting for its claim)
    assert "closing tether at exit failed" not in stderr, stderr
    assert "stopping at once" in stderr, stderr


def test_sigterm_hands_back_a_run_started_from_another_thread(env: dict[str, str]) -> None:
    code = """
        import m, threading, time
        t = threading.Thread(target=lambda: m.app.start(m.two, workflow_id="t1"))
        t.start(); t.join()
        time.sleep(120)
    """
    with _child(env, code, LONG="0.5") as proc:
        _when_in_ledger(env, "long", proc)
        stderr = _signalled(proc, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, stderr  # a normal exit, not killed
    rec = _record(env, "t1")
    assert rec.status is RunStatus.PENDING  # type: ignore[attr-defined]
    assert rec.steps["long"].status.value == "completed"  # type: ignore[attr-defined]
    assert "after" not in rec.steps  # type: ignore[attr-defined]
    handed = [e for e in rec.events if e.type == "workflow.handed_back"]  # type: ignore[attr-defined]
    assert [e.message for e in handed] == ["clean exit"]


def test_sigterm_before_any_run_still_ends_the_process_as_by_default(
    env: dict[str, str],
) -> None:
    code = "import m, sys, time\nprint('built', flush=True)\ntime.sleep(120)"
    with _child(env, code) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "built"
        _signalled(proc, signal.SIGTERM)
    assert proc.returncode == -signal.SIGTERM


ASYNC_MAIN = """
    import asyncio, os, m

    async def main() -> None:
        if os.environ.get("CLOSE"):
            async with m.app:
                await m.app.arun(m.two, workflow_id="a1")
        else:  # forgets to close the App: asyncio.run cancels the run's task at its end
            await m.app.astart(m.two, workflow_id="a1")
            while "long" not in (open(m.LEDGER).read() if os.path.exists(m.LEDGER) else ""):
                await asyncio.sleep(0.01)

    asyncio.run(main())
"""


def test_ctrl_c_in_asyncio_run_hands_the_run_back(env: dict[str, str]) -> None:
    with _child(env, ASYNC_MAIN, LONG="60", CLOSE="1") as proc:
        _when_in_ledger(env, "long", proc)
        # asyncio.run cancels its main task, and with it the drive of `arun`
        stderr = _signalled(proc, signal.SIGINT)
    assert "KeyboardInterrupt" in stderr, stderr
    _handed_back_interrupted(env, "a1")  # (before: left running, its claim renewed no more)


def test_an_asyncio_program_that_forgets_to_close_the_app_hands_its_run_back(
    env: dict[str, str],
) -> None:
    with _child(env, ASYNC_MAIN, LONG="60") as proc:
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    _handed_back_interrupted(env, "a1")
