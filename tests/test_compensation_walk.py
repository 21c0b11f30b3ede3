"""Compensation met as a user meets it: a parked run cancelled with compensate=True
after some of its waits were answered, and a compensation that cannot be called."""

from __future__ import annotations

import pytest

import tether
from tether import App, RunStatus, Workflow


async def test_a_run_cancelled_with_compensation_undoes_the_steps_after_its_answered_waits(
    app: App,
) -> None:
    # the replay that learns the compensations stopped at the first wait, answered or
    # not: only "a" was undone, and "b", "c", "d" stayed done in a `compensated` run
    undone: list[str] = []

    async def kid(wf: Workflow) -> str:
        return "k"

    async def flow(wf: Workflow) -> None:
        await wf.step("a", lambda: "A", compensate=lambda: undone.append("a"))
        await wf.wait_for_signal("first")
        await wf.step("b", lambda: "B", compensate=lambda: undone.append("b"))
        await wf.sleep(1)  # waited out in the run, on the fake clock: a fired timer
        await wf.step("c", lambda: "C", compensate=lambda: undone.append("c"))
        await wf.child(kid)
        await wf.step("d", lambda: "D", compensate=lambda: undone.append("d"))
        await wf.wait_for_signal("second")

    assert (await app.arun(flow, workflow_id="saga")).status is RunStatus.WAITING
    assert await app.asignal("saga", "first", None) is True
    await app.asettle(10)
    waits = {w.key: w.status.value for w in await app.alist_waits("saga")}
    assert waits["signal:second#1"] == "pending"  # parked after all four steps
    assert await app.acancel("saga", "stop", compensate=True) == ["saga"]
    result = await app.aresult("saga", timeout=10)
    assert result.record.status is RunStatus.COMPENSATED
    assert undone == ["d", "c", "b", "a"]


async def test_a_compensation_requiring_a_keyword_only_argument_is_refused_at_its_step(
    app: App,
) -> None:
    # a compensation is given none: it passed the check, failed with a TypeError only
    # once the run failed, and left the charge undone in a `compensation_failed` run
    calls: list[str] = []

    def refund(order: str, *, amount: int) -> None:
        calls.append("refund")

    def refund_later(order: str, *, amount: int = 0) -> None:  # a default: fine
        calls.append(f"refund {order}")

    async def flow(wf: Workflow) -> None:
        with pytest.raises(tether.InvalidArgumentError, match="keyword-only 'amount' with no"):
            await wf.step("charge", lambda: calls.append("charge"), compensate=refund)
        await wf.step("charge", lambda: "o-1", compensate=refund_later)
        raise RuntimeError("the order fell through")

    with pytest.raises(RuntimeError, match="fell through"):
        await app.arun(flow, workflow_id="kw")
    assert (await app.aget_run("kw")).status is RunStatus.COMPENSATED
    assert calls == ["refund o-1"]
