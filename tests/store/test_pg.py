"""What only PostgreSQL does: URLs and errors, schemas, concurrent migration,
cluster-wide leases, and dropped connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.store import open_store
from tether.testing import eventually, eventually_sync

from .._postgres import PostgresServer


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres.url_with_schema(schema)
    postgres.drop_schema(schema)


def _psql(postgres: PostgresServer, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return list(cur.fetchall()) if cur.description else []


async def test_unreachable_server_names_host_and_database() -> None:
    app = App("postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(tether.StoreUnavailableError) as info:
        await app.alist_runs()
    msg = str(info.value)
    assert "127.0.0.1:1" in msg and "'nowhere'" in msg and "Traceback" not in msg
    await app.aclose()


async def test_missing_database_is_a_clear_error(postgres: PostgresServer) -> None:
    url = postgres.url.rsplit("/", 1)[0] + "/no_such_db_here"
    app = App(url)
    with pytest.raises(tether.StoreUnavailableError, match="no_such_db_here"):
        await app.alist_runs()
    await app.aclose()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("postgresql://127.0.0.1/db?schema=bad-name", "plain identifier"),
        ("postgresql://127.0.0.1/db?pool_size=0", "pool_size"),
        ("postgresql://127.0.0.1/db?pool_size=many", "pool_size"),
        ("postgresql://127.0.0.1/db?colour=red", "unknown PostgreSQL URL option"),
        ("postgres://127.0.0.1/db?durability=maybe", "durability"),
    ],
)
def test_bad_url_options(url: str, match: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=match):
        open_store(url)


async def test_everything_lives_in_its_schema(postgres: PostgresServer, pg: str) -> None:
    other = postgres.url_with_schema(f"t_{uuid.uuid4().hex[:12]}")

    async def flow(wf: Workflow) -> int:
        return 1

    a, b = App(pg), App(other)
    try:
        await a.arun(flow, workflow_id="only-in-a")
        assert await b.alist_runs() == []
        schema = pg.split("schema=")[1]
        tables = {
            r[0]
            for r in _psql(
                postgres,
                f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'",
            )
        }
        assert {
            "runs",
            "steps",
            "events",
            "locks",
            "jobs",
            "waitpoints",
            "schema_version",
        } <= tables
        assert not _psql(
            postgres,
            "SELECT 1 FROM information_schema.tables WHERE "
            "table_schema = 'public' AND table_name = 'runs'",
        )
    finally:
        await a.aclose()
        await b.aclose()
        postgres.drop_schema(other.split("schema=")[1])


async def test_newer_schema_is_refused(postgres: PostgresServer, pg: str) -> None:
    app = App(pg)
    await app.alist_runs()
    await app.aclose()
    schema = pg.split("schema=")[1]
    _psql(postgres, f"INSERT INTO {schema}.schema_version (version, name) VALUES (999, 'future')")
    again = App(pg)
    with pytest.raises(tether.IncompatibleStoreError, match="newer tether"):
        await again.alist_runs()
    await again.aclose()


MIGRATE = textwrap.dedent(
    """
    import asyncio, sys
    from tether.store import open_store
    async def main():
        s = open_store(sys.argv[1]); await s.open(); print(await s.schema_version()); await s.close()
    asyncio.run(main())
    """
)


def test_concurrent_migration_from_several_processes(postgres: PostgresServer, pg: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, pg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1
    schema = pg.split("schema=")[1]
    rows = _psql(
        postgres, f"SELECT version, count(*) FROM {schema}.schema_version GROUP BY version"
    )
    assert all(count == 1 for _, count in rows) and len(rows) >= 3


LEASE = textwrap.dedent(
    """
    import asyncio, sys, time
    import tether
    async def main():
        app = tether.App(sys.argv[1])
        wf = await app.aopen("shared-slot-owner")
        await asyncio.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # start together
        try:
            await wf.touch_lease("slot", holder=sys.argv[2], ttl=60)
            print("won")
        except tether.LeaseConflictError as exc:
            print("lost to", exc.current_holder)
        await app.aclose()
    asyncio.run(main())
    """
)


def test_one_lease_holder_across_processes(pg: str, tmp_path: Path) -> None:
    import time

    start_at = time.time() + 2.0  # all processes try at about the same moment
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                LEASE.replace(
                    "float(sys.argv[3])", f"max(0, {start_at} - __import__('time').time())"
                ),
                pg,
                f"holder-{i}",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(5)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    winners = [o for o in outs if o == "won"]
    assert len(winners) == 1, outs
    holder = next(f"holder-{i}" for i, o in enumerate(outs) if o == "won")
    assert all(o == f"lost to {holder}" for o in outs if o != "won")


async def test_connection_dropped_mid_step_keeps_the_record_consistent(
    postgres: PostgresServer, pg: str
) -> None:
    calls = 0

    def kill_my_connections() -> None:
        # an admin (or a failover) terminates every backend of this database but ours
        _psql(
            postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{postgres.dbname}' AND pid <> pg_backend_pid()",
        )

    async def flow(wf: Workflow) -> int:
        nonlocal calls
        await wf.step("before", lambda: 1)

        def doomed() -> int:
            nonlocal calls
            calls += 1
            kill_my_connections()
            return 42

        value = await wf.step("during", doomed)
        await wf.step("after", lambda: 2)
        return value

    app = App(pg)
    try:
        res = await app.arun(flow, workflow_id="dropped")
        assert res.value == 42 and res.status is RunStatus.COMPLETED
        assert calls == 1
        rec = res.record
        assert {k: s.status.value for k, s in rec.steps.items()} == {
            "before": "completed",
            "during": "completed",
            "after": "completed",
        }
        seqs = [e.seq for e in rec.events]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await app.aclose()


async def test_a_cancellation_that_meets_a_dropped_connection_is_not_retried(pg: str) -> None:
    # a task cancelled while its statement fails on a dropped connection: the store must
    # not take the error for a blip to retry, or the cancellation is lost (a job's lease
    # renewer cancelled that way went on renewing forever)
    import asyncio

    import psycopg

    store = open_store(pg)
    await store.open()
    entered = asyncio.Event()

    async def query(conn: object) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)  # a statement in flight
        except asyncio.CancelledError:  # what psycopg does, implicitly chained
            raise psycopg.OperationalError("server closed the connection")  # noqa: B904

    try:
        task = asyncio.ensure_future(store._with(query))  # type: ignore[attr-defined]
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    finally:
        await store.close()


async def test_a_cancellation_swallowed_by_the_pool_check_stops_the_retry(pg: str) -> None:
    # after a dropped connection the store has the pool check its idle connections; that
    # check takes a cancellation landing in it for a broken connection and swallows it.
    # The verb must not then run again as if nobody had asked the task to stop.
    import asyncio

    import psycopg

    store = open_store(pg)
    await store.open()
    calls = 0

    async def verb(conn: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "ran again"

    pool = store._pool  # type: ignore[attr-defined]
    check = pool.check

    async def cancelled_during_check() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await check()

    pool.check = cancelled_during_check
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.ensure_future(store._with(verb))  # type: ignore[attr-defined]
        assert calls == 1
    finally:
        pool.check = check
        await store.close()


async def test_a_run_notification_before_its_waiter_is_kept(pg: str) -> None:
    """`App.result` reads the run, then waits: an end announced in between still wakes it."""
    from datetime import UTC, datetime

    from tether.store import Fence, NewEvent, NewRun

    store = open_store(pg)
    at = datetime.now(UTC)
    await store.create_run(NewRun("r1", "wf", state="null"), at)
    gen = (await store.claim_run("r1", "owner", at, NewEvent("workflow.running"))).generation
    assert await store.wait_for_change("jobs", 0.01) in (True, False)  # the listener is up
    await store.finish_run(
        Fence("r1", gen),
        RunStatus.COMPLETED,
        output="1",
        error=None,
        at=at,
        event=NewEvent("workflow.completed"),
    )
    await asyncio.sleep(0.2)  # the notification arrives while nobody waits on the run
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await store.wait_for_change("run:r1", 5.0) is True
    assert loop.time() - t0 < 1.0
    assert await store.wait_for_change("run:r1", 0.05) is False  # reported once
    await store.close()


async def test_a_released_run_is_announced(pg: str) -> None:
    """`release_run` (one statement here) tells a waiter on the run, as `finish_run` does."""
    from datetime import UTC, datetime

    from tether.store import Fence, NewEvent, NewRun

    store = open_store(pg)
    at = datetime.now(UTC)
    await store.create_run(NewRun("r1", "wf", state="null"), at)
    gen = (await store.claim_run("r1", "owner", at, NewEvent("workflow.running"))).generation
    assert await store.wait_for_change("jobs", 0.01) in (True, False)  # the listener is up
    waiting = asyncio.ensure_future(store.wait_for_change("run:r1", 5.0))
    await asyncio.sleep(0.05)
    assert await store.release_run(Fence("r1", gen), at=at, event=NewEvent("workflow.released"))
    assert await waiting is True
    await store.close()


def test_a_store_closed_from_another_event_loop_closes_its_own_connections(
    pg: str, postgres: PostgresServer
) -> None:
    import gc
    import warnings

    store = open_store(pg)

    async def use() -> None:
        await store.list_runs()
        await store.wait_for_change("run:nobody", 0.01)  # opens the listening connection

    # a loop left idle, not ended (`asyncio.run` ends its loop, and its end closes the
    # store: tests/test_app_loop_end.py): the store stays open on it
    loop = asyncio.new_event_loop()
    loop.run_until_complete(use())
    mine = (
        f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN {store.config.channel}%'"  # type: ignore[attr-defined]
    )
    assert _psql(postgres, mine)[0][0] == 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(store.close())
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
    eventually_sync(lambda: _psql(postgres, mine)[0][0] == 0)  # the server saw it go
    for task in asyncio.all_tasks(loop):  # the pool's workers, left on the idle loop
        task.cancel()
    loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
    loop.close()


async def test_waits_begun_at_once_share_one_listening_connection(
    pg: str, postgres: PostgresServer
) -> None:
    store = open_store(pg)
    channel = store.config.channel  # type: ignore[attr-defined]
    mine = f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN {channel}%'"
    try:
        await asyncio.gather(*(store.wait_for_change(f"run:r{i}", 0.05) for i in range(5)))
        assert _psql(postgres, mine)[0][0] == 1
    finally:
        await store.close()
    eventually_sync(lambda: _psql(postgres, mine)[0][0] == 0)  # none left behind


@pytest.mark.parametrize("ghost", [False, True], ids=["one-statement", "with-event"])
@pytest.mark.parametrize(
    "change",
    ["status = 'cancelled', cancel_requested = 'compensate'", "status = 'pending'"],
    ids=["cancel-to-compensate", "wake"],
)
async def test_a_job_closed_while_its_run_is_moved_sees_the_move(
    pg: str, postgres: PostgresServer, ghost: bool, change: str
) -> None:
    """A worker closes the job of a run it parked while another transaction wakes the
    run, or cancels it with compensation (either queues no job while this one is
    claimed): the close waits for that transaction and puts the job back. Reading the
    run as it was closed the job, and nothing drove the run (a woken one until the
    stuck-run sweep, minutes later; a compensation never)."""
    import psycopg

    from tether.store import NewEvent, NewJob, NewRun

    store = open_store(pg)
    await store.open()
    t0 = tether.FakeClock().now()
    try:
        await store.submit_run(NewRun("r", "wf", state="null"), NewJob("q"), t0)
        (job,) = await store.claim_jobs(
            "w", ["q"], limit=1, visibility=30, limits={}, now=None, at=t0
        )
        await store.claim_run("r", "w", t0, NewEvent("workflow.running"))
        schema = pg.rsplit("schema=", 1)[1]
        async with (
            await psycopg.AsyncConnection.connect(postgres.url) as other,
            await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as watch,
        ):
            # the other transaction, not yet committed
            await other.execute(f"UPDATE {schema}.runs SET {change} WHERE id = 'r'")
            close = asyncio.ensure_future(
                store.finish_job(job.id, "w", error=None, ghost=ghost, at=t0)
            )

            async def blocked_or_done() -> bool:  # the close waits for the cancel (or not)
                cur = await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                row = await cur.fetchone()
                return close.done() or (row is not None and row[0] > 0)

            await eventually(blocked_or_done, timeout=10)
            await other.commit()
            await asyncio.wait_for(close, 10)
        (after,) = await store.list_jobs(workflow_id="r")
        assert after.status.value == "queued"
    finally:
        await store.close()


async def test_the_claims_are_planned_once_not_at_each_poll(pg: str) -> None:
    """A prepared statement the server replans at each execution: the claims, whose
    planning cost ~0.7 ms of a ~0.9 ms claim at every poll of every worker
    (`GENERIC_PLAN`). Both claims, free and keyed, on one connection."""
    from datetime import UTC, datetime

    from tether.store import Store

    store: Any = open_store(pg)
    assert isinstance(store, Store)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    async with tether.App(pg) as other:  # a due job in each queue, of a workflow not claimed:

        @other.workflow(name="other")  # each claim reads the queues (none finds them idle)
        async def elsewhere(wf: tether.Workflow) -> None:
            return None

        for queue in ("default", "capped"):
            await other.asubmit(elsewhere, queue=queue)
    try:
        await store.open()
        capped = {"capped": tether.store.QueueLimit(concurrency=2)}
        for i in range(8):  # psycopg prepares a statement at its fifth execution
            # uncapped queues alone: the one-statement claim; with a capped one: all of
            # them through the ready jobs, so priority orders across the queues
            for queues, limits in ((["default"], {}), (["default", "capped"], capped)):
                await store.claim_jobs(
                    f"w{i}", queues, limit=4, visibility=30.0, now=None, at=at,
                    limits=limits, workflows=[("wf", None)],
                )  # fmt: skip

        async def plans(conn: Any) -> list[tuple[str, int, int]]:
            cur = await conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
            return list(await cur.fetchall())

        claims = [row for row in await store._with(plans) if "SKIP LOCKED" in row[0]]
        assert len(claims) >= 2, claims  # the free claim, and the ready jobs of a capped queue
        for statement, generic, custom in claims:
            assert generic > 0 and custom == 0, (statement[:60], generic, custom)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("postgresql:///app?schema=s", {"dbname": "app"}),
        ("postgres:///app", {"dbname": "app"}),
        ("postgresql://u@db.example:6432/app?sslmode=require",
         {"user": "u", "host": "db.example", "port": "6432", "dbname": "app", "sslmode": "require"}),
    ],
)  # fmt: skip
def test_a_url_keeps_a_form_libpq_reads(url: str, parsed: dict[str, str]) -> None:
    """Without a host (libpq's local socket) the URL lost its "//": "postgresql:/app",
    which libpq cannot read, so `--db postgresql:///app` could never connect."""
    import psycopg

    from tether.store import parse_pg_url

    assert psycopg.conninfo.conninfo_to_dict(parse_pg_url(url).conninfo) == parsed


def test_a_value_over_postgresqls_limits_is_not_blamed_on_the_connection(pg: str) -> None:
    """A 300 MB signal payload (over jsonb's 256 MB) was answered "check that the
    server runs, the database exists and the user may connect"."""
    import psycopg

    store: Any = open_store(pg)
    too_big = psycopg.errors.ProgramLimitExceeded("string too long to represent as jsonb string")
    said = str(store._store_error(too_big))
    assert "too large" in said and "pass a reference" in said
    assert "server runs" not in said
    lost = psycopg.OperationalError("connection to server at 127.0.0.1 failed")
    assert "server runs" in str(store._store_error(lost))  # the advice where it belongs


async def test_times_come_back_in_utc_whatever_the_servers_zone(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session in another zone (the server's default, or PGTZ) gave every time read
    back in that zone's offset, where SQLite gives UTC: the same run told two stories."""
    monkeypatch.setenv("PGTZ", "America/New_York")
    app = App(pg)
    try:

        @app.workflow
        async def parked(wf: Workflow) -> str:
            await wf.step("a", lambda: 1)
            return str(await wf.wait_for_signal("go"))

        await app.arun(parked, workflow_id="tz1")
        run = await app.aget_run("tz1")
        (wait,) = await app.alist_waits("tz1")
        record = await app.aget_record("tz1")
        times = [run.created_at, run.updated_at, wait.created_at, record.events[0].at]
        assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in times)
    finally:
        await app.aclose()
