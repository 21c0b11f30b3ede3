"""``GET /api/v1/workers`` names the job queues each worker works, as the dashboard's
queues page does: without them a caller of the API (`tether runs show --server`
among them) could not tell whether anything will take a run queued on a queue."""

from __future__ import annotations

import asyncio

import tether
from tether import Client

from ._serve import Served


async def _announce(db: str, queues: list[str]) -> tether.App:
    """An App on the server's database that works `queues`, alive until closed."""
    app = tether.App(db)

    @app.workflow(name="counts")
    async def counts(wf: tether.Workflow, n: int) -> int:
        return n

    await app.aannounce(queues)
    return app


def test_each_worker_is_listed_with_its_queues(served: Served) -> None:
    loop = asyncio.new_event_loop()
    app = loop.run_until_complete(_announce(served.db, ["slow", "gpu"]))
    try:
        with Client(served.url) as client:
            workers = {w.id: w for w in client.workers()}
    finally:
        loop.run_until_complete(app.aclose())
        loop.close()
    worker = next(w for w in workers.values() if w.queues)
    assert sorted(worker.queues) == ["gpu", "slow"] and worker.workflows == ["counts"]
    others = [w for w in workers.values() if w is not worker]
    assert others and all(w.queues == [] for w in others)  # the server: no queue
