"""Waits that race inside one run: branches of its own that wait at once."""

from __future__ import annotations

import asyncio

from tether import App, RunStatus, Workflow


async def test_a_branch_answered_at_once_while_a_sibling_suspends_is_not_slept_through(
    app: App,
) -> None:
    """Before, the run waited for "approve" or "reject" (asyncio.wait, first completed);
    "approve" suspended while the store was still answering "reject" from a signal
    kept in the inbox, and the run parked on "approve" alone: "reject" was resolved
    (its signal consumed) and nothing woke the run for it, so it waited for an
    approval that was never coming. Which branch's answer comes first is a race
    (PostgreSQL lost it about three times in four): five runs make it certain."""
    started, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    @app.workflow
    async def either(wf: Workflow) -> str:
        await wf.step("hold", hold)
        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(wf.wait_for_signal("reject"))
        done, _ = await asyncio.wait({approve, reject}, return_when=asyncio.FIRST_COMPLETED)
        if reject in done and reject.exception() is None:
            return f"rejected by {reject.result()}"
        return f"approved by {approve.result()}"  # suspends while "approve" is pending

    for n in range(5):
        started.clear()
        gate.clear()
        task = asyncio.ensure_future(app.arun(either, workflow_id=f"either-{n}"))
        await started.wait()
        assert await app.asignal(f"either-{n}", "reject", "ada") is False  # kept: no wait yet
        gate.set()
        res = await task
        assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")


async def test_a_branch_answered_after_its_run_parked_wakes_the_run(app: App) -> None:
    """Before, a branch still in a step when its sibling's wait parked the run went on
    to wait for "reject", which the store answered at once from the inbox (the run
    parked, the signal kept): the run stayed parked on "approve", the rejection
    consumed and nothing to wake it."""
    gate, answered = asyncio.Event(), asyncio.Event()

    @app.workflow
    async def either(wf: Workflow) -> str:
        async def check_then_reject() -> object:
            await wf.step("check", gate.wait)
            try:
                return await wf.wait_for_signal("reject")
            finally:
                answered.set()

        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(check_then_reject())
        done, _ = await asyncio.wait({approve, reject}, return_when=asyncio.FIRST_COMPLETED)
        if reject in done and reject.exception() is None:
            return f"rejected by {reject.result()}"
        return f"approved by {approve.result()}"

    first = await app.arun(either, workflow_id="late-branch")
    assert first.status is RunStatus.WAITING  # on "approve"; "check" still running
    assert await app.asignal("late-branch", "reject", "ada") is False  # no reject wait yet
    gate.set()
    await answered.wait()  # the branch's wait got the kept signal, after the park
    run = await app.store.get_run("late-branch")
    assert run is not None and run.status is RunStatus.PENDING  # woken to be replayed
    res = await app.arun(either, workflow_id="late-branch")
    assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")
