"""`ServerlessHost.handle_job` drives only a job the host holds. A job read from the
store (still queued) was driven as if claimed: the answer said 'completed' while the
job stayed queued for a worker to claim and drive again, and a job another host held
was driven beside it. Sync handlers have `claim` to get the jobs to hand it."""

from __future__ import annotations

import pytest

from tether import App, FakeClock, Workflow
from tether.errors import InvalidArgumentError
from tether.store import JobStatus
from tether.worker import ServerlessHost


def test_handle_job_refuses_a_job_this_host_did_not_claim(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock)
    driven: list[str] = []

    @app.workflow(name="flow")
    async def flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: driven.append(wf.workflow_id) or "done")

    try:
        app.submit(flow, workflow_id="r1")
        host = ServerlessHost(app, worker_id="w1")
        [queued] = app.run_sync(app.store.list_jobs())
        with pytest.raises(
            InvalidArgumentError, match=r"not claimed by this host 'w1' \(it is queued\)"
        ):
            host.handle_job(queued)
        with pytest.raises(InvalidArgumentError, match=r"a JobRow from claim\(\)"):
            host.handle_job({"id": 1})  # type: ignore[arg-type]
        [job] = ServerlessHost(app, worker_id="w2").claim(5)
        with pytest.raises(InvalidArgumentError, match=r"worker 'w2' holds it"):
            host.handle_job(job)
        assert driven == [] and app.get_run("r1").status.value == "pending"
        # the host that claimed it drives it
        result = ServerlessHost(app, worker_id="w2").handle_job(job)
        assert result.status == "completed" and driven == ["r1"]
        assert [j.status for j in app.run_sync(app.store.list_jobs())] == [JobStatus.DONE]
    finally:
        app.close()
