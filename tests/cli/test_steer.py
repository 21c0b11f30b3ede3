"""`tether runs signal|event|complete-token|cancel|resume|rerun`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tether import App
from tether.worker import ServerlessHost

from ..ai._server import ProviderServer
from ._helpers import tether


def test_signal_resume_and_cancel(tmp_path: Path, flow: Path) -> None:
    started = tether(tmp_path, "run", f"{flow}:waits", "--id", "w1")
    assert started.returncode == 0 and json.loads(started.stdout)["status"] == "waiting"
    shown = tether(tmp_path, "runs", "show", "w1")
    assert re.search(r"driven by\s+nobody: no live process drives workflow 'waits'", shown.stdout)
    sent = tether(tmp_path, "runs", "signal", "w1", "go", "--payload", '{"ok": true}')
    assert sent.returncode == 0 and "woke w1" in sent.stdout
    assert "nothing drives it now: it sits pending" in sent.stdout  # it will sit
    assert "tether runs resume w1 --app" in sent.stdout
    assert "Traceback" not in sent.stderr and "warning" not in sent.stderr
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
    # from the wait: forgotten with what came after it, the run waits for 'go' again
    assert rerun_done.returncode == 0, rerun_done.stderr
    assert json.loads(rerun_done.stdout)["status"] == "waiting"
    assert "waits for signal 'go'" in rerun_done.stderr
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
    tether(tmp_path, "run", f"{flow}:waits", "--id", "w3")
    undo = tether(tmp_path, "runs", "cancel", "w3", "--compensate")
    assert undo.returncode == 0 and "w3" in undo.stdout
    assert "tether runs resume w3 --app" in undo.stderr  # where the compensations run
    rerun = tether(tmp_path, "run", f"{flow}:waits", "--id", "w2")
    assert rerun.returncode == 1 and "run w2 was cancelled" in rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "cancelled"
    # compensated after its cancel: still a cancelled run to a script (it exited 0)
    tether(tmp_path, "run", f"{flow}:holds", "--id", "h1")
    assert tether(tmp_path, "runs", "cancel", "h1", "--compensate").returncode == 0
    for _ in range(2):  # the resume that runs the compensations, then asking again
        undone = tether(tmp_path, "runs", "resume", "h1", "--app", f"{flow}:app")
        assert undone.returncode == 1, undone.stdout
        assert "run h1 was cancelled; its compensations ran" in undone.stderr
        assert json.loads(undone.stdout)["status"] == "compensated"
    evt = tether(tmp_path, "runs", "event", "nobody.listens", "--payload", "{}")
    assert evt.returncode == 0 and "woke 0 run(s)" in evt.stdout


def test_a_signal_the_run_does_not_wait_for_is_refused(tmp_path: Path, flow: Path) -> None:
    tether(tmp_path, "run", f"{flow}:waits", "--id", "w1")
    typo = tether(tmp_path, "runs", "signal", "w1", "og")
    assert typo.returncode == 2, typo.stdout
    assert "run w1 does not wait for signal 'og'; it waits for signal 'go'" in typo.stderr
    assert "kept" not in typo.stdout
    kept = tether(tmp_path, "runs", "signal", "w1", "og", "--keep")
    assert kept.returncode == 0 and "signal 'og' kept for w1" in kept.stdout
    shown = tether(tmp_path, "runs", "show", "w1")
    assert re.search(r"status\s+waiting", shown.stdout)  # still waiting for 'go'


def test_a_signal_before_the_run_waits_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)

    async def later(wf: object) -> None:
        return None

    app.workflow(later)
    app.submit(later, workflow_id="p1")  # queued, never run: pending
    app.close()
    sent = tether(tmp_path, "runs", "signal", "p1", "anything")
    assert sent.returncode == 0, sent.stderr
    assert "signal 'anything' kept for p1" in sent.stdout


def test_signal_says_a_queued_run_waits_for_a_worker(tmp_path: Path, flow: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"

    async def parks(wf: object) -> object:
        return await wf.wait_for_signal("go")  # type: ignore[attr-defined]

    app = App(url, resume_woken=False)
    app.workflow(parks)
    app.submit(parks, workflow_id="q1")
    ServerlessHost(app).process_available_jobs()
    assert app.get_run("q1").status.value == "waiting"
    app.announce(["other"])  # a live worker, of another queue: it will not drive q1
    sent = tether(tmp_path, "runs", "signal", "q1", "go")
    app.close()
    assert sent.returncode == 0, sent.stderr
    assert "signal 'go' woke q1" in sent.stdout and "queued on 'default'" in sent.stdout
    assert "no worker serving that queue" in sent.stdout and "-q default" in sent.stdout


def test_resume_uses_db_not_the_database_of_the_app_module(tmp_path: Path, flow: Path) -> None:
    elsewhere = {"FLOWS_DB": f"sqlite:///{tmp_path}/module.db"}  # the App in flows.py
    started = tether(tmp_path, "run", "flows.py:waits", "--id", "c2", env=elsewhere)
    assert started.returncode == 0, started.stderr
    assert tether(tmp_path, "runs", "signal", "c2", "go", env=elsewhere).returncode == 0
    resumed = tether(tmp_path, "runs", "resume", "c2", "--app", "flows.py:app", env=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert f"database: sqlite:///{tmp_path}/t.db (from --db)" in resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert not (tmp_path / "module.db").exists()


def test_a_queued_run_cancelled_with_compensation_is_compensated_by_a_worker(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    undone: list[str] = []

    async def books(wf: object) -> object:
        await wf.step("hotel", lambda: "room 7", compensate=undone.append)  # type: ignore[attr-defined]
        return await wf.wait_for_signal("go")  # type: ignore[attr-defined]

    app = App(url, resume_woken=False)
    app.workflow(books)
    app.submit(books, workflow_id="q1")
    host = ServerlessHost(app)
    host.process_available_jobs()
    assert app.get_run("q1").status.value == "waiting"
    cancelled = tether(tmp_path, "runs", "cancel", "q1", "--compensate")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "a worker of queue 'default' runs the compensations" in cancelled.stderr
    assert host.process_available_jobs().succeeded == 1  # the job the cancel queued
    record = app.get_record("q1")
    app.close()
    assert undone == ["room 7"] and record.status.value == "compensated"
    assert "job.ghost" not in [e.type for e in record.events]


SPENDS = """
import os
import tether
from tether import ai

model = ai.FakeModel(lambda name, request: "ok", usage=ai.Usage(input_tokens=1_000_000))
prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 1.0}})
app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(demo=model, prices=prices))

@app.workflow(name="spends", budget=ai.Budget(max_usd=0.5))
async def spends(wf: tether.Workflow) -> str:
    first = await wf.ai.generate_text("demo:m", prompt="a")  # $1 each
    second = await wf.ai.generate_text("demo:m", prompt="b")
    return first.text + second.text
"""


def test_rerun_gives_a_run_stopped_by_its_budget_a_larger_one(tmp_path: Path) -> None:
    (tmp_path / "spend.py").write_text(SPENDS)
    stopped = tether(tmp_path, "run", "spend.py:spends", "--id", "s1")
    assert stopped.returncode == 1 and "BudgetExceededError" in stopped.stderr, stopped.stderr
    bad = tether(
        tmp_path, "runs", "rerun", "s1", "--from", "ai.text:demo:m#2", "--budget",
        '{"max_usd": -1}', "--app", "spend.py:app",
    )  # fmt: skip
    assert bad.returncode == 2 and "budget is not valid (max_usd" in bad.stderr, bad.stderr
    done = tether(
        tmp_path, "runs", "rerun", "s1", "--from", "ai.text:demo:m#2", "--budget",
        '{"max_usd": 5}', "--app", "spend.py:app",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "okok"


BATCH_FLOW = """
import os
import tether
from tether import ai

app = tether.App(os.environ["FLOWS_DB"], ai=ai.Providers(
    openai=ai.OpenAI(api_key="k", base_url=os.environ["OPENAI_URL"])), inline_wait=0)

@app.workflow(name="batched")
async def batched(wf: tether.Workflow) -> int:
    res = await wf.ai.batch("openai:gpt-4.1-mini", ["a", "b"], poll_every=3600)
    return len(res.items)
"""


def _parked_on_a_batch(tmp_path: Path, server: ProviderServer, wid: str) -> dict[str, str]:
    """`tether run` of BATCH_FLOW as `wid`, parked on its batch; the env to go on with."""
    (tmp_path / "batchflow.py").write_text(BATCH_FLOW)
    env = {"OPENAI_URL": server.openai_url}
    started = tether(tmp_path, "run", "batchflow.py:batched", "--id", wid, env=env)
    assert json.loads(started.stdout)["status"] == "waiting", started.stderr
    return env


def test_cancel_refuses_to_leave_a_provider_batch_running(
    tmp_path: Path, server: ProviderServer
) -> None:
    # without the App, the cancel could not reach the provider: the batch ran on, billed
    env = _parked_on_a_batch(tmp_path, server, "b1")
    [batch] = list(server.state.batches.values())
    bare = tether(tmp_path, "runs", "cancel", "b1", env=env)
    assert bare.returncode == 2, bare.stdout
    assert f"openai batch {batch['id']!r}" in bare.stderr and "--app" in bare.stderr
    shown = tether(tmp_path, "runs", "show", "b1", env=env)
    assert "waiting" in shown.stdout  # nothing was cancelled
    done = tether(tmp_path, "runs", "cancel", "b1", "--app", "batchflow.py:app", env=env)
    assert done.returncode == 0, done.stderr
    assert batch["status"] in ("cancelling", "cancelled")  # the provider was told


def test_cancel_with_abandon_batches_leaves_the_batch_running(
    tmp_path: Path, server: ProviderServer
) -> None:
    env = _parked_on_a_batch(tmp_path, server, "b2")
    done = tether(tmp_path, "runs", "cancel", "b2", "--abandon-batches", env=env)
    assert done.returncode == 0, done.stderr
    assert "cancelled: b2" in done.stdout
    [batch] = list(server.state.batches.values())
    assert batch["status"] == "in_progress"  # left at the provider, as asked


def test_signal_leaves_the_tether_loggers_level_as_it_found_it(tmp_path: Path) -> None:
    """Called in-process (a test, a program), `runs signal` set the `tether` logger to
    ERROR for good: every later warning of the process was lost (tests of the AI layer
    that read them failed when they ran after it)."""
    import logging

    from click.testing import CliRunner

    from tether import Workflow
    from tether.cli import cli

    url = f"sqlite:///{tmp_path / 'signal.db'}"
    app = App(url)

    @app.workflow(name="gate")
    async def gate(wf: Workflow) -> object:
        return await wf.wait_for_signal("go")

    app.run(gate, workflow_id="g")
    app.close()
    logger = logging.getLogger("tether")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        done = CliRunner().invoke(cli, ["--db", url, "runs", "signal", "g", "go", "--payload", "1"])
        assert done.exit_code == 0, done.output
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)
