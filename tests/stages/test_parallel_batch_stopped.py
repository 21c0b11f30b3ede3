"""A stage parked on its own ``ctx.ai.batch`` (not a batch stage) whose sibling in a
parallel group fails: the group stops it, and its batch is cancelled at the provider.
It was left running, billed, for a run that had failed (only a batch *stage*'s batch
was cancelled), though the record showed the stage cancelled."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import tether
from tether import ai
from tether.testing import FakeClock


class N(BaseModel):
    x: int


@tether.stage(id="embed", input=N, output=N)
async def embed(ctx: tether.StageContext[N, None]) -> N:
    await ctx.ai.batch("fake:m", ["p1", "p2"], poll_every=60)
    return ctx.input


@tether.stage(id="check", input=N, output=N)
async def check(ctx: tether.StageContext[N, None]) -> N:
    await ctx.workflow.wait_for_signal("go")
    raise ValueError("the check broke")


async def test_a_stopped_stages_own_batch_is_cancelled(database_url: str, clock: FakeClock) -> None:
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=5)
    app = tether.App(database_url, clock=clock, ai=ai.Providers(fake=fake))
    p = tether.Pipeline("grouped", input=N).parallel([embed, check])
    app.register(p)
    try:
        parked = await app.arun(p, N(x=1), workflow_id="g1")
        assert parked.status is tether.RunStatus.WAITING  # the batch out, the check waiting
        [batch] = [e.message for e in parked.record.events if e.type == "ai.batch.submitted"]
        assert fake._cancelled == set()
        await app.asignal("g1", "go")
        done = await app.aresult("g1")
        assert done.status is tether.RunStatus.FAILED
        stages = {s.id: s.status for s in done.record.stages}
        assert stages == {"embed": "cancelled", "check": "failed"}
        assert fake._cancelled == {batch}  # not left running at the provider
    finally:
        await app.aclose()


async def test_a_clean_exit_leaves_a_parked_stages_batch_running(
    database_url: str, clock: FakeClock
) -> None:
    """Only a stop for good cancels it: a run handed back (the App closing) resumes
    and polls its batch on."""
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=2)
    app = tether.App(database_url, clock=clock, ai=ai.Providers(fake=fake))
    p = tether.Pipeline("alone", input=N).parallel([embed])
    app.register(p)
    await app.arun(p, N(x=1), workflow_id="g2")
    await app.aclose()
    assert fake._cancelled == set()
    app = tether.App(database_url, clock=clock, ai=ai.Providers(fake=fake))
    app.register(p)
    try:
        for _ in range(4):
            clock.advance(60)
            await app.afire_due_timers()
            await app.aresume("g2")
        done = await app.aresult("g2")
        assert done.status is tether.RunStatus.COMPLETED and fake._cancelled == set()
    finally:
        await app.aclose()


_replay_held = asyncio.Event()  # set: a drive's replay of `slow_embed` never reaches its batch


@tether.stage(id="embed", input=N, output=N)
async def slow_embed(ctx: tether.StageContext[N, None]) -> N:
    if _replay_held.is_set():
        await asyncio.Event().wait()  # stopped here, before its batch call lists the batch
    await ctx.ai.batch("fake:m", ["p1", "p2"], poll_every=60)
    return ctx.input


async def test_a_stage_stopped_before_its_replay_reached_its_batch_still_cancels_it(
    database_url: str, clock: FakeClock
) -> None:
    # before: the batch was cancelled only if the stage's replay had listed it as out by
    # the time its sibling failed: stopped earlier, it ran on at the provider, billed
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=5)
    app = tether.App(database_url, clock=clock, ai=ai.Providers(fake=fake))
    p = tether.Pipeline("grouped-slow", input=N).parallel([slow_embed, check])
    app.register(p)
    _replay_held.clear()
    try:
        parked = await app.arun(p, N(x=1), workflow_id="g3")
        [batch] = [e.message for e in parked.record.events if e.type == "ai.batch.submitted"]
        _replay_held.set()
        await app.asignal("g3", "go")
        done = await app.aresult("g3")
        assert done.status is tether.RunStatus.FAILED
        assert {s.id: s.status for s in done.record.stages} == {
            "embed": "cancelled",
            "check": "failed",
        }
        assert fake._cancelled == {batch}
    finally:
        _replay_held.clear()
        await app.aclose()
