"""Queue and resume commands as a service dispatches them: a job's fields with no
queue, and a run named for an event or a token, are refused rather than dropped."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether import App, Workflow


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"run_after": "2030-01-01T00:00:00Z"}, "run_after"),
        ({"concurrency_key": "issue-42"}, "concurrency_key"),
        ({"max_attempts": 3}, "max_attempts"),
    ],
)
async def test_a_job_field_without_a_queue_is_refused_and_nothing_starts(
    app: App, extra: dict[str, Any], named: str
) -> None:
    """Before, the run was created and started here at once: a `run_after` a few years
    ahead, a `concurrency_key`, a `max_attempts` were dropped without a word."""

    @app.workflow(name="w")
    async def w(wf: Workflow) -> str:
        return "done"

    command = {"type": "run.create", "workflow": "w", "workflow_id": "r1", **extra}
    with pytest.raises(tether.InvalidArgumentError, match=f"{named} set a queued run's job"):
        await app.kernel.adispatch(command)
    assert await app.store.get_run("r1") is None
    queued = await app.kernel.adispatch({**command, "queue": "q"})
    assert queued.model_dump() == {"workflow_id": "r1", "created": True}
    assert [job.queue for job in await app.store.list_jobs(workflow_id="r1")] == ["q"]


@pytest.mark.parametrize("kind", ["event", "token"])
async def test_a_run_named_for_an_event_or_a_token_is_refused(app: App, kind: str) -> None:
    """Before, the id was ignored: an event meant for run `a` woke run `b` too."""

    @app.workflow(name="waiter")
    async def waiter(wf: Workflow) -> Any:
        return await wf.wait_for_event("paid")

    for wid in ("a", "b"):
        assert (await app.arun(waiter, workflow_id=wid)).status is tether.RunStatus.WAITING
    command = {"type": "run.resume", "kind": kind, "name": "paid", "workflow_id": "a"}
    with pytest.raises(tether.InvalidArgumentError, match=f"{kind}s are not sent to one run"):
        await app.kernel.adispatch(command)
    for wid in ("a", "b"):
        assert (await app.aget_run(wid)).status is tether.RunStatus.WAITING
