"""A run that executed past its workflow `timeout=` is undone like any failed run:
its compensations ran under the spent budget and each failed at once with the run's
own `WorkflowTimeoutError`, so a timed-out run always ended compensation_failed with
none of its steps undone."""

from __future__ import annotations

import pytest

from tether import App, EndReason, RunStatus, Workflow
from tether.errors import WorkflowTimeoutError
from tether.testing import FakeClock


async def test_a_timed_out_run_runs_its_compensations(app: App, clock: FakeClock) -> None:
    undone: list[str] = []

    @app.workflow(timeout=60)
    async def slow(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "r1", compensate=undone.append)
        await wf.step("think", lambda: bool(clock.advance(120)))  # past the budget
        await wf.step("never", lambda: undone.append("never"))

    with pytest.raises(WorkflowTimeoutError):
        await app.arun(slow, workflow_id="t1")
    assert undone == ["r1"]
    run = await app.aget_run("t1")
    assert (run.status, run.end_reason) == (RunStatus.COMPENSATED, EndReason.TIMED_OUT)
