"""Creating a run, walked as a new user would: updating the state of a run started without one,
a workflow id or idempotency key asked for again with another queue or job, and the
reads a resume makes."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether import App, RunStatus, Workflow

from .._probes import traced_store


async def test_updating_no_state_with_a_function_names_initial_state(app: App) -> None:
    """``update_state(lambda s: {**s, ...})`` of no state failed with ``'NoneType'
    object is not a mapping``; a value written first is then the state."""

    @app.workflow(name="updates")
    async def updates(wf: Workflow) -> object:
        await wf.update_state(lambda s: {**s, "applied": 1})
        return wf.state

    with pytest.raises(tether.TetherError, match=r"has no state.*initial_state=") as caught:
        await app.arun(updates, workflow_id="u1")
    assert isinstance(caught.value.__cause__, TypeError)

    @app.workflow(name="writes")
    async def writes(wf: Workflow) -> object:
        await wf.update_state({"applied": 0})
        await wf.update_state(lambda s: {**s, "applied": s["applied"] + 1})
        return wf.state

    assert (await app.arun(writes, workflow_id="w1")).value == {"applied": 1}


async def test_a_workflow_id_submitted_again_to_another_queue_is_refused(app: App) -> None:
    """Before, the run on queue "a" was returned as if queued on "b": the workers of "b"
    never saw it. The same queue (or `start`, documented) still returns it."""

    @app.workflow(name="queued")
    async def queued(wf: Workflow) -> int:
        return 1

    assert await app.asubmit(queued, workflow_id="q1", queue="a") == "q1"
    with pytest.raises(tether.InvalidArgumentError, match=r"'q1'.*on queue 'a', not on queue 'b'"):
        await app.asubmit(queued, workflow_id="q1", queue="b")
    assert await app.asubmit(queued, workflow_id="q1", queue="a") == "q1"
    assert await app.astart(queued, workflow_id="q1") == "q1"  # its workers drive it
    assert [j.queue for j in await app.ajobs("q1")] == ["a"]
    assert (await app.aget_run("q1")).queue == "a"


@pytest.mark.parametrize(
    ("field", "first", "again"),
    [("concurrency_key", "x", "y"), ("concurrency_key", "x", None), ("max_attempts", 3, 5)],
)
async def test_an_idempotency_key_asked_again_with_another_job_is_refused(
    app: App, field: str, first: object, again: object
) -> None:
    """Before, the first run was returned and its job kept what it was queued with."""

    @app.workflow(name="keyed")
    async def keyed(wf: Workflow) -> int:
        return 1

    wid = await app.asubmit(keyed, idempotency_key="k1", queue="a", **{field: first})
    assert await app.asubmit(keyed, idempotency_key="k1", queue="a", **{field: first}) == wid
    with pytest.raises(tether.IdempotencyConflictError, match=field) as caught:
        await app.asubmit(keyed, idempotency_key="k1", queue="a", **{field: again})
    assert caught.value.workflow_id == wid and caught.value.differs.startswith(field)
    (job,) = await app.ajobs(wid)
    assert getattr(job, field) == first


async def test_resume_reads_the_run_once_before_claiming_it(tmp_path: Path) -> None:
    """Before, `aresume` read the run's row to learn its queue, then the drive read it
    again to decide whether to drive it."""
    store, sent = traced_store(f"sqlite:///{tmp_path}/t.db")
    async with App(store=store) as app:

        @app.workflow
        async def waits(wf: Workflow) -> str:
            return str(await wf.wait_for_signal("go", timeout=3600))

        assert (await app.arun(waits, workflow_id="r")).status is RunStatus.WAITING
        sent.clear()
        assert (await app.aresume("r")).status is RunStatus.WAITING
        resumed = list(sent)
        with pytest.raises(tether.RunNotFoundError):
            await app.aresume("nothing")
    claim = next(i for i, s in enumerate(resumed) if s.startswith("UPDATE runs"))
    reads = [s for s in resumed[:claim] if s.startswith("SELECT id, workflow_name")]
    assert len(reads) == 1, reads


async def test_a_none_the_code_wrote_is_read_back_as_written(app: App) -> None:
    """A None the code wrote is the state, read back as written on replay."""

    @app.workflow(name="nulls")
    async def nulls(wf: Workflow) -> object:
        await wf.update_state(None)
        seen = wf.state
        await wf.wait_for_signal("go")
        return [seen, wf.state]

    assert (await app.arun(nulls, workflow_id="n1")).status is RunStatus.WAITING
    await app.asignal("n1", "go", None)
    assert (await app.aresult("n1", timeout=10)).value == [None, None]  # a replay too
    opened = await app.aopen("n1")
    assert opened.state is None


async def test_the_conflicts_of_a_workflow_id_are_typed(app: App) -> None:
    """Each refusal of an id asked again for another run is a `WorkflowIdConflictError`
    (still an `InvalidArgumentError`), saying what differs."""

    @app.workflow(name="typed")
    async def typed(wf: Workflow, n: int) -> int:
        return n

    @app.workflow(name="other")
    async def other(wf: Workflow, n: int) -> int:
        return n

    await app.asubmit(typed, 1, workflow_id="t1", queue="a")
    asks = [
        (lambda: app.asubmit(typed, 2, workflow_id="t1", queue="a"), "input"),
        (lambda: app.asubmit(typed, 1, workflow_id="t1", queue="b"), "queue"),
        (lambda: app.asubmit(other, 1, workflow_id="t1", queue="a"), "workflow"),
    ]
    for ask, differs in asks:
        with pytest.raises(tether.WorkflowIdConflictError) as caught:
            await ask()
        assert caught.value.workflow_id == "t1" and caught.value.differs == differs
        assert isinstance(caught.value, tether.InvalidArgumentError)
