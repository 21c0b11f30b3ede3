"""Why a run ended, recorded as `EndReason` by the verb that ended it, on both backends.

The status says what became of a run; the reason why it ended. A run that
failed or was cancelled and then ran its compensations is ``compensated``
either way, and the worker's ghost rule (a job whose run was cancelled under
it) reads the reason, not the error's text.
"""

from __future__ import annotations

import asyncio

import pytest

import tether
from tether import App, EndReason, ErrorRecord, RunRecord, RunStatus, Workflow
from tether.testing import eventually
from tether.worker import ServerlessHost

from ._sql import execute


class Cancelled(Exception):
    """A user's own exception, named as tether once named a cancellation."""


async def _ended(app: App, wid: str) -> tuple[RunStatus, EndReason | None]:
    info = await app.aget_run(wid)
    rec = await app.aget_record(wid)
    assert rec.end_reason is info.end_reason
    assert RunRecord.from_dict(rec.to_dict()).end_reason is rec.end_reason
    return info.status, info.end_reason


async def test_completed_failed_and_timed_out(app: App, clock: tether.FakeClock) -> None:
    @app.workflow
    async def fine(wf: Workflow) -> int:
        return 1

    @app.workflow
    async def broken(wf: Workflow) -> None:
        raise ValueError("no")

    @app.workflow(timeout=30)
    async def slow(wf: Workflow) -> None:
        await wf.step("a", lambda: clock.advance(40) and None)
        await wf.step("b", lambda: None)

    assert (await app.aget_run(await app.astart(fine, workflow_id="new"))).end_reason in (
        None,
        EndReason.COMPLETED,
    )
    await app.arun(fine, workflow_id="ok")
    assert await _ended(app, "ok") == (RunStatus.COMPLETED, EndReason.COMPLETED)
    with pytest.raises(ValueError):
        await app.arun(broken, workflow_id="bad")
    assert await _ended(app, "bad") == (RunStatus.FAILED, EndReason.FAILED)
    with pytest.raises(tether.WorkflowTimeoutError):
        await app.arun(slow, workflow_id="slow")
    assert await _ended(app, "slow") == (RunStatus.FAILED, EndReason.TIMED_OUT)


async def test_a_child_timing_out_does_not_time_out_its_parent(
    app: App, clock: tether.FakeClock
) -> None:
    @app.workflow(timeout=30)
    async def child(wf: Workflow) -> None:
        await wf.step("a", lambda: clock.advance(40) and None)
        await wf.step("b", lambda: None)

    @app.workflow
    async def parent(wf: Workflow) -> None:
        await wf.child(child, workflow_id="kid")

    with pytest.raises(tether.ChildRunError):
        await app.arun(parent, workflow_id="mum")
    assert await _ended(app, "kid") == (RunStatus.FAILED, EndReason.TIMED_OUT)
    assert await _ended(app, "mum") == (RunStatus.FAILED, EndReason.FAILED)


async def test_cancelled_and_compensated_runs_keep_why_they_ended(app: App) -> None:
    @app.workflow
    async def waits(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)
        await wf.wait_for_signal("go")

    @app.workflow
    async def saga(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)
        raise RuntimeError("declined")

    @app.workflow
    async def saga_broken(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=_refund_fails)
        raise RuntimeError("declined")

    await app.arun(waits, workflow_id="plain")
    await app.acancel("plain", "not needed")
    assert await _ended(app, "plain") == (RunStatus.CANCELLED, EndReason.CANCELLED)

    await app.arun(waits, workflow_id="undone")
    await app.acancel("undone", "customer left", compensate=True)

    async def compensated() -> bool:
        return (await app.aget_run("undone")).status is RunStatus.COMPENSATED

    await eventually(compensated, timeout=10)
    assert await _ended(app, "undone") == (RunStatus.COMPENSATED, EndReason.CANCELLED)

    with pytest.raises(RuntimeError):
        await app.arun(saga, workflow_id="saga")
    assert await _ended(app, "saga") == (RunStatus.COMPENSATED, EndReason.FAILED)
    with pytest.raises(RuntimeError):
        await app.arun(saga_broken, workflow_id="saga2")
    assert await _ended(app, "saga2") == (RunStatus.COMPENSATION_FAILED, EndReason.FAILED)


def _refund_fails(_: object) -> None:
    raise OSError("refund api down")


async def test_a_rerun_forgets_how_the_run_ended(app: App, clock: tether.FakeClock) -> None:
    fail = [True]

    @app.workflow
    async def flaky(wf: Workflow) -> str:
        def once() -> str:
            if fail[0]:
                raise ValueError("first time")
            return "ok"

        return await wf.step("s", once)

    with pytest.raises(ValueError):
        await app.arun(flaky, workflow_id="f")
    assert (await app.aget_run("f")).end_reason is EndReason.FAILED
    fail[0] = False
    await app.store.rerun_from("f", "s", at=clock.now())
    assert (await app.aget_run("f")).end_reason is None
    assert (await app.arun(flaky, workflow_id="f")).value == "ok"
    assert await _ended(app, "f") == (RunStatus.COMPLETED, EndReason.COMPLETED)


async def test_the_ghost_rule_reads_the_end_reason_not_the_error_text(app: App) -> None:
    """A run that failed with a user's exception named ``Cancelled`` and ran its
    compensations records ``{"type": "Cancelled", ...}`` as its error: the text the
    old rule searched for. It failed, nobody cancelled it: its job is no ghost."""

    @app.workflow
    async def own_goal(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)
        raise Cancelled('"type":"Cancelled"')

    wid = await app.asubmit(own_goal)
    host = ServerlessHost(app)
    (job,) = await host.aclaim(5)
    result = await host.ahandle_job(job)
    run = await app.aget_run(wid)
    assert run.status is RunStatus.COMPENSATED and run.end_reason is EndReason.FAILED
    assert '"type":"Cancelled"' in (run.error or "").replace(" ", "")  # what the old rule saw
    assert (result.status, result.ghost) == ("compensated", False)


async def test_a_run_cancelled_with_compensation_under_its_job_is_a_ghost(app: App) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    @app.workflow
    async def long(wf: Workflow) -> str:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)

        async def work() -> str:
            entered.set()
            await release.wait()
            return "late"

        return await wf.step("work", work)

    wid = await app.asubmit(long)
    host = ServerlessHost(app)
    (job,) = await host.aclaim(5)
    execution = asyncio.ensure_future(host.ahandle_job(job))
    await entered.wait()
    await app.acancel(wid, "changed my mind", compensate=True)
    release.set()
    result = await execution
    run = await app.aget_run(wid)
    assert run.status is RunStatus.COMPENSATED and run.end_reason is EndReason.CANCELLED
    assert result.ghost and result.status == "compensated"
    error = run.error_record
    assert error == ErrorRecord("Cancelled", "changed my mind", retryable=False)


async def test_a_failed_run_raises_again_when_asked_again_compensated_or_not(app: App) -> None:
    # its compensations ran (or one failed): asked again, it returned None, as if it worked
    def undo_fails() -> None:
        raise RuntimeError("undo failed")

    @app.workflow
    async def undone(wf: Workflow) -> int:
        await wf.step("a", lambda: 1, compensate=lambda: None)
        raise ValueError("step b failed")

    @app.workflow
    async def half_undone(wf: Workflow) -> int:
        await wf.step("a", lambda: 1, compensate=undo_fails)
        raise ValueError("step b failed")

    for flow, status in (
        (undone, RunStatus.COMPENSATED),
        (half_undone, RunStatus.COMPENSATION_FAILED),
    ):
        for _ in range(2):  # the drive that fails, then the ask that finds it ended
            with pytest.raises(ValueError, match="step b failed"):
                await app.arun(flow, workflow_id=f"{status.value}-1")
            assert await _ended(app, f"{status.value}-1") == (status, EndReason.FAILED)
        with pytest.raises(ValueError, match="step b failed"):
            await app.aresume(f"{status.value}-1")


async def test_a_run_ended_without_a_reason_by_an_older_release_reads_as_it_ended(
    database_url: str,
) -> None:
    # a process of a release before end_reason, still running when this one migrated,
    # ends runs leaving it NULL: a failed, compensated one then looked successful
    app = App(database_url)

    @app.workflow
    async def undone(wf: Workflow) -> int:
        await wf.step("a", lambda: 1, compensate=lambda: None)
        raise ValueError("step b failed")

    @app.workflow
    async def fine(wf: Workflow) -> int:
        return 1

    try:
        with pytest.raises(ValueError):
            await app.arun(undone, workflow_id="old-1")
        await app.arun(fine, workflow_id="old-2")
        execute(database_url, "UPDATE runs SET end_reason = NULL")
        assert await _ended(app, "old-1") == (RunStatus.COMPENSATED, EndReason.FAILED)
        assert await _ended(app, "old-2") == (RunStatus.COMPLETED, EndReason.COMPLETED)
        with pytest.raises(ValueError, match="step b failed"):
            await app.arun(undone, workflow_id="old-1")
    finally:
        await app.aclose()


async def test_a_run_a_newer_tether_started_is_not_driven_here(database_url: str) -> None:
    # a rolling deploy: this process is the old one; driven here, the run's steps would be
    # named by another rule, not found by the newer process, and run again
    from tether.worker import ServerlessHost
    from tether.worker._claim import claim_jobs

    ran: list[str] = []
    clock = tether.FakeClock()
    app = App(database_url, clock=clock)

    @app.workflow
    async def job(wf: Workflow) -> int:
        return await wf.step("work", lambda: ran.append(wf.workflow_id) or 1)

    try:
        await app.asubmit(job, workflow_id="direct")
        await app.asubmit(job, workflow_id="queued")
        execute(database_url, "UPDATE runs SET step_rule = 6")
        with pytest.raises(tether.NewerRunError, match=r"newer tether \(step rule 6"):
            await app.aresume("direct")
        report = await ServerlessHost(app).aprocess_available_jobs(limit=5)
        assert report.succeeded == 0 and ran == []
        # a worker claims the job's run with it (`tether worker`): handed back unrun too
        clock.advance(60)  # the jobs handed back are due again
        claimed = await claim_jobs(app, "w1", ["default"], 5, with_runs=True)
        assert len(claimed) == 2
        for job_row in claimed:
            assert job_row.run is not None and job_row.run.owner is not None
            done = await app.kernel.execute_job(job_row, "w1")
            assert done.status == "not_ours" and "newer tether" in (done.error or "")
        assert ran == []
        for wid in ("direct", "queued"):
            run = await app.aget_run(wid)
            assert run.status is RunStatus.PENDING and run.owner_expires_at is None  # handed back
            jobs = await app.store.list_jobs(workflow_id=wid)
            assert [j.status.value for j in jobs] == ["queued"]  # for a newer worker
    finally:
        await app.aclose()
