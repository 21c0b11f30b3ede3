"""A user's walk of stages and pipelines: what the stage table of a run says after
the run ended with a stage under way."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import tether
from tether import App, RunStatus


class N(BaseModel):
    x: int


def _pipeline(started: asyncio.Event, release: asyncio.Event) -> tether.Pipeline[N, N]:
    undone: list[str] = []

    @tether.stage(id="first", input=N, output=N)
    async def first(ctx: tether.StageContext[N, None]) -> N:
        return N(x=await ctx.workflow.step("book", lambda: 1, compensate=undone.append))

    @tether.stage(id="long", input=N, output=N)
    async def long(ctx: tether.StageContext[N, None]) -> N:
        async def call() -> int:  # a model call under way when the run is cancelled
            started.set()
            await release.wait()
            return 2

        return N(x=await ctx.workflow.step("call", call))

    @tether.stage(id="last", input=N, output=N)
    async def last(ctx: tether.StageContext[N, None]) -> N:
        return ctx.input

    return tether.Pipeline("walk-cancel", input=N).pipe(first).pipe(long).pipe(last)


async def test_a_stage_cut_short_by_a_cancel_with_compensate_is_cancelled(app: App) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    p = _pipeline(started, release)
    app.register(p)
    running = asyncio.ensure_future(app.arun(p, N(x=0), workflow_id="cut"))
    await started.wait()
    assert await app.acancel("cut", "stop", compensate=True) == ["cut"]
    release.set()
    done = await running
    assert done.status is RunStatus.COMPENSATED
    record = await app.aget_record("cut")
    # before: the stage the cancel cut short read `running` in a run that had ended
    assert [(s.id, s.status, s.attempt) for s in record.stages] == [
        ("first", "completed", 1),
        ("long", "cancelled", 1),
        ("last", "skipped", None),
    ]
