"""The forty-first walk of the `tether` command as a new user meets it: a queue named
with a control character, retry-compensations and rerun refusals that named the Python
API, a cancelled run resumed with an App that lacks its workflow, and `runs watch`
reading a run's whole record again at each renewal of its owner's claim."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import tether
from tether import App
from tether.cli.watch import RunReader

from ._helpers import tether as run_tether

OTHER = "import os\nimport tether\napp = tether.App(os.environ['FLOWS_DB'])\n"


def _listed(tmp_path: Path) -> list[str]:
    listed = run_tether(tmp_path, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [r["workflowId"] for r in json.loads(listed.stdout)]


def test_submit_and_worker_refuse_a_queue_named_with_a_control_character(
    tmp_path: Path, flow: Path
) -> None:
    # before: `submit -q $'a\nb'` queued the run (exit 0), and its hint split in two lines
    run_tether(tmp_path, "run", f"{flow}:greet", "-i", '{"name": "a"}', "--id", "g0")
    submitted = run_tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "b"}', "-q", "a\nb")
    assert submitted.returncode == 2, submitted.stderr
    assert "queue 'a\\nb' contains a control character ('\\n')" in submitted.stderr
    assert _listed(tmp_path) == ["g0"]
    worker = run_tether(tmp_path, "worker", "--app", f"{flow}:app", "-q", "default,x\ty")
    assert worker.returncode == 2, worker.stderr
    assert "'x\\ty' contains a control character" in worker.stderr


def test_retry_compensations_and_rerun_refusals_name_commands(tmp_path: Path, flow: Path) -> None:
    # before: "... (rerun_from retries a failed or completed run)": a Python method
    done = run_tether(tmp_path, "run", f"{flow}:greet", "-i", '{"name": "a"}', "--id", "g1")
    assert done.returncode == 0, done.stderr
    app = f"{flow}:app"
    undo = run_tether(tmp_path, "runs", "retry-compensations", "g1", "--app", app)
    assert undo.returncode == 2, undo.stderr
    assert "run 'g1' is completed; only a compensation_failed run" in undo.stderr
    assert (
        "`tether runs rerun g1 --from STEP --app FILE.py:APP` retries a completed or failed run"
        in undo.stderr
    )
    assert run_tether(tmp_path, "submit", f"{flow}:waits", "--id", "w1").returncode == 0
    pending = run_tether(tmp_path, "runs", "retry-compensations", "w1", "--app", app)
    assert pending.returncode == 2 and "`tether runs watch w1` follows it" in pending.stderr
    assert run_tether(tmp_path, "runs", "cancel", "w1").returncode == 0
    rerun = run_tether(tmp_path, "runs", "rerun", "w1", "--from", "go", "--app", app)
    assert rerun.returncode == 2, rerun.stderr
    assert "run 'w1' was cancelled; `tether runs rerun` retries a run" in rerun.stderr
    for said in (undo.stderr, pending.stderr, rerun.stderr):
        error = said.split("error: ")[1]  # (the database line holds the test's folder)
        assert "rerun_from" not in error and "retry_compensations" not in error


def test_a_cancelled_run_resumed_with_an_app_without_its_workflow_says_it_ended(
    tmp_path: Path, flow: Path
) -> None:
    # before: "no workflow registered as 'waits'" (exit 2), of a run with nothing to run
    (tmp_path / "other.py").write_text(OTHER)
    assert run_tether(tmp_path, "submit", f"{flow}:waits", "--id", "w1").returncode == 0
    assert run_tether(tmp_path, "runs", "cancel", "w1").returncode == 0
    own = run_tether(tmp_path, "runs", "resume", "w1", "--app", f"{flow}:app")
    other = run_tether(tmp_path, "runs", "resume", "w1", "--app", f"{tmp_path}/other.py:app")
    assert other.returncode == own.returncode == 1, other.stderr
    assert "no workflow registered" not in other.stderr
    assert "run w1 has ended (cancelled): nothing of it is left to run" in other.stderr
    assert "error: run w1 was cancelled" in other.stderr
    assert json.loads(other.stdout) == json.loads(own.stdout)
    assert json.loads(other.stdout)["status"] == "cancelled"


def test_watch_takes_a_renewed_claim_without_reading_the_history_again(
    tmp_path: Path,
) -> None:
    # before: each renewal of the owner's claim (every few seconds of a long step)
    # changed the run's row, and the redraw read every step and event again
    started, release = threading.Event(), threading.Event()
    with App(f"sqlite:///{tmp_path}/t.db") as app:

        def slow() -> str:
            started.set()
            assert release.wait(60)
            return "ok"

        @app.workflow(name="long")
        async def long(wf: tether.Workflow) -> str:
            await wf.step("first", lambda: 1)
            return await wf.step("slow", slow)

        driver = threading.Thread(target=lambda: app.run(long, workflow_id="r"))
        driver.start()
        try:
            assert started.wait(60)
            reader = RunReader(app, "r")
            rec, _, settled = reader.read()
            assert rec.status is tether.RunStatus.RUNNING and not settled
            owner = app.get_run("r").owner
            assert owner is not None and rec.owner_expires_at is not None
            app.run_sync(app.store.renew_owner(owner, ["r"], lease=3600, now=None))
            renewed = app.get_run("r").owner_expires_at
            assert renewed is not None and renewed > rec.owner_expires_at
            again, _, _ = reader.read()
            assert again.owner_expires_at == renewed  # the header judges the owner by it
            assert again.steps is rec.steps and again.events is rec.events  # not read again
        finally:
            release.set()
            driver.join(60)
        done, _, settled = reader.read()
        assert settled and done.status is tether.RunStatus.COMPLETED


UNDONE = """
import os
import tether

app = tether.App(os.environ["FLOWS_DB"])


def refund(_charge: object) -> None:
    if os.environ.get("REFUNDS") != "up":
        raise ConnectionError("refund service unavailable")


@app.workflow()
async def order(wf: tether.Workflow) -> None:
    await wf.step("charge", lambda: "c1", compensate=refund)
    raise ValueError("address rejected")
"""


def test_a_failed_run_compensated_after_says_its_recorded_failure_when_resumed(
    tmp_path: Path,
) -> None:
    # before: "run o1 stopped: ValueError: ...", as for a bug in tether, with no next step
    (tmp_path / "order.py").write_text(UNDONE)
    target, app = f"{tmp_path}/order.py:order", f"{tmp_path}/order.py:app"
    assert run_tether(tmp_path, "run", target, "--id", "o1").returncode == 1
    again = run_tether(tmp_path, "runs", "resume", "o1", "--app", app)
    assert again.returncode == 1, again.stderr
    assert "run o1 failed: ValueError: address rejected (it had already failed" in again.stderr
    assert "`tether runs retry-compensations o1 --app FILE.py:APP`" in again.stderr
    up = {"REFUNDS": "up"}
    assert run_tether(tmp_path, "run", target, "--id", "o2", env=up).returncode == 1
    undone = run_tether(tmp_path, "runs", "resume", "o2", "--app", app, env=up)
    assert undone.returncode == 1, undone.stderr
    assert "its compensations undid its steps: start a new run" in undone.stderr
    assert "stopped" not in again.stderr + undone.stderr
