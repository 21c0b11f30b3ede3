"""`app.start` of a queued run's id, the run handed back, leaves it to its workers: its
job is back in the queue, and a drive here in the background would hold neither that
job nor its concurrency key (a worker ran another run of that key beside it)."""

from __future__ import annotations

import asyncio

from tether import App, RunStatus, Workflow
from tether.store import JobStatus
from tether.worker import Worker

from .._probes import Probe, register_probed


async def _hand_back(database_url: str, workflow_id: str) -> None:
    """A worker drives the run into its step and, stopped with no grace, hands it back
    with its job (queued again)."""
    stalled = asyncio.Event()
    prior = App(database_url)

    async def body(wf: Workflow, tag: str) -> str:
        async def work() -> str:
            stalled.set()
            await asyncio.Event().wait()
            return tag

        return await wf.step("work", work)

    prior.workflow(name="other")(body)
    worker = Worker(prior, queues=["default"], poll_interval=0.01, grace=0)
    serving = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        await asyncio.wait_for(stalled.wait(), 30)
    finally:
        worker.stop()
        await asyncio.wait_for(serving, 30)
        await prior.aclose()


async def test_astart_leaves_a_handed_back_queued_run_to_its_workers(database_url: str) -> None:
    """The worker runs `a` (key k) and is held in its step; `app.astart` of `b` (key k,
    handed back) drives nothing here, and the worker runs `b` once `a` is done. Before,
    `b` was driven here at once beside `a`."""
    probe = Probe()
    host, here = App(database_url), App(database_url)
    register_probed(host, probe, "held")
    register_probed(host, probe, "other")
    held = register_probed(here, probe, "held")
    other = register_probed(here, probe, "other")
    worker = Worker(host, queues=["default"], concurrency=2, poll_interval=0.01)
    serving: asyncio.Future[None] | None = None
    try:
        b = await here.asubmit(other, "second", concurrency_key="k")
        await _hand_back(database_url, b)
        run = await here.aget_run(b)
        assert run.status is RunStatus.PENDING and run.generation >= 1
        a = await here.asubmit(held, "first", concurrency_key="k", priority=1)
        serving = asyncio.ensure_future(worker.run(install_signals=False))
        await asyncio.wait_for(probe.entered.wait(), 30)
        assert await here.astart(other, "second", workflow_id=b) == b
        await here.asettle(timeout=30)  # what it drives in the background is at rest
        assert probe.peak == 1  # `b` not run beside `a`
        assert [j.status for j in await here.ajobs(b)] == [JobStatus.QUEUED]
        probe.gate.set()
        res = await here.aresult(b, timeout=30)
        assert (res.status, res.value) == (RunStatus.COMPLETED, "second")
        assert (await here.aresult(a, timeout=30)).status is RunStatus.COMPLETED
        assert probe.peak == 1
        assert [j.status for j in await here.ajobs(b)] == [JobStatus.DONE]
    finally:
        probe.gate.set()
        worker.stop()
        if serving is not None:
            await serving
        await host.aclose()
        await here.aclose()
