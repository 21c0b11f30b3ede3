"""Races of the worker's claim loop with its own jobs ending, forced in a set order."""

from __future__ import annotations

import asyncio
from typing import Any

from tether import App, RunStatus, Workflow
from tether.testing import eventually
from tether.worker import Worker


async def test_a_keyed_job_ending_during_a_claim_that_skipped_its_key_claims_again(
    app: App,
) -> None:
    """A job of concurrency key k ends while the worker's claim is in flight, after that
    claim saw k held and left the next job of k queued: the worker claims again at
    once. The freed slot's kick, set during the claim, was cleared after it, and the
    job waited for the poll (an hour here; nothing announces a key freed)."""
    entered, gate = asyncio.Event(), asyncio.Event()

    @app.workflow(name="keyed")
    async def keyed(wf: Workflow, gated: bool) -> int:
        if gated:
            entered.set()
            await gate.wait()
        return await wf.step("s", lambda: 1)

    worker = Worker(app, queues=["q"], concurrency=2, poll_interval=3600,
                    maintenance_interval=3600)  # fmt: skip
    real = app.store.claim_jobs
    submitting = asyncio.Event()  # set before the queued job of k is submitted: the
    # claim its news starts may begin before `asubmit` hands its id back
    forced: list[int] = []  # claims it ran in

    async def claim_while_first_ends(*args: Any, **kw: Any) -> Any:
        after_second = submitting.is_set()
        claimed = await real(*args, **kw)
        if after_second and not claimed and not forced:
            forced.append(1)  # it saw k held: the first job ends before it returns
            gate.set()
            await eventually(lambda: worker.executed == 1, timeout=60)
        return claimed

    app.store.claim_jobs = claim_while_first_ends  # type: ignore[method-assign]
    task = asyncio.ensure_future(worker.run(install_signals=False))
    try:
        first = await app.asubmit(keyed, True, queue="q", concurrency_key="k")
        await asyncio.wait_for(entered.wait(), 60)
        submitting.set()
        second = await app.asubmit(keyed, False, queue="q", concurrency_key="k")
        for wid in (first, second):
            assert (await app.aresult(wid, timeout=30)).status is RunStatus.COMPLETED
        assert forced == [1]
    finally:
        worker.stop()
        await task
