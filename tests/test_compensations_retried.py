"""`retry_compensations`: an operator's second try at the undo of a run left
`compensation_failed` (the refund service was down), once the cause is fixed.
Only the compensations that did not complete run again; the run's own failure
is replayed from the record, never run again."""

from __future__ import annotations

import contextlib

import pytest

from tether import App, EndReason, RunStatus, Workflow
from tether.errors import InvalidArgumentError, WorkflowTimeoutError
from tether.kernel import CompensationsRetried, RunRetryCompensations
from tether.testing import FakeClock
from tether.worker import ServerlessHost


class Ledger:
    """What each side effect did, and a switch for the refund service."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refunds_up = False

    def refund(self, what: str) -> None:
        self.calls.append(f"refund {what}")
        if not self.refunds_up:
            raise ConnectionError("refund service unavailable")

    def release(self, what: str) -> None:
        self.calls.append(f"release {what}")

    def ship(self) -> None:
        self.calls.append("ship")
        raise ValueError("address rejected")


def _order(app: App, ledger: Ledger) -> object:
    @app.workflow(name="order")
    async def order(wf: Workflow) -> None:
        await wf.step("hold", lambda: "h1", compensate=ledger.release)
        await wf.step("charge", lambda: "c1", compensate=ledger.refund, compensate_retry=2)
        await wf.step("ship", ledger.ship)

    return order


async def test_only_the_failed_compensation_runs_again(app: App) -> None:
    ledger = Ledger()
    order = _order(app, ledger)
    with pytest.raises(ValueError, match="address rejected"):
        await app.arun(order, workflow_id="o1")
    assert (await app.aget_run("o1")).status is RunStatus.COMPENSATION_FAILED
    assert ledger.calls == ["ship", "refund c1", "refund c1", "release h1"]

    ledger.refunds_up = True
    ledger.calls.clear()
    result = await app.aretry_compensations("o1")
    # the failed step is not shipped again; the completed release is not run twice
    assert ledger.calls == ["refund c1"]
    assert result.status is RunStatus.COMPENSATED and result.value is None
    record = result.record
    assert record.end_reason is EndReason.FAILED
    assert record.last_error is not None and record.last_error.message == "address rejected"
    assert record.steps["compensate:charge"].attempts == 1  # its tries counted anew
    events = [e.type for e in await app.store.list_events("o1")]
    assert events.count("run.compensations_retried") == 1
    assert events[-1] == "workflow.failed"


async def test_a_compensation_that_fails_again_leaves_it_compensation_failed(app: App) -> None:
    ledger = Ledger()
    order = _order(app, ledger)
    with pytest.raises(ValueError):
        await app.arun(order, workflow_id="o2")
    ledger.calls.clear()
    result = await app.aretry_compensations("o2")
    assert ledger.calls == ["refund c1", "refund c1"]  # its compensate_retry=2 again
    assert result.status is RunStatus.COMPENSATION_FAILED
    assert result.record.steps["compensate:charge"].status.value == "failed"
    # and it can be tried a third time
    ledger.refunds_up = True
    ledger.calls.clear()
    assert (await app.aretry_compensations("o2")).status is RunStatus.COMPENSATED
    assert ledger.calls == ["refund c1"]


async def test_a_cancelled_run_is_compensated_not_run_on(app: App) -> None:
    ledger = Ledger()
    parked: list[str] = []

    @app.workflow(name="booking")
    async def booking(wf: Workflow) -> None:
        await wf.step("charge", lambda: "c2", compensate=ledger.refund)
        await wf.wait_for_signal("confirm")
        await wf.step("after", lambda: parked.append("after"))

    await app.astart(booking, workflow_id="b1")
    await app.asettle()
    await app.acancel("b1", "customer left", compensate=True)
    await app.asettle()
    assert (await app.aget_run("b1")).status is RunStatus.COMPENSATION_FAILED

    ledger.refunds_up = True
    ledger.calls.clear()
    result = await app.aretry_compensations("b1")
    assert result.status is RunStatus.COMPENSATED
    assert result.record.end_reason is EndReason.CANCELLED
    assert ledger.calls == ["refund c2"] and parked == []


@pytest.mark.parametrize("status", ["completed", "failed", "compensated", "waiting"])
async def test_a_run_not_compensation_failed_is_refused_unchanged(app: App, status: str) -> None:
    ledger = Ledger()
    ledger.refunds_up = True

    @app.workflow(name="plain")
    async def plain(wf: Workflow, how: str) -> None:
        await wf.step("charge", lambda: "c3", compensate=ledger.refund if how == "undo" else None)
        if how == "wait":
            await wf.wait_for_signal("go")
        if how in ("fail", "undo"):
            raise RuntimeError("no")

    how = {"completed": "ok", "failed": "fail", "compensated": "undo", "waiting": "wait"}
    with contextlib.suppress(RuntimeError):
        await app.arun(plain, how[status], workflow_id="p1")
    before = await app.aget_run("p1")
    assert before.status.value == status
    with pytest.raises(InvalidArgumentError, match=f"run 'p1' is {status}") as refused:
        await app.aretry_compensations("p1")
    assert "compensation" in str(refused.value)
    after = await app.aget_run("p1")
    assert (after.status, after.attempt) == (before.status, before.attempt)


@pytest.mark.parametrize("how", ["kernel", "app"])
async def test_a_queued_run_goes_back_to_its_workers(app: App, how: str) -> None:
    ledger = Ledger()
    order = _order(app, ledger)
    wid = await app.asubmit(order, workflow_id="q1")
    host = ServerlessHost(app)
    await host.aprocess_available_jobs(limit=5)
    assert (await app.aget_run(wid)).status is RunStatus.COMPENSATION_FAILED

    ledger.refunds_up = True
    ledger.calls.clear()
    if how == "kernel":
        retried = await app.kernel.adispatch(RunRetryCompensations(workflow_id=wid))
        assert retried == CompensationsRetried(workflow_id=wid, retried=["compensate:charge"])
    else:  # the App returns at once: no worker ran yet
        assert (await app.aretry_compensations(wid)).status is RunStatus.PENDING
    assert (await app.aget_run(wid)).status is RunStatus.PENDING and ledger.calls == []
    report = await host.aprocess_available_jobs(limit=5)
    assert report.succeeded + report.failed == 1
    assert (await app.aget_run(wid)).status is RunStatus.COMPENSATED
    assert ledger.calls == ["refund c1"]


def test_the_sync_facade(sqlite_url: str) -> None:
    ledger = Ledger()
    with App(sqlite_url) as app:
        order = _order(app, ledger)
        with pytest.raises(ValueError):
            app.run(order, workflow_id="s1")
        ledger.refunds_up = True
        assert app.retry_compensations("s1").status is RunStatus.COMPENSATED


async def test_a_timed_out_run_is_undone_without_running_on(app: App, clock: FakeClock) -> None:
    ledger = Ledger()

    @app.workflow(name="slow", timeout=60)
    async def slow(wf: Workflow) -> None:
        await wf.step("charge", lambda: "c4", compensate=ledger.refund)
        await wf.step("think", lambda: bool(clock.advance(120)))  # past its budget
        await wf.step("never", lambda: ledger.calls.append("never"))

    with pytest.raises(WorkflowTimeoutError):
        await app.arun(slow, workflow_id="t1")
    ledger.refunds_up = True
    result = await app.aretry_compensations("t1")
    assert (result.status, result.record.end_reason) == (
        RunStatus.COMPENSATED,
        EndReason.TIMED_OUT,
    )
    assert ledger.calls == ["refund c4", "refund c4"]
