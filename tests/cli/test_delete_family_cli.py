"""`tether runs delete` of a child whose parent has not ended says which run to delete
(or cancel) instead; `runs prune --dry-run` counts a family's runs, not only its top."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tether import App, FakeClock, RunStatus, Workflow

from .test_prune import invoke


async def kid(wf: Workflow) -> str:
    return "kid"


async def parent(wf: Workflow) -> str:
    got = await wf.child(kid)
    await wf.wait_for_signal("go")
    return got


def test_a_child_of_a_waiting_run_is_refused_and_its_family_counted(database_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(days=2))
    app = App(database_url, clock=clock)
    app.register(kid)
    app.register(parent)
    try:
        assert app.run(parent, workflow_id="p").status is RunStatus.WAITING
        res = invoke(database_url, "runs", "delete", "p/kid#1")
        assert res.exit_code == 2, res.output
        assert "started by run 'p'" in res.output and "has not ended (waiting)" in res.output
        assert "Delete or prune run 'p' once it ends" in res.output
        app.signal("p", "go", 1)
        assert app.resume("p").status is RunStatus.COMPLETED
    finally:
        app.close()
    args = ("runs", "prune", "--older-than", "1d")
    res = invoke(database_url, *args, "--dry-run")  # the top is picked, its child with it
    assert res.output == "2 finished run(s) older than 1d would be deleted (dry run)\n"
    res = invoke(database_url, *args)
    assert res.exit_code == 0 and "deleted 2 finished run(s)" in res.output, res.output
