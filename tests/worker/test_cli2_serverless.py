"""`ServerlessHost(app, queues="a,b")` serves queues a and b, as `Worker` and
`tether worker -q a,b` do (it served one queue named "a,b", which nothing is sent to)."""

from __future__ import annotations

import pytest

from tether import App, FakeClock, Workflow
from tether.errors import InvalidArgumentError
from tether.worker import ServerlessHost, Worker


async def test_a_comma_string_is_the_queues_it_names(database_url: str, clock: FakeClock) -> None:
    app = App(database_url, clock=clock)

    @app.workflow(name="flow")
    async def flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")

    try:
        await app.asubmit(flow, workflow_id="on-a", queue="a")
        await app.asubmit(flow, workflow_id="on-b", queue="b")
        host = ServerlessHost(app, queues="a, b", worker_id="w1")
        assert host.queues == ("a", "b") == Worker(app, queues="a, b").queues
        report = await host.aprocess_available_jobs(limit=10)
        assert (report.processed, report.succeeded) == (2, 2)
        assert {r.workflow_id: r.status.value for r in await app.alist_runs()} == {
            "on-a": "completed",
            "on-b": "completed",
        }
    finally:
        await app.aclose()


async def test_a_blank_name_in_the_string_is_refused_as_the_worker_refuses_it(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock)
    try:
        with pytest.raises(InvalidArgumentError, match="blank queue name"):
            ServerlessHost(app, queues="a,,b")
    finally:
        await app.aclose()
