"""How a worker's claim reads its queues: best priority across them, each queue once."""

from __future__ import annotations

from tether import App, Workflow
from tether.worker import Worker
from tether.worker._claim import claim_jobs


async def test_a_capped_queue_s_better_job_goes_before_an_uncapped_queue_s(app: App) -> None:
    """A worker of a capped queue and an uncapped one takes the best priority among them
    on both databases. On PostgreSQL the uncapped queues were claimed first, in a
    statement of their own, so their worse job took the only free slot."""
    app.queue("capped", concurrency=5)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    await app.asubmit(w, 0, queue="plain", priority=0)
    best = await app.asubmit(w, 1, queue="capped", priority=10)
    await app.asubmit(w, 2, queue="plain", priority=5)
    first = await claim_jobs(app, "worker-1", ["plain", "capped"], 1)
    assert [(j.workflow_id, j.queue) for j in first] == [(best, "capped")]
    rest = await claim_jobs(app, "worker-1", ["plain", "capped"], 5)
    assert [j.priority for j in rest] == [5, 0]


async def test_a_queue_named_twice_fills_every_free_slot(app: App) -> None:
    """A worker given a queue twice (queues=["a", "a"]) read it twice in each claim,
    picked each job twice over, and so claimed one job for two free slots."""
    app.queue("capped", concurrency=5)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    for x in range(5):
        await app.asubmit(w, x, queue="capped")
    worker = Worker(app, queues=["capped", "capped"])
    assert worker.queues == ("capped",)
    assert len(await claim_jobs(app, worker.worker_id, worker.queues, 2)) == 2
    # the store's claim too, for a host that names its queues itself
    assert len(await claim_jobs(app, "host-2", ["capped", "capped"], 2)) == 2
