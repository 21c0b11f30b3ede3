"""Clean exits with real processes: nothing is left half-done.

A process that starts a run, answers a waiting one, is closed, gets SIGTERM
or Ctrl-C lets its step in flight finish and be recorded, then hands the run
back; the next process continues it without repeating a side effect. Each
step writes its side effect to a ledger *first* and then takes a while, so
an exit always lands mid-step: a process killed there would leave the
effect done and the step unrecorded, and the next process would repeat it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import App, EndReason, RunStatus
from tether.testing import eventually_sync

from ._env import child_pythonpath

MODULE = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import tether

    LEDGER = os.environ["LEDGER"]
    app = tether.App(os.environ["DB"], shutdown_grace=float(os.environ.get("GRACE", "30")))

    def effect(line: str, seconds: float = 0.4) -> str:
        with open(LEDGER, "a") as f:  # the side effect happens first ...
            f.write(line + "\\n")
            f.flush()
            os.fsync(f.fileno())
        time.sleep(seconds)  # ... then the step takes a while
        return line

    async def slow_async(line: str) -> str:
        effect(line, 0)
        await asyncio.sleep(float(os.environ.get("SLOW", "0.4")))
        return line

    @app.workflow()
    async def gated(wf: tether.Workflow, _: dict) -> str:
        await wf.step("a", lambda: effect("a"))
        who = await wf.wait_for_signal("go")
        await wf.step("b", lambda: effect("b:" + who))
        return "done"

    @app.workflow()
    async def five(wf: tether.Workflow) -> int:
        for i in range(1, 6):
            await wf.step(f"s{i}", lambda i=i: effect(f"s{i}"))
        return 5

    @app.workflow()
    async def slow(wf: tether.Workflow) -> str:
        return await wf.step("slow", lambda: slow_async("slow"))

    @app.workflow()
    async def order(wf: tether.Workflow) -> str:
        for part in ("reserve", "charge", "ship"):
            await wf.step(part, lambda p=part: effect(p, 0),
                          compensate=lambda p=part: effect("undo-" + p))
        await wf.wait_for_signal("go")
        return "done"

    @app.workflow()
    async def doomed(wf: tether.Workflow) -> None:
        for part in ("reserve", "charge"):
            await wf.step(part, lambda p=part: effect(p, 0),
                          compensate=lambda p=part: effect("undo-" + p))
        raise KeyError("sold out")

    def wait_for_line(line: str) -> None:
        while True:
            try:
                if line in open(LEDGER).read().split():
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.01)
    """
)


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    (tmp_path / "m.py").write_text(MODULE)
    return {
        **os.environ,
        "DB": database_url,
        "LEDGER": str(tmp_path / "ledger"),
        "PYTHONPATH": child_pythonpath(tmp_path),
    }


def _py(env: dict[str, str], code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ledger(env: dict[str, str]) -> list[str]:
    path = Path(env["LEDGER"])
    return path.read_text().split() if path.exists() else []


def _record(env: dict[str, str], workflow_id: str) -> object:
    app = App(env["DB"])
    try:
        return app.get_record(workflow_id)
    finally:
        app.close()


def test_start_then_exit_and_signal_then_exit_repeat_nothing(env: dict[str, str]) -> None:
    """The issue's reproduction: each script returns and exits while a step runs."""
    started = _py(
        env,
        """
        import m
        m.app.start(m.gated, {}, workflow_id="g1")
        m.wait_for_line("a")  # step a has begun its side effect; now exit normally
        """,
    )
    assert started.returncode == 0, started.stderr
    rec = _record(env, "g1")
    assert rec.steps["a"].status.value == "completed"  # type: ignore[attr-defined]
    assert rec.status is RunStatus.WAITING  # type: ignore[attr-defined]

    signalled = _py(
        env,
        """
        import m
        assert m.app.signal("g1", "go", "ada") is True
        m.wait_for_line("b:ada")  # the woken run is on step b in this process's background
        """,
    )
    assert signalled.returncode == 0, signalled.stderr

    done = _py(env, "import m; print(m.app.run(m.gated, {}, workflow_id='g1').value)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert _ledger(env) == ["a", "b:ada"]  # each side effect exactly once


def test_a_run_handed_back_continues_when_it_is_started_again(env: dict[str, str]) -> None:
    """`start` of a handed-back run's id drives it on (before: it returned the id and
    nothing drove the run, so a server's `POST /runs` of it left it pending)."""
    first = _py(
        env,
        """
        import m
        m.app.start(m.five, workflow_id="f1")
        m.wait_for_line("s2")  # exit mid-step: s2 finishes, the run is handed back
        """,
    )
    assert first.returncode == 0, first.stderr
    assert _record(env, "f1").status is RunStatus.PENDING  # type: ignore[attr-defined]
    again = _py(
        env,
        """
        import m
        m.app.start(m.five, workflow_id="f1")
        print(m.app.result("f1", timeout=60).value)
        m.app.start(m.five, workflow_id="f1")  # an ended run is left as it is
        """,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "5"
    assert _ledger(env) == ["s1", "s2", "s3", "s4", "s5"]  # each once


def test_sigterm_finishes_the_step_in_flight_and_hands_the_run_back(
    env: dict[str, str],
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import m, time\nm.app.start(m.five, workflow_id='t1')\ntime.sleep(120)",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(env, "s2", proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    rec = _record(env, "t1")
    assert rec.status is RunStatus.PENDING  # type: ignore[attr-defined]  # runnable at once
    assert rec.steps["s2"].status.value == "completed"  # type: ignore[attr-defined]
    assert "s3" not in rec.steps  # type: ignore[attr-defined]  # no new step after SIGTERM
    handed = [e for e in rec.events if e.type == "workflow.handed_back"]  # type: ignore[attr-defined]
    assert len(handed) == 1 and handed[0].message == "clean exit"

    done = _py(env, "import m; print(m.app.run(m.five, workflow_id='t1').value)")
    assert done.returncode == 0, done.stderr
    assert _ledger(env) == ["s1", "s2", "s3", "s4", "s5"]


def test_ctrl_c_during_a_foreground_run_hands_it_back(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import m\nm.app.run(m.five, workflow_id='i1')"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(env, "s3", proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    rec = _record(env, "i1")
    assert rec.status is RunStatus.PENDING  # type: ignore[attr-defined]
    assert rec.steps["s3"].status.value == "completed"  # type: ignore[attr-defined]
    assert "s4" not in rec.steps  # type: ignore[attr-defined]
    done = _py(env, "import m; print(m.app.run(m.five, workflow_id='i1').value)")
    assert done.stdout.strip() == "5", done.stderr
    assert _ledger(env) == ["s1", "s2", "s3", "s4", "s5"]


def test_when_the_grace_period_runs_out_the_step_is_recorded_interrupted(
    env: dict[str, str],
) -> None:
    quick = _py(
        env,
        """
        import m
        m.app.start(m.slow, workflow_id="late")
        m.wait_for_line("slow")
        """,
        GRACE="0.2",
        SLOW="60",
    )
    assert quick.returncode == 0, quick.stderr
    rec = _record(env, "late")
    assert rec.status is RunStatus.PENDING  # type: ignore[attr-defined]
    assert rec.steps["slow"].status.value == "running"  # type: ignore[attr-defined]
    handed = [e for e in rec.events if e.type == "workflow.handed_back"]  # type: ignore[attr-defined]
    assert [e.message for e in handed] == ["interrupted step: slow"]
    assert handed[0].detail == {"interrupted": ["slow"]}
    # the interrupted step runs again in the next process (it never completed)
    done = _py(env, "import m; print(m.app.run(m.slow, workflow_id='late').value)", SLOW="0")
    assert done.stdout.strip() == "slow", done.stderr
    assert _ledger(env) == ["slow", "slow"]


def _wait_for_line(env: dict[str, str], line: str, proc: subprocess.Popen[str]) -> None:

    def written() -> bool:
        if proc.poll() is not None:
            raise ChildProcessError(f"child exited early ({proc.returncode}): {proc.stderr}")
        assert line in _ledger(env), f"the ledger holds {_ledger(env)}"
        return True

    eventually_sync(written, timeout=60)


def test_a_forked_child_exits_without_touching_its_parents_loop(env: dict[str, str]) -> None:
    """multiprocessing forks: the child has no loop thread, so the exit hook leaves the
    parent's runs alone instead of waiting for a loop that is not there."""
    done = _py(
        env,
        """
        import multiprocessing as mp
        import m
        m.app.start(m.five, workflow_id="fork-1")
        m.wait_for_line("s1")
        child = mp.get_context("fork").Process(target=print, args=("child ran",))
        child.start()
        child.join(30)
        assert child.exitcode == 0, child.exitcode
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "child ran" in done.stdout


def test_a_cancel_with_compensation_then_exit_leaves_the_rest_to_the_next_process(
    env: dict[str, str],
) -> None:
    parked = _py(env, "import m; print(m.app.run(m.order, workflow_id='o1').status)")
    assert parked.returncode == 0, parked.stderr
    cancelled = _py(
        env,
        """
        import m
        assert m.app.cancel("o1", "no longer needed", compensate=True) == ["o1"]
        m.wait_for_line("undo-ship")  # its compensation runs here; exit while it does
        """,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert "Task exception was never retrieved" not in cancelled.stderr
    rec = _record(env, "o1")
    assert rec.status is RunStatus.CANCELLED  # type: ignore[attr-defined]
    assert rec.events[-1].type == "workflow.handed_back"  # type: ignore[attr-defined]

    adopted = _py(
        env,
        """
        import m
        from tether.testing import eventually_sync
        assert m.app.recover_orphans(grace=0) == ["o1"]
        eventually_sync(lambda: m.app.get_run("o1").status.value == "compensated", timeout=60)
        """,
    )
    assert adopted.returncode == 0, adopted.stderr
    assert _ledger(env) == ["reserve", "charge", "ship", "undo-ship", "undo-charge", "undo-reserve"]


def test_a_failed_runs_compensation_cut_short_by_an_exit_is_finished_by_the_next_process(
    env: dict[str, str],
) -> None:
    started = _py(
        env,
        """
        import m
        m.app.start(m.doomed, workflow_id="d1")
        m.wait_for_line("undo-charge")  # it failed and compensates; exit while it does
        """,
    )
    assert started.returncode == 0, started.stderr
    rec = _record(env, "d1")
    assert rec.status is RunStatus.PENDING, rec.status  # type: ignore[attr-defined]
    assert rec.end_reason is EndReason.FAILED  # type: ignore[attr-defined]
    assert _ledger(env) == ["reserve", "charge", "undo-charge"]

    resumed = _py(
        env,
        """
        import m
        try:
            m.app.run(m.doomed, workflow_id="d1")
        except KeyError as exc:
            print("raised", exc)
        """,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "raised 'sold out'" in resumed.stdout
    rec = _record(env, "d1")
    assert rec.status is RunStatus.COMPENSATED  # type: ignore[attr-defined]
    assert _ledger(env) == ["reserve", "charge", "undo-charge", "undo-reserve"]


def test_the_async_api_under_asyncio_run_then_the_sync_api_exits_cleanly(
    env: dict[str, str],
) -> None:
    """Before: a script that drove a run under ``asyncio.run`` and then read it with the
    sync API printed "closing tether at exit failed ... Event loop is closed" as it
    exited (the keep-alive task of the closed loop was awaited on the App's own)."""
    done = _py(
        env,
        """
        import asyncio
        import m

        async def main() -> int:
            return (await m.app.arun(m.five, workflow_id="f1")).value

        assert asyncio.run(main()) == 5
        print(m.app.result("f1").value)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    assert "Traceback" not in done.stderr and "failed" not in done.stderr, done.stderr
