"""Workers of apps with different workflows on one queue: each claims only jobs of the
workflows it registered (at versions it resumes); the others' jobs stay queued,
untouched, and a worker says in its log that its queue holds them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.testing import eventually_sync
from tether.worker import ServerlessHost
from tether.worker._claim import FOREIGN_WARN_EVERY, ForeignJobs

from .._sql import execute


def _apps(url: str, clock: tether.FakeClock) -> tuple[App, App]:
    """App `a` has workflow "a-flow", app `b` "b-flow"; neither has the other's."""
    a, b = App(url, clock=clock), App(url, clock=clock)

    @a.workflow(name="a-flow")
    async def a_flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: "a")

    @b.workflow(name="b-flow")
    async def b_flow(wf: Workflow) -> str:
        return await wf.step("s", lambda: "b")

    return a, b


async def test_a_capped_queue_full_of_others_jobs_still_starts_its_own(
    database_url: str, clock: tether.FakeClock
) -> None:
    # the worker claimed b's jobs ahead of its own (higher priority), handed each back
    # and claimed it again 5 s later: each took the queue's one start per second, and
    # a's own jobs never started
    a, b = _apps(database_url, clock)
    a.queue("q", rate_per_second=1)
    try:
        b_ids = [
            await b.asubmit(b.get_workflow("b-flow").fn, queue="q", priority=5) for _ in range(5)
        ]
        a_ids = [await a.asubmit(a.get_workflow("a-flow").fn, queue="q") for _ in range(3)]
        host = ServerlessHost(a, queues="q", worker_id="wa")
        claimed = []
        for _ in range(3):
            claimed += [j.workflow_id for j in await host.aclaim(10)]
            clock.advance(1.1)
        assert claimed == a_ids  # one start a second, every one its own
        for wid in b_ids:  # untouched: never claimed, due as submitted
            (job,) = await b.store.list_jobs(workflow_id=wid)
            assert (job.status.value, job.attempt, job.worker) == ("queued", 0, None)
            assert (await b.aget_run(wid)).status is RunStatus.PENDING
        report = await ServerlessHost(b, queues="q").aprocess_available_jobs(limit=10)
        assert report.succeeded == 5  # b's worker takes them
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_worker_claims_the_older_versions_it_resumes(
    database_url: str, clock: tether.FakeClock
) -> None:
    old, new = App(database_url, clock=clock), App(database_url, clock=clock)

    @old.workflow(name="flow", version="1")
    async def flow_1(wf: Workflow) -> str:
        return "one"

    @new.workflow(name="flow", version="2", compatible=["1"])
    async def flow_2(wf: Workflow) -> str:
        return "two"

    try:
        v1 = await old.asubmit(flow_1)
        v2 = await new.asubmit(flow_2)
        assert [j.workflow_id for j in await ServerlessHost(old).aclaim(10)] == [v1]
        clock.advance(31)  # the old worker died: its lease lapses
        await new.store.reap_jobs(now=clock.store_time(), at=clock.now())
        assert [j.workflow_id for j in await ServerlessHost(new).aclaim(10)] == [v1, v2]
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_job_queued_without_its_workflow_is_claimed_by_any_worker(
    database_url: str, clock: tether.FakeClock
) -> None:
    # as an older tether queues it after the migration: no worker may leave it for good
    a, b = _apps(database_url, clock)
    try:
        wid = await b.asubmit(b.get_workflow("b-flow").fn)
        execute(database_url, "UPDATE jobs SET workflow_name = NULL, workflow_version = NULL")
        assert [j.workflow_id for j in await ServerlessHost(a).aclaim(10)] == [wid]
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_worker_warns_of_its_queues_foreign_jobs_once_a_while(
    database_url: str, clock: tether.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = _apps(database_url, clock)
    try:
        await a.asubmit(a.get_workflow("a-flow").fn, queue="q")
        await b.asubmit(b.get_workflow("b-flow").fn, queue="q")
        await b.asubmit(b.get_workflow("b-flow").fn, queue="other")  # not a's queue
        foreign = ForeignJobs(a, "wa", ["q"])
        with caplog.at_level(logging.WARNING, logger="tether.worker"):
            assert await foreign.check() == [("q", "b-flow", None)]
            (record,) = caplog.records
            assert "'b-flow' (not registered here)" in record.getMessage()
            assert "that do: none" in record.getMessage()  # nobody will run them
            assert await foreign.check() == []  # once per interval
            clock.advance(FOREIGN_WARN_EVERY)
            await b.aannounce(["q"])  # a worker of b serves the queue now
            assert await foreign.check() == [("q", "b-flow", None)]
            (b_worker,) = await b.adrivers("b-flow", "q")
            assert caplog.records[-1].getMessage().endswith(f"that do: {b_worker}")
    finally:
        await a.aclose()
        await b.aclose()


FLOWS = textwrap.dedent(
    """
    import os, sys
    import tether
    from tether.worker import Worker

    app = tether.App(os.environ["DB_URL"])
    name = sys.argv[1]

    @app.workflow(name=name)
    async def flow(wf: tether.Workflow) -> str:
        return await wf.step("s", lambda: name)

    Worker(app, queues="q", concurrency=2, worker_id=name, poll_interval=0.02).serve()
    """
)


def test_two_apps_workers_on_one_queue_each_run_only_their_own(
    tmp_path: Path, database_url: str
) -> None:
    # both workers claimed from the head of the queue: each took the other's jobs,
    # handed them back and put them off by 5 s
    (tmp_path / "flows.py").write_text(FLOWS)
    env = {**os.environ, "DB_URL": database_url}
    apps = {name: App(database_url) for name in ("a-flow", "b-flow")}
    for name, app in apps.items():

        @app.workflow(name=name)
        async def flow(wf: Workflow) -> str:
            return "unused"

    ids = {n: [app.submit(app.get_workflow(n).fn, queue="q") for _ in range(20)]
           for n, app in apps.items()}  # fmt: skip
    procs = []
    for name in apps:
        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "flows.py"), name],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        log.close()
    try:
        a = apps["a-flow"]
        every = [wid for wids in ids.values() for wid in wids]
        eventually_sync(lambda: all(a.get_run(w).status is RunStatus.COMPLETED for w in every),
                        timeout=60)  # fmt: skip
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    for name, wids in ids.items():
        for wid in wids:
            (job,) = a.jobs(wid)
            assert job.worker == name and job.attempt == 1  # only ever its own worker's
            assert job.run_after == a.get_run(wid).created_at  # never handed back
    for name in apps:
        assert "not for this worker" not in (tmp_path / f"{name}.log").read_text()
        apps[name].close()
