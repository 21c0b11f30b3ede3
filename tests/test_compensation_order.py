"""Compensation order: newest completed step first, also when a fake clock that never
moves gives steps that completed one after the other the same `completed_at`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow


async def test_steps_completed_at_one_instant_are_undone_newest_first_after_a_resume(
    database_url: str, clock: FakeClock
) -> None:
    # item 0's step completes after item 1's (it waits for it), at the same instant;
    # the run parks, and the resumed replay asks for them in call order (0, then 1)
    undone: list[str] = []
    second_done = asyncio.Event()

    async def flow(wf: Workflow) -> None:
        async def item(i: int) -> None:
            async def work() -> int:
                if i == 0:
                    await second_done.wait()
                else:
                    second_done.set()
                return i

            await wf.step("charge", work, compensate=lambda v: undone.append(f"refund-{v}"))

        await wf.for_each([0, 1], item, max_parallel=2)
        await wf.wait_for_signal("go")
        raise RuntimeError("declined")

    async with App(database_url, clock=clock, resume_woken=False) as app:
        await _fail_after_resume(app, flow)
    assert undone == ["refund-0", "refund-1"]  # charge[0] completed last: undone first


async def _fail_after_resume(app: App, flow: Any) -> None:
    first = await app.arun(flow, workflow_id="order-1")
    assert first.status is RunStatus.WAITING
    assert (
        first.record.steps["charge[0]"].completed_at == first.record.steps["charge[1]"].completed_at
    )
    await app.asignal("order-1", "go")
    with pytest.raises(RuntimeError, match="declined"):
        await app.arun(flow, workflow_id="order-1")
    assert (await app.aget_run("order-1")).status is RunStatus.COMPENSATED
