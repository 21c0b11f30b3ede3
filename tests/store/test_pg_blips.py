"""A database blip is not the workflow's failure (PostgreSQL).

Each blip is real: another connection holds the run's (or the job's) row
with ``SELECT ... FOR UPDATE`` while tether's statement runs into its
``statement_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether.worker import ServerlessHost

from .._postgres import PostgresServer


@pytest.fixture
def schema(postgres: PostgresServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    postgres.drop_schema(name)


# only a step's completion writes its row: the run can still be marked failed meanwhile
STEP_ROW = "SELECT 1 FROM steps WHERE run_id = %s AND step_key = %s FOR UPDATE"


def _url(postgres: PostgresServer, schema: str, timeout: float) -> str:
    return postgres.url_with_schema(schema) + f"&statement_timeout={timeout}"


class RowLock:
    """Holds one row FOR UPDATE from another connection until released."""

    def __init__(self, postgres: PostgresServer, schema: str, sql: str, *params: Any) -> None:
        import psycopg

        self.conn = psycopg.connect(postgres.url)
        self.conn.execute(f'SET search_path TO "{schema}"')
        self.conn.execute(sql, params)

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


async def test_store_error_while_recording_a_step_leaves_the_run_running(
    postgres: PostgresServer, schema: str
) -> None:
    app = App(_url(postgres, schema, 0.3), clock=FakeClock())
    held: list[RowLock] = []
    calls: list[str] = []

    @app.workflow(name="blip")
    async def blip(wf: Workflow) -> str:
        await wf.step("a", lambda: calls.append("a"))

        def b() -> str:
            calls.append("b")
            if len(calls) == 2:  # first time: hold b's row while its completion lands
                held.append(RowLock(postgres, schema, STEP_ROW, "r1", "b"))
            return "b"

        await wf.step("b", b)
        return "done"

    try:
        with pytest.raises(tether.StoreError):
            await app.arun(blip, workflow_id="r1")
        held[0].release()
        run = await app.aget_run("r1")
        assert run.status is RunStatus.RUNNING  # not failed: the database blinked
        assert run.error is None
        result = await app.arun(blip, workflow_id="r1")  # resumes from the last record
        assert result.value == "done"
        assert calls == ["a", "b", "b"]  # b's completion never landed, so b ran again
    finally:
        for lock in held:
            if not lock.conn.closed:
                lock.release()
        await app.aclose()


async def test_store_error_in_a_job_retries_the_job_later(
    postgres: PostgresServer, schema: str
) -> None:
    clock = FakeClock()
    app = App(_url(postgres, schema, 0.3), clock=clock)
    held: list[RowLock] = []

    @app.workflow(name="blip")
    async def blip(wf: Workflow) -> str:
        def a() -> str:
            if not held:
                held.append(RowLock(postgres, schema, STEP_ROW, "j1", "a"))
            return "a"

        return await wf.step("a", a)

    try:
        await app.asubmit(blip, workflow_id="j1")
        report = await ServerlessHost(app).aprocess_available_jobs(limit=1)
        assert report.processed == 1
        held[0].release()
        jobs = await app.store.list_jobs(workflow_id="j1")
        assert [(j.status.value, (j.last_error or "")[:12]) for j in jobs] == [
            ("queued", "store error:")
        ]
        assert (await app.aget_run("j1")).status is RunStatus.RUNNING
        # not before its back-off: nothing to claim yet
        assert (await ServerlessHost(app).aprocess_available_jobs(limit=1)).processed == 0
        clock.advance(5)
        assert (await ServerlessHost(app).aprocess_available_jobs(limit=1)).processed == 1
        assert (await app.aresult("j1", timeout=5)).value == "a"
    finally:
        for lock in held:
            if not lock.conn.closed:
                lock.release()
        await app.aclose()


async def test_a_failed_lease_renewal_does_not_stop_a_healthy_run(
    postgres: PostgresServer, schema: str
) -> None:
    app = App(_url(postgres, schema, 0.1), job_visibility=1.2)  # renewals every 0.4 s
    ran: list[str] = []
    release = threading.Event()

    @app.workflow(name="steady")
    async def steady(wf: Workflow) -> str:
        def slow() -> str:
            ran.append("slow")
            release.wait(10)
            return "slow"

        return await wf.step("slow", slow)

    try:
        await app.asubmit(steady, workflow_id="s1")
        host = ServerlessHost(app)
        work = asyncio.ensure_future(host.aprocess_available_jobs(limit=1))
        while not ran:
            await asyncio.sleep(0.01)
        jobs = await app.store.list_jobs(workflow_id="s1")
        lock = RowLock(postgres, schema, "SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", jobs[0].id)
        await asyncio.sleep(0.7)  # at least one renewal times out, well within the lease
        lock.release()
        await asyncio.sleep(0.5)
        release.set()
        report = await work
        assert report.succeeded == 1
        result = await app.aresult("s1", timeout=5)
        assert result.value == "slow" and ran == ["slow"]  # never interrupted, never rerun
    finally:
        release.set()
        await app.aclose()


async def test_a_lost_notification_connection_logs_one_line(
    postgres: PostgresServer, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    app = App(postgres.url_with_schema(schema))
    try:
        await app.alist_runs()
        waiter = asyncio.ensure_future(app.store.wait_for_change("jobs", 5.0))
        await asyncio.sleep(0.2)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' AND datname = current_database()"
            )
        with caplog.at_level(logging.WARNING, logger="tether.store"):
            assert await waiter is True  # woken to re-read, not left sleeping
            await asyncio.sleep(0.1)
        lost = [r for r in caplog.records if "notification connection lost" in r.getMessage()]
        assert len(lost) == 1 and lost[0].exc_info is None
        # listening again: its first wait says to look (what was announced meanwhile
        # went unheard), and then it waits
        assert await app.store.wait_for_change("jobs", 0.2) is True
        assert await app.store.wait_for_change("jobs", 0.2) is False
    finally:
        await app.aclose()


async def test_a_step_completion_that_meets_a_blip_is_retried_not_lost(
    postgres: PostgresServer, schema: str
) -> None:
    """The effect is done and the result in hand: the completion write is retried until
    the database answers again, so the step does not run a second time."""
    app = App(_url(postgres, schema, 0.2), clock=FakeClock())
    calls: list[str] = []
    held: list[RowLock] = []

    def work() -> str:
        calls.append("work")
        held.append(RowLock(postgres, schema, STEP_ROW, "r2", "work"))
        threading.Timer(0.6, held[0].release).start()  # the blip passes in 0.6 s
        return "done"

    @app.workflow(name="once")
    async def once(wf: Workflow) -> str:
        return await wf.step("work", work)

    try:
        assert (await app.arun(once, workflow_id="r2")).value == "done"
        assert calls == ["work"]
    finally:
        await app.aclose()


class _Locker:
    """Another connection of the test's, in one transaction that the cancel
    detects a deadlock against (its own deadlock_timeout is long)."""

    def __init__(self, postgres: PostgresServer, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(postgres.url)
        self.conn.execute(f'SET search_path TO "{schema}"')
        self.conn.execute("SET LOCAL deadlock_timeout = '60s'")

    def run(self, sql: str) -> None:
        self.conn.execute(sql)

    def end(self) -> None:
        self.conn.rollback()
        self.conn.close()


async def test_a_transaction_rolled_back_for_a_deadlock_is_run_again(
    postgres: PostgresServer, schema: str
) -> None:
    """A cancel locks the run, then its pending waits; a writer for one of them (an
    event arriving) holds the wait, then wants the run: the server rolls the cancel
    back. It runs again, and again when a second writer does the same, instead of
    failing a verb that merely met others."""
    import psycopg

    from tether.store import Fence, NewEvent, NewRun, NewWait, WaitKind, open_store

    store = open_store(postgres.url_with_schema(schema))
    await store.open()
    monitor = psycopg.connect(postgres.url, autocommit=True)
    try:
        at = FakeClock().now()
        await store.create_run(NewRun("r1", "wf", state="null"), at)
        gen = (await store.claim_run("r1", "o", at, NewEvent("workflow.running"))).generation
        await store.register_wait(Fence("r1", gen), NewWait("evt", WaitKind.EVENT, "go"), at)
        wait_row = "SELECT 1 FROM waitpoints WHERE run_id = 'r1' FOR UPDATE"
        want_run = "UPDATE runs SET updated_at = updated_at WHERE id = 'r1'"

        def waiting(n: int) -> None:  # until n transactions wait for a lock
            query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            while monitor.execute(query).fetchone() != (n,):
                time.sleep(0.01)

        first, second = _Locker(postgres, schema), _Locker(postgres, schema)
        first.run(wait_row)
        cancel = asyncio.ensure_future(store.cancel_run("r1", reason=None, compensate=False, at=at))

        def second_writer() -> None:
            second.run(wait_row)  # queued behind the first writer
            waiting(1)  # the cancel, run again, waits for the wait's row
            second.run(want_run)  # the second deadlock
            second.end()

        def first_writer() -> None:
            waiting(1)  # the cancel holds the run and waits for the wait's row
            queued = threading.Thread(target=second_writer)
            queued.start()
            waiting(2)
            first.run(want_run)  # the first deadlock: the cancel is rolled back
            waiting(2)  # its next try waits for the run, the second writer for the wait
            first.end()
            queued.join()

        await asyncio.gather(cancel, asyncio.to_thread(first_writer))
        assert cancel.result() == ["r1"]
        run = await store.get_run("r1")
        assert run is not None and run.status is RunStatus.CANCELLED
    finally:
        monitor.close()
        await store.close()
