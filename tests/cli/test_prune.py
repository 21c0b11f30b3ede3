"""`tether runs prune|delete` and `App.prune|delete_run`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tether import App, FakeClock, Workflow
from tether.errors import InvalidArgumentError

from ._helpers import peak_kib, tether


async def done(wf: Workflow) -> int:
    await wf.step("one", lambda: 1)
    return 1


async def fails(wf: Workflow) -> None:
    await wf.step("one", lambda: 1)
    raise RuntimeError("no")


async def waits(wf: Workflow) -> object:
    return await wf.wait_for_signal("go")


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


def _history(url: str, clock: FakeClock) -> None:
    """Old runs (40 days ago): 3 completed, 1 failed, 1 waiting; then 1 completed now."""
    app = App(url, clock=clock)
    for i in range(3):
        app.run(done, workflow_id=f"old-{i}")
    with pytest.raises(RuntimeError):
        app.run(fails, workflow_id="old-failed")
    app.run(waits, workflow_id="old-waiting")
    app.close()
    clock.advance(40 * 86400)
    app = App(url, clock=clock)
    app.run(done, workflow_id="new")
    app.close()


def _ids(url: str) -> list[str]:
    app = App(url)
    try:
        return sorted(r.workflow_id for r in app.list_runs(limit=1000))
    finally:
        app.close()


def test_app_prune_deletes_old_finished_runs_in_batches(database_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(days=40))
    _history(database_url, clock)
    app = App(database_url, clock=clock)
    try:
        with pytest.raises(InvalidArgumentError, match="not a final status"):
            app.prune("30d", ["waiting"])
        with pytest.raises(InvalidArgumentError, match="cannot read"):
            app.prune("a month")
        assert app.prune("30d", ["failed"]) == 1
        assert app.prune(timedelta(days=30), batch=2) == 3
        assert app.prune("30d") == 0
        assert app.get_record("new").steps  # the new run keeps its steps
        with pytest.raises(InvalidArgumentError, match="has not ended"):
            app.delete_run("old-waiting")
        app.delete_run("new")
    finally:
        app.close()
    assert _ids(database_url) == ["old-waiting"]


def test_runs_prune_and_delete_commands(database_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(days=40))
    _history(database_url, clock)
    res = invoke(database_url, "runs", "prune", "--older-than", "30d", "--dry-run")
    assert res.exit_code == 0 and "4 finished run(s) older than 30d would be" in res.output
    res = invoke(database_url, "runs", "prune", "--older-than", "30d", "--status", "completed")
    assert res.exit_code == 0 and "deleted 3 finished run(s)" in res.output
    assert _ids(database_url) == ["new", "old-failed", "old-waiting"]
    res = invoke(database_url, "runs", "prune", "--older-than", "soon")
    assert res.exit_code == 2 and "--older-than" in res.output
    res = invoke(database_url, "runs", "delete", "old-waiting")
    assert res.exit_code == 2 and "has not ended (waiting)" in res.output
    res = invoke(database_url, "runs", "delete", "old-failed")
    assert res.exit_code == 0 and "deleted run old-failed" in res.output
    assert _ids(database_url) == ["new", "old-waiting"]
    res = invoke(database_url, "runs", "show", "old-failed")
    assert res.exit_code == 3


def test_delete_refuses_a_running_run_as_a_real_process(tmp_path: Path, flow: Path) -> None:
    assert tether(tmp_path, "run", "flows.py:waits", "--id", "w1").returncode == 0
    res = tether(tmp_path, "runs", "delete", "w1")
    assert res.returncode == 2
    assert "run 'w1' has not ended (waiting)" in res.stderr and "cancel it first" in res.stderr
    assert tether(tmp_path, "runs", "cancel", "w1").returncode == 0
    assert tether(tmp_path, "runs", "delete", "w1").returncode == 0
    listed = tether(tmp_path, "runs", "list", "--json")
    assert json.loads(listed.stdout) == []


PIPELINE_APP = """
import os
from datetime import UTC, datetime
from pydantic import BaseModel
import tether
from tether.blobs import FileBlobStore

class Doc(BaseModel):
    url: str

class Big(BaseModel):
    text: str

@tether.stage(id="fetch", input=Doc, output=Big)
async def fetch(ctx):
    await ctx.artifacts.put("raw.txt", "raw page")
    return Big(text="x" * 5000)

pipeline = tether.Pipeline("docs", input=Doc, inline_limit=100).pipe(fetch)
# a fake clock, a day later when $LATER is set: the runs are then old enough to prune
start = datetime(2026, 1, 2 if os.environ.get("LATER") else 1, tzinfo=UTC)
app = tether.App(os.environ["FLOWS_DB"], blobs=FileBlobStore(os.environ["BLOBS"]),
                 clock=tether.FakeClock(start))
app.register(pipeline)
"""


def test_delete_and_prune_remove_the_files_in_the_apps_own_blob_store(tmp_path: Path) -> None:
    # without --app the commands used the default blob store beside the database, and
    # left the files of a store the App names elsewhere for good
    (tmp_path / "docs_app.py").write_text(PIPELINE_APP)
    blobs = tmp_path / "elsewhere"
    env = {"BLOBS": str(blobs)}
    for wid in ("d1", "d2"):
        ran = tether(tmp_path, "run", "docs_app.py:pipeline", "--input", '{"url": "u"}',
                     "--id", wid, env=env)  # fmt: skip
        assert ran.returncode == 0, ran.stderr

    def files(wid: str) -> list[str]:  # the names of a run's files, without '~blob'
        found = (blobs / "runs" / wid).rglob("*")
        return sorted(p.name.removesuffix("~blob") for p in found if p.is_file())

    assert files("d1") == ["output.json", "raw.txt"]
    res = tether(tmp_path, "runs", "delete", "d1", "--app", "docs_app.py:app", env=env)
    assert res.returncode == 0, res.stderr
    assert files("d1") == [] and files("d2") == ["output.json", "raw.txt"]
    res = tether(tmp_path, "runs", "prune", "--older-than", "1h", "--app", "docs_app.py:app",
                 env=env | {"LATER": "1"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "deleted 1 finished run(s) older than 1h" in res.stdout and files("d2") == []


async def echoes(wf: Workflow, text: str) -> int:
    return len(text)


def test_a_dry_run_counts_without_reading_every_run(tmp_path: Path) -> None:
    # the dry run read every run, inputs included, to count them here: its memory grew
    # with the database
    small, large = f"sqlite:///{tmp_path}/small.db", f"sqlite:///{tmp_path}/large.db"
    for url, runs in ((small, 1), (large, 24)):
        app = App(url, clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
        for i in range(runs):
            app.run(echoes, "x" * 8_000_000, workflow_id=f"big-{i:02}")
        app.close()
    args = ("runs", "prune", "--older-than", "1d", "--dry-run")
    alone, among = peak_kib(tmp_path, small, *args), peak_kib(tmp_path, large, *args)
    assert among - alone < 60_000, (alone, among)  # ids read, not 24 inputs (192 MB)
    counted = tether(tmp_path, *args, db=large)
    assert counted.stdout.strip() == "24 finished run(s) older than 1d would be deleted (dry run)"


def test_a_prune_keeps_the_runs_whose_events_the_apps_sinks_have_yet_to_get(
    database_url: str, tmp_path: Path
) -> None:
    """Every event is its outbox row: a prune deleted the events a sink had not got yet
    (a worker's outbox behind, or down), and they were never delivered. With sinks they
    stay until delivered; an App with none prunes them (no sink of its takes them)."""
    from tether.kernel import CollectingSink, OutboxFlush

    clock = FakeClock(datetime.now(UTC) - timedelta(days=40))
    _history(database_url, clock)  # run by an App without sinks: nothing delivered
    sink = CollectingSink()
    app = App(database_url, clock=clock, sinks=[sink])
    try:
        assert app.prune("30d") == 0  # four old finished runs, their events undelivered
        assert invoke(database_url, "runs", "prune", "--older-than", "30d", "--dry-run",
                      "--app", _sinks_app(tmp_path)).output.startswith("0 finished")  # fmt: skip
        app.run_sync(app.kernel.adispatch(OutboxFlush(max_events=10_000)))
        assert {e.workflow_id for e in sink.events} >= {"old-0", "old-failed"}
        assert app.prune("30d") == 4
    finally:
        app.close()
    assert _ids(database_url) == ["new", "old-waiting"]
    clock.advance(40 * 86400)
    app = App(database_url, clock=clock)  # no sinks: its runs' events go with them
    try:
        assert app.prune("30d") == 1
    finally:
        app.close()


def _sinks_app(folder: Path) -> str:
    """An app module whose App has a sink, for `--app`."""
    (folder / "with_sink.py").write_text(
        "import tether\nfrom tether.kernel import CollectingSink\n"
        "app = tether.App(sinks=[CollectingSink()])\n"
    )
    return f"{folder / 'with_sink.py'}:app"
