"""App's query methods answer with tether's read models, not the store's rows."""

from __future__ import annotations

import dataclasses

import pytest

from tether import App, RunInfo, RunStatus, WaitInfo, WaitKind, WaitStatus, Workflow


async def test_runs_and_waits_are_read_models(app: App) -> None:
    @app.workflow(name="asks")
    async def asks(wf: Workflow) -> None:
        await wf.wait_for_signal("answer")

    await app.arun(asks, workflow_id="q1")
    run = await app.aget_run("q1")
    assert type(run) is RunInfo
    assert (run.workflow_id, run.workflow_name, run.status) == ("q1", "asks", RunStatus.WAITING)
    assert [type(r) for r in await app.alist_runs()] == [RunInfo]
    [wait] = await app.alist_waits("q1")
    assert type(wait) is WaitInfo
    assert (wait.kind, wait.name, wait.status) == (WaitKind.SIGNAL, "answer", WaitStatus.PENDING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = RunStatus.FAILED  # type: ignore[misc]
