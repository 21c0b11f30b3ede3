"""A call an AI budget stopped reads as stopped, not as an answered call, in `tether runs
show`, `runs export`, `runs watch` and the dashboard's timeline."""

from __future__ import annotations

from tether import App, FakeClock, RunRecord, RunStatus, Workflow, ai
from tether.cli._format import step_status
from tether.cli.runs import _shown_record
from tether.server._dash_view import timeline

from ..ai._priced import priced_app

STOPPED = "ai.text:fake:m#2"  # the second call: $1.20 already spent of $1


async def _paused_record(database_url: str) -> tuple[App, RunRecord]:
    app = priced_app(database_url, FakeClock())

    @app.workflow(name="asker", budget=ai.Budget(max_usd=1, on_exceed="pause"))
    async def asker(wf: Workflow) -> int:
        for i in range(2):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return 2

    assert (await app.arun(asker, workflow_id="s")).status is RunStatus.WAITING
    return app, await app.aget_record("s")


async def test_the_stopped_call_reads_as_stopped_with_what_stopped_it(database_url: str) -> None:
    app, rec = await _paused_record(database_url)
    try:
        stops = ai.budget_stops(rec.events)
        answered = rec.steps["ai.text:fake:m"]
        assert step_status(rec, answered, stops) == "completed"
        stopped = rec.steps[STOPPED]
        assert step_status(rec, stopped, stops) == "stopped"
        exported = _shown_record(rec)
        assert exported["steps"][STOPPED]["status"] == "stopped"
        assert exported["steps"][STOPPED]["stoppedBy"].startswith("this run has spent $1.2")
        assert "stoppedBy" not in exported["steps"]["ai.text:fake:m"]
        bars = {b.label: b for b in timeline(rec, [], [], rec.updated_at).bars}
        assert bars[STOPPED].status == "stopped" and "AI budget" in bars[STOPPED].note
        assert bars["ai.text:fake:m"].status == "completed"
    finally:
        await app.aclose()
