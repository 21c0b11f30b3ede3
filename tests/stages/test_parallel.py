"""A parallel group stops at its first failure: a sibling still working (a long model
call, an agent) is cancelled, not left to run on, billed, for a run that has failed
(the rerun from the group runs it again anyway)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import tether
from tether import App, RunStatus


class N(BaseModel):
    x: int


async def test_the_first_failure_cancels_a_sibling_still_working(app: App) -> None:
    started, returned = asyncio.Event(), []

    @tether.stage(id="works", input=N, output=N)
    async def works(ctx: tether.StageContext[N, None]) -> N:
        async def long_call() -> int:
            started.set()
            # a call that answers long after the failure (30 s bounds the test on a tether
            # that waits for it: the stage then fails with TimeoutError, not cancelled)
            await asyncio.wait_for(asyncio.Event().wait(), 30)
            returned.append("answer")
            return 1

        return N(x=await ctx.workflow.step("call", long_call))

    @tether.stage(id="breaks", input=N, output=N)
    async def breaks(ctx: tether.StageContext[N, None]) -> N:
        await started.wait()  # the sibling is mid-call
        raise RuntimeError("breaks broke")

    p = tether.Pipeline("stops", input=N).parallel([works, breaks])
    app.register(p)
    with pytest.raises(RuntimeError, match="breaks broke"):
        await app.arun(p, N(x=1), workflow_id="stops-1")
    assert returned == []
    rec = await app.aget_record("stops-1")
    assert rec.status is RunStatus.FAILED
    assert {s.id: s.status for s in rec.stages} == {"works": "cancelled", "breaks": "failed"}
    [stopped] = [e.detail for e in rec.events if e.type == "stage.cancelled"]
    assert stopped == {
        "stage": "works",
        "attempt": 1,
        "reason": "stage 'breaks' of its group failed",
    }
    assert "works/call" not in {k for k, s in rec.steps.items() if s.status == "completed"}

    # the rerun from the group runs both again
    started.clear()
    with pytest.raises(RuntimeError, match="breaks broke"):
        await app.arerun_from("stops-1", "works")
    rec = await app.aget_record("stops-1")
    assert {s.id: (s.status, s.attempt) for s in rec.stages} == {
        "works": ("cancelled", 2), "breaks": ("failed", 2)}  # fmt: skip
