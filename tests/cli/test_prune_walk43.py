"""`tether runs prune` and `App.prune` over families of runs: a run goes only when every
run above and below it ended before the cutoff, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from tether import App, FakeClock, RunStatus, Workflow, ai


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


async def kid(wf: Workflow) -> str:
    await wf.ai.generate_text("fake:m", prompt="kid")  # $1 a call
    return "kid"


async def parent(wf: Workflow) -> str:
    got = await wf.child(kid)
    await wf.wait_for_signal("go")  # open for weeks after its child ended
    return got


async def late(wf: Workflow) -> str:
    await wf.wait_for_signal("go")
    return "late"


async def spawner(wf: Workflow) -> str:
    await wf.start_child(late, workflow_id="late-kid")  # detached: it ends on its own
    return "spawner"


def _app(url: str, clock: FakeClock) -> App:
    fake = ai.FakeModel(lambda model, request: "ok", usage=ai.Usage(input_tokens=1_000_000))
    prices = ai.Prices({"fake:m": {"input_per_million": 1.0, "output_per_million": 1.0}})
    app = App(url, clock=clock, ai=ai.Providers(fake=fake, prices=prices))
    for fn in (kid, parent, late, spawner):
        app.register(fn)
    return app


def _families(url: str) -> FakeClock:
    """60 days ago: "p" (waiting) whose child ended, and "sp" (completed) whose detached
    child "late-kid" waits; a day ago "late-kid" ended."""
    clock = FakeClock(datetime.now(UTC) - timedelta(days=60))
    app = _app(url, clock)
    try:
        app.start(parent, workflow_id="p")
        app.run(spawner, workflow_id="sp")
        clock.advance(59 * 86400)
        app.signal("late-kid", "go", 1)
        assert app.resume("late-kid").status is RunStatus.COMPLETED
    finally:
        app.close()
    return clock


def _left(url: str) -> dict[str, str]:
    app = App(url)
    try:
        return {r.workflow_id: r.status.value for r in app.list_runs(limit=100)}
    finally:
        app.close()


def test_a_prune_keeps_a_child_that_ended_within_the_age_and_the_children_of_open_runs(
    database_url: str,
) -> None:
    # "sp" ended 60 days ago but its child a day ago: a 30-day prune deleted the child
    # with it. And "p" still waits: its child (ended 60 days ago) was deleted, its calls
    # with it, so the spend its budget counts fell from $1 to $0
    _families(database_url)
    res = invoke(database_url, "runs", "prune", "--older-than", "30d", "--dry-run")
    assert res.exit_code == 0 and res.output.startswith("0 finished run(s)"), res.output
    res = invoke(database_url, "runs", "prune", "--older-than", "30d")
    assert res.exit_code == 0 and "deleted 0 finished run(s)" in res.output, res.output
    assert _left(database_url) == {
        "p": "waiting", "p/kid#1": "completed", "sp": "completed", "late-kid": "completed",
    }  # fmt: skip
    app = App(database_url)
    try:
        (spent,) = app.usage(run="p", children=True)
        assert spent.calls == 1
    finally:
        app.close()


def test_a_family_goes_whole_once_every_run_of_it_is_old_enough(database_url: str) -> None:
    clock = _families(database_url)
    clock.advance(86400)  # "late-kid" ended a day ago
    app = _app(database_url, clock)
    try:
        assert app.prune("12h") == 2  # "sp" and "late-kid"; "p" waits on
        app.signal("p", "go", 1)
        assert app.resume("p").status is RunStatus.COMPLETED
        assert app.prune("12h") == 0  # "p" has just ended
        clock.advance(86400)
        assert app.prune("12h") == 2  # "p" with its child
    finally:
        app.close()
    assert _left(database_url) == {}


async def fails_after_child(wf: Workflow) -> None:
    await wf.child(kid)
    raise RuntimeError("no")


def test_a_dry_run_by_status_counts_the_child_runs_deleted_with_the_runs(
    database_url: str,
) -> None:
    # `--status failed` deletes a failed run with its child (completed): the dry run said
    # 1 run would go, then the prune said it deleted 2
    clock = FakeClock(datetime.now(UTC) - timedelta(days=40))
    app = _app(database_url, clock)
    app.register(fails_after_child)
    try:
        with pytest.raises(RuntimeError):
            app.run(fails_after_child, workflow_id="f")
    finally:
        app.close()
    args = ("runs", "prune", "--older-than", "30d", "--status", "failed")
    res = invoke(database_url, *args, "--dry-run")
    assert res.output == "2 finished run(s) older than 30d would be deleted (dry run)\n"
    res = invoke(database_url, *args)
    assert res.exit_code == 0 and "deleted 2 finished run(s)" in res.output, res.output
    assert _left(database_url) == {}
