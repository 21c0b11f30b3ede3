"""A `ServerlessHost` whose App is stopping claims nothing: each run it drove would hand
itself back at once and its job be claimed again, in a loop, until the process died
holding the last one."""

from __future__ import annotations

from tether import App, FakeClock, Workflow
from tether.store import JobStatus
from tether.worker import ServerlessHost


async def test_a_draining_app_claims_no_jobs_and_leaves_them_queued(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock)

    @app.workflow(name="flow")
    async def flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")

    try:
        ids = [await app.asubmit(flow, workflow_id=f"r{n}") for n in range(2)]
        assert not app.draining
        app.drain()
        assert app.draining
        host = ServerlessHost(app, worker_id="w1")
        assert await host.aclaim(5) == []
        report = await host.aprocess_available_jobs(limit=10)
        assert (report.processed, report.succeeded, report.failed) == (0, 0, 0)
        jobs = await app.store.list_jobs()
        assert sorted(j.workflow_id for j in jobs) == ids
        assert {j.status for j in jobs} == {JobStatus.QUEUED}
    finally:
        await app.aclose()
