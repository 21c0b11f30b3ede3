"""A run handed back at a graceful stop (its step ended within the grace, and the run
gave itself back) left its job queued but still naming the stopped worker: the job
listing (`app.jobs`, the dashboard) said a worker that was gone held a job nobody held.
The store's close of the job now clears the worker when the job goes back to the queue,
on SQLite and PostgreSQL alike; a job that ends keeps the worker that ran it."""

from __future__ import annotations

import signal
from pathlib import Path

from tether import App, RunStatus
from tether.store import JobStatus
from tether.testing import eventually_sync

from .test_worker_walk41 import _app, _serve, flows

__all__ = ["flows"]  # the fixture, shared with the walk of stops mid-step


def test_a_job_handed_back_at_a_stop_names_no_worker(flows: Path) -> None:
    app: App = _app()
    proc, log = _serve(flows, "--worker-id", "grace-1", "--grace", "120")
    try:
        wid = app.submit(app.get_workflow("gated").fn, "t1", workflow_id="t1")
        eventually_sync((flows / "t1.in").exists, timeout=60)
        (claimed,) = app.jobs(wid)
        assert (claimed.status, claimed.worker) == (JobStatus.CLAIMED, "grace-1")
        proc.send_signal(signal.SIGTERM)
        eventually_sync(lambda: "stopping:" in log.read_text(), timeout=30)
        (flows / "t1.go").touch()  # the step ends within the grace: the run gives itself back
        assert proc.wait(timeout=60) == 0
        assert app.get_run(wid).status is RunStatus.PENDING
        (job,) = app.jobs(wid)
        # before: (QUEUED, 0, "grace-1"), a stopped worker named on a job nobody held
        assert (job.status, job.attempt, job.worker) == (JobStatus.QUEUED, 0, None)
        proc, log = _serve(flows, "--worker-id", "grace-2")  # the next worker ends it
        assert app.result(wid, timeout=60).value == "t1"
        (done,) = app.jobs(wid)
        assert (done.status, done.worker) == (JobStatus.DONE, "grace-2")  # who ran it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        (flows / "t1.go").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        app.close()
    assert "worker=grace-2" in log.read_text()
