"""Queue names a worker's command line can carry, and idempotency keys that name one
request: a queue named ``a,b`` (which ``tether worker -q a,b`` reads as two queues) is
refused where it enters, and a key asked again for another queue is a conflict."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether
from tether import App, Workflow
from tether.schedules import Schedule
from tether.worker import Worker

BAD = [
    ("a,b", "contains a comma", "'a-b'"),
    (",", "contains a comma", "'-'"),
    (" batch", "starts or ends with whitespace", "pass 'batch'"),
    ("batch\n", "starts or ends with whitespace", "pass 'batch'"),
]


def _one(app: App) -> tether.WorkflowDef:
    @app.workflow(name="one")
    async def one(wf: Workflow) -> int:
        return 1

    return app.get_workflow("one")


@pytest.mark.parametrize(("queue", "said", "fix"), BAD)
async def test_a_queue_no_worker_command_line_can_name_is_refused(
    app: App, queue: str, said: str, fix: str
) -> None:
    """Before, each was accepted: the run waited forever on a queue `tether worker -q`
    could not serve (it split ``a,b`` in two and stripped the blanks)."""
    defn = _one(app)
    with pytest.raises(tether.InvalidArgumentError, match=said) as submitted:
        await app.asubmit(defn.fn, queue=queue)
    assert fix in str(submitted.value)
    with pytest.raises(tether.InvalidArgumentError, match=said):
        app.queue(queue, concurrency=1)
    with pytest.raises(tether.InvalidArgumentError, match=said):
        await app.kernel.adispatch({"type": "run.create", "workflow": "one", "queue": queue})
    assert await app.alist_runs() == []  # nothing made


@pytest.mark.parametrize(("queue", "said", "fix"), BAD)
def test_a_schedule_or_a_worker_on_such_a_queue_is_refused(
    app: App, queue: str, said: str, fix: str
) -> None:
    """Before, both were accepted: every tick's run was refused at its submit, and a
    worker served a queue no run could be put on."""
    with pytest.raises(tether.InvalidArgumentError, match=said) as declared:
        Schedule("nightly", "one", cron="0 2 * * *", queue=queue)
    with pytest.raises(tether.InvalidArgumentError, match=said) as started:
        Worker(app, queues=[queue])
    assert fix in str(declared.value) and fix in str(started.value)


async def test_a_queue_name_with_inner_blanks_is_kept(app: App) -> None:
    """``-q "nightly batch"`` carries it: only commas and blanks at the ends are refused."""
    defn = _one(app)
    app.queue("nightly batch", concurrency=2)
    wid = await app.asubmit(defn.fn, queue="nightly batch")
    assert [j.queue for j in await app.ajobs(wid)] == ["nightly batch"]


def test_tether_submit_refuses_a_queue_named_with_a_comma(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        textwrap.dedent(
            """
            import tether
            app = tether.App()

            @app.workflow
            async def one(wf: tether.Workflow) -> int:
                return 1
            """
        )
    )
    tether_cmd = str(Path(sys.executable).with_name("tether"))
    db = f"sqlite:///{tmp_path}/t.db"
    done = subprocess.run(
        [tether_cmd, "--db", db, "submit", "flow.py:one", "-q", "a,b"],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert "contains a comma" in done.stderr and "'a-b'" in done.stderr


async def test_a_key_asked_again_for_another_queue_is_a_conflict(app: App) -> None:
    """Before, the second submit returned the first run, queued on 'a': served by other
    workers than the caller asked for, and nothing said."""
    defn = _one(app)
    wid = await app.asubmit(defn.fn, queue="a", idempotency_key="k")
    assert await app.asubmit(defn.fn, queue="a", idempotency_key="k") == wid  # same request
    with pytest.raises(tether.IdempotencyConflictError) as other:
        await app.asubmit(defn.fn, queue="b", idempotency_key="k")
    said = str(other.value)
    assert f"run {wid!r}" in said and "on queue 'a'" in said and "queue 'b'" in said
    assert other.value.workflow_id == wid
    with pytest.raises(tether.IdempotencyConflictError, match="asks for no queue"):
        await app.astart(defn.fn, idempotency_key="k")  # driven here, not by a's workers
    assert [j.queue for j in await app.ajobs(wid)] == ["a"]  # one run, one job, as it was
    assert len(await app.alist_runs()) == 1


async def test_a_key_of_a_started_run_asked_again_for_a_queue_is_a_conflict(app: App) -> None:
    defn = _one(app)
    wid = await app.astart(defn.fn, idempotency_key="s")
    with pytest.raises(tether.IdempotencyConflictError, match="not queued") as other:
        await app.asubmit(defn.fn, queue="a", idempotency_key="s")
    assert f"run {wid!r}" in str(other.value)
    assert await app.astart(defn.fn, idempotency_key="s") == wid


async def test_a_key_asked_again_with_another_priority_returns_its_run_and_says_so(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The same workers serve it either way: the run keeps its priority, and the
    priority not applied is logged rather than dropped unsaid."""
    caplog.set_level(logging.WARNING, logger="tether.kernel")
    defn = _one(app)
    wid = await app.asubmit(defn.fn, queue="a", idempotency_key="p", priority=1)
    assert await app.asubmit(defn.fn, queue="a", idempotency_key="p", priority=9) == wid
    assert "priority 9 asked now is not applied" in caplog.text and wid in caplog.text
    assert [j.priority for j in await app.ajobs(wid)] == [1]
