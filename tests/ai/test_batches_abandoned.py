"""A `wf.ai.batch` call that its run gives up on for good: an item of
``for_each(stop_on_error=True)`` parked on its batch when a sibling fails, or a
call the workflow stops itself. When the run then ends (failed or completed) no
code will ever poll that batch again, so it is cancelled at the provider; it was
left running, billed, for a run that had ended. A run that parks or is handed
back keeps its batch: it polls on when it resumes."""

from __future__ import annotations

import asyncio

import pytest

import tether
from tether import ai
from tether.testing import FakeClock


def _app(database_url: str, clock: FakeClock, fake: ai.FakeModel) -> tether.App:
    return tether.App(database_url, clock=clock, ai=ai.Providers(fake=fake))


def _fan(app: tether.App, catch: bool) -> object:
    async def one(wf: tether.Workflow, i: int) -> str:
        if i == 0:
            await wf.ai.batch("fake:m", ["p1", "p2"], poll_every=60)
            return "batched"
        await wf.wait_for_signal("go")
        raise ValueError("the check broke")

    @app.workflow(name="fan")
    async def fan(wf: tether.Workflow) -> str:
        try:
            await wf.for_each([0, 1], lambda i: one(wf, i), max_parallel=2)
        except tether.ForEachError:
            if not catch:
                raise
            return "gave up"
        return "all done"

    return fan


@pytest.mark.parametrize("catch", [False, True], ids=["failed", "caught"])
async def test_an_item_parked_on_its_batch_when_a_sibling_fails_has_it_cancelled(
    database_url: str, clock: FakeClock, catch: bool
) -> None:
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=5)
    app = _app(database_url, clock, fake)
    fan = _fan(app, catch)
    try:
        parked = await app.arun(fan, workflow_id="f1")
        assert parked.status is tether.RunStatus.WAITING  # the batch out, item 1 waiting
        [batch] = [e.message for e in parked.record.events if e.type == "ai.batch.submitted"]
        assert fake._cancelled == set()
        await app.asignal("f1", "go")
        done = await app.aresult("f1")
        want = tether.RunStatus.COMPLETED if catch else tether.RunStatus.FAILED
        assert done.status is want
        assert fake._cancelled == {batch}  # not left running at the provider
    finally:
        await app.aclose()


async def test_a_batch_call_the_workflow_stops_itself_is_cancelled_at_its_end(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=5)
    app = _app(database_url, clock, fake)

    @app.workflow(name="impatient")
    async def impatient(wf: tether.Workflow) -> str:
        call = asyncio.ensure_future(wf.ai.batch("fake:m", ["p1"], poll_every=60))
        await asyncio.sleep(0)
        while not any(e.type == "ai.batch.submitted" for e in await wf.list_events()):
            await asyncio.sleep(0)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return "moved on"

    try:
        done = await app.arun(impatient, workflow_id="i1")
        assert done.status is tether.RunStatus.COMPLETED
        [batch] = [e.message for e in done.record.events if e.type == "ai.batch.submitted"]
        assert fake._cancelled == {batch}
    finally:
        await app.aclose()


async def test_a_run_parked_on_its_batch_and_handed_back_keeps_it(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(lambda model, request: "ok", batch_polls=2)
    app = _app(database_url, clock, fake)
    fan = _fan(app, catch=False)
    await app.arun(fan, workflow_id="f2")
    await app.aclose()  # parked and closed: nothing is given up
    assert fake._cancelled == set()
    app = _app(database_url, clock, fake)
    _fan(app, catch=False)
    try:
        for _ in range(3):
            clock.advance(60)
            await app.afire_due_timers()
            await app.aresume("f2")
        await app.asignal("f2", "go")
        done = await app.aresult("f2")
        assert done.status is tether.RunStatus.FAILED  # item 1 failed; item 0's batch ended
        assert fake._cancelled == set()
    finally:
        await app.aclose()
