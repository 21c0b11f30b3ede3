"""PostgreSQL holds a step's completion unread and folds it into the run's next start
marker: one statement, one round trip and one WAL flush per step instead of two.
What a completion promises still holds: it is committed before the next step runs,
when the event loop turns, when the store closes; one its run refuses is dropped with
the start it rode on, and the run learns of it before that next step runs."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

import tether
from tether.store import (
    JobStatus,
    NewEvent,
    NewJob,
    NewRun,
    RunStatus,
    StepStatus,
    Store,
    open_store,
)
from tether.store._sql import queries
from tether.testing import eventually, eventually_sync
from tether.worker import ServerlessHost

from .._postgres import PostgresServer
from .test_deferred import AT, _run, _steps

T = TypeVar("T")


@pytest.fixture
def url(postgres: PostgresServer) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres.url_with_schema(schema)
    postgres.drop_schema(schema)


def _status(postgres: PostgresServer, url: str, run: str, key: str) -> str | None:
    """The step's status as another connection (another process) sees it."""
    import psycopg

    schema = url.rsplit("schema=", 1)[1].split("&")[0]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        row = conn.execute(
            "SELECT status FROM steps WHERE run_id = %s AND step_key = %s", (run, key)
        ).fetchone()
    return None if row is None else str(row[0])


async def _lock_waits(watch: psycopg.AsyncConnection[Any]) -> bool:
    """Whether a statement of the test database waits for a lock."""
    cur = await watch.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    row = await cur.fetchone()
    return row is not None and row[0] > 0


def _counting(url: str) -> tuple[Store, list[int]]:
    """The PostgreSQL store of `url`, counting its round trips (each verb's `_with`)."""
    trips: list[asyncio.Task[Any] | None] = []  # the task of each
    base: Any = type(open_store(url))

    class Counting(base):  # type: ignore[misc]
        async def _with(self, fn: Callable[[Any], Awaitable[T]], *, tx: bool = False) -> T:
            trips.append(asyncio.current_task())
            result: T = await super()._with(fn, tx=tx)
            return result

    return Counting(url), trips


async def test_a_sequential_run_makes_one_round_trip_per_step(url: str) -> None:
    store, trips = _counting(url)
    async with tether.App(store=store) as app:
        steps = _steps(app)
        counts = []
        for n in (1, 41):
            trips.clear()
            assert (await app.arun(steps, n)).value == n
            counts.append(len(trips))
    # each step more is one start marker carrying the completion before it: not two
    assert counts[1] - counts[0] <= 40, counts


async def test_a_finished_step_is_committed_before_the_next_step_runs(
    postgres: PostgresServer, url: str
) -> None:
    async with tether.App(url) as app:

        @app.workflow
        async def two(wf: tether.Workflow) -> str | None:
            await wf.step("a", lambda: 1)
            return await wf.step("b", lambda: _status(postgres, url, wf.workflow_id, "a"))

        assert (await app.arun(two, workflow_id="r")).value == "completed"


async def test_a_completion_is_written_as_soon_as_the_loop_turns(
    postgres: PostgresServer, url: str
) -> None:
    async with tether.App(url) as app:

        def written(run: str) -> str | None:
            # the thread starts before the loop turns, so it may look before the flush
            # lands: it looks again while the workflow waits for it, and nothing but the
            # flush of its own can write the completion meanwhile
            def done() -> str | None:
                status = _status(postgres, url, run, "a")
                return status if status == "completed" else None

            return eventually_sync(done, timeout=5)

        @app.workflow
        async def yields(wf: tether.Workflow) -> list[str | None]:
            await wf.step("a", lambda: 1)
            return [await asyncio.to_thread(written, wf.workflow_id)]

        # the thread hop turned the loop: the completion was written with no step after it
        assert (await app.arun(yields, workflow_id="r")).value == ["completed"]


async def test_a_completion_refused_after_it_was_held_is_dropped_with_the_next_start(
    url: str,
) -> None:
    store = open_store(url)

    async def steal() -> None:
        thief = open_store(url)
        await thief.claim_run("a", "thief", AT, NewEvent("workflow.running"), force=True)
        await thief.close()

    try:
        old = await _run(store, "a")
        await store.start_step(old, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        await store.complete_step(old, "x", result="1", at=AT, event=NewEvent("c"))  # held
        # another process takes the run over before this one writes again (a thread
        # with a loop of its own, joined without a turn of this loop)
        thief = threading.Thread(target=asyncio.run, args=(steal(),))
        thief.start()
        thief.join()
        with pytest.raises(tether.StaleOwnerError):  # the next step does not start
            await store.start_step(old, "y", idempotency_key=None, at=AT, event=NewEvent("s"))
        steps = {s.key: s.status for s in await store.load_steps("a")}
        assert steps == {"x": StepStatus.RUNNING}  # the refused completion was dropped
    finally:
        await store.close()


async def test_a_held_completion_and_the_next_start_number_their_events_in_order(
    url: str,
) -> None:
    store = open_store(url)
    try:
        f = await _run(store, "a")
        await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s", "x"))
        await store.complete_step(f, "x", result="1", at=AT, event=NewEvent("c", "x"))
        row = await store.start_step(f, "y", idempotency_key=None, at=AT, event=NewEvent("s", "y"))
        assert row.attempts == 1 and row.status is StepStatus.RUNNING
        events = [(e.seq, e.type, e.message) for e in await store.list_events("a")]
        assert events[-3:] == [(2, "s", "x"), (3, "c", "x"), (4, "s", "y")]
        steps = {s.key: (s.status, s.result) for s in await store.load_steps("a")}
        assert steps == {"x": (StepStatus.COMPLETED, "1"), "y": (StepStatus.RUNNING, None)}
    finally:
        await store.close()


async def test_a_completion_held_before_a_retry_of_the_same_step_is_written_first(
    url: str,
) -> None:
    store = open_store(url)
    try:
        f = await _run(store, "a")
        await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        await store.complete_step(f, "x", result="1", at=AT, event=NewEvent("c"))
        # the same key again (not folded: one statement may change a row once)
        row = await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        assert row.attempts == 2 and row.result == "1"
    finally:
        await store.close()


async def test_a_run_waits_for_its_completion_that_another_write_is_writing(
    postgres: PostgresServer, url: str
) -> None:
    """Runs of one process hold completions; another run's write takes them all and is
    held up writing one of them. A run's end must wait for that write, which carries
    the run's last completion: ended before it, the run was left completed with its
    last step `running` when the process was SIGKILLed meanwhile (chaos on PostgreSQL,
    workers running several jobs at once)."""
    store = open_store(url)
    schema = url.rsplit("schema=", 1)[1].split("&")[0]
    try:
        a, b, c = await _run(store, "a"), await _run(store, "b"), await _run(store, "c")
        for f in (a, b, c):
            await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        async with (
            await psycopg.AsyncConnection.connect(postgres.url) as lock_b,
            await psycopg.AsyncConnection.connect(postgres.url) as lock_c,
            await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as watch,
        ):
            for conn, wid in ((lock_b, "b"), (lock_c, "c")):
                await conn.execute(
                    f'SELECT 1 FROM "{schema}".runs WHERE id = %s FOR UPDATE', (wid,)
                )
            # the store's own flush of b's completion waits for b's lock
            await store.complete_step(b, "x", result="1", at=AT, event=NewEvent("c"))
            await eventually(lambda: _lock_waits(watch), timeout=10)
            # c's and a's completions are held behind it; c's next read waits for that
            # flush, then writes them (c's first: it waits for c's lock)
            await store.complete_step(c, "x", result="3", at=AT, event=NewEvent("c"))
            await store.complete_step(a, "x", result="2", at=AT, event=NewEvent("c"))
            reader = asyncio.ensure_future(store.get_run("c"))
            end = NewEvent("workflow.completed")
            ending = asyncio.ensure_future(
                store.finish_run(a, RunStatus.COMPLETED, output="2", error=None, at=AT, event=end)
            )
            await asyncio.sleep(0)  # both wait for the flush of b's
            await lock_b.rollback()

            async def b_written() -> bool:
                return await asyncio.to_thread(_status, postgres, url, "b", "x") == "completed"

            await eventually(b_written, timeout=10)
            await eventually(lambda: _lock_waits(watch), timeout=10)  # now c's completion waits
            # give a wrong end the time to commit while a's completion is unwritten
            ended, _ = await asyncio.wait({ending}, timeout=1.0)
            seen = await asyncio.to_thread(_status, postgres, url, "a", "x")
            await lock_c.rollback()
            await asyncio.gather(reader, ending)
        assert not ended, f"run a ended while its last completion was unwritten (x {seen})"
        assert [e.type for e in await store.list_events("a")][-2:] == ["c", "workflow.completed"]
        assert {s.key: s.status for s in await store.load_steps("a")} == {"x": StepStatus.COMPLETED}
    finally:
        await store.close()


async def test_a_completion_held_while_the_stores_own_flush_wrote_is_written_after_it(
    postgres: PostgresServer, url: str
) -> None:
    """The store's own flush of what it held takes a while (a lock); a completion held
    meanwhile is written when that flush ends, with no other write to carry it."""
    store = open_store(url)
    schema = url.rsplit("schema=", 1)[1].split("&")[0]
    try:
        a, b = await _run(store, "a"), await _run(store, "b")
        for f in (a, b):
            await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        async with (
            await psycopg.AsyncConnection.connect(postgres.url) as lock_b,
            await psycopg.AsyncConnection.connect(postgres.url, autocommit=True) as watch,
        ):
            await lock_b.execute(f'SELECT 1 FROM "{schema}".runs WHERE id = %s FOR UPDATE', ("b",))
            await store.complete_step(b, "x", result="1", at=AT, event=NewEvent("c"))
            await eventually(lambda: _lock_waits(watch), timeout=10)  # the flush of b's
            await store.complete_step(a, "x", result="2", at=AT, event=NewEvent("c"))
            await lock_b.rollback()

            async def written() -> bool:
                return await asyncio.to_thread(_status, postgres, url, "a", "x") == "completed"

            await eventually(written, timeout=10)
    finally:
        await store.close()


async def test_closing_the_store_writes_what_it_holds(postgres: PostgresServer, url: str) -> None:
    store = open_store(url)
    a = await _run(store, "a")
    await store.start_step(a, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
    await store.complete_step(a, "x", result="1", at=AT, event=NewEvent("c"))
    await store.close()  # in the same turn of the loop: nothing else wrote it
    assert _status(postgres, url, "a", "x") == "completed"


async def test_the_last_completion_rides_on_the_runs_end_and_a_parent_still_wakes(
    url: str,
) -> None:
    store, trips = _counting(url)
    async with tether.App(store=store) as app:

        @app.workflow
        async def child(wf: tether.Workflow) -> int:
            return await wf.step("only", lambda: 7)

        @app.workflow
        async def parent(wf: tether.Workflow) -> int:
            # the child's end resolves this wait: its end takes the shared transaction
            return int(await wf.child(child, workflow_id="kid")) + 1

        trips.clear()
        assert (await app.arun(child, workflow_id="alone")).value == 7
        events = [e.type for e in await store.list_events("alone")]
        assert events[-2:] == ["step.completed", "workflow.completed"]
        assert (await app.arun(parent, workflow_id="p")).value == 8
        kid = await app.aget_record("kid")
        assert kid.steps["only"].status is StepStatus.COMPLETED
        events = [e.type for e in await store.list_events("kid")]
        assert events[-2:] == ["step.completed", "workflow.completed"]


async def test_a_finished_runs_result_is_two_round_trips(url: str) -> None:
    """One to see that the run ended, one for its record (steps, events, heartbeats,
    leases, AI usage: pipelined), not one per part."""
    store, trips = _counting(url)
    async with tether.App(store=store) as app:

        @app.workflow
        async def three(wf: tether.Workflow) -> int:
            for i in range(3):
                await wf.step(f"s{i}", lambda i=i: i)
            return 3

        wid = (await app.arun(three)).workflow_id
        trips.clear()
        result = await app.aresult(wid)
        mine = [t for t in trips if t is asyncio.current_task()]  # not the App's keep-alive
    assert result.value == 3 and list(result.record.steps) == ["s0", "s1", "s2"]
    assert len(mine) == 2, trips


async def test_a_result_woken_by_the_runs_end_reads_it_once(url: str) -> None:
    """Woken by the run's notification, the waiter reads the run whole at once: not
    once to see that it ended and again for its record."""
    store, trips = _counting(url)
    gate = asyncio.Event()
    async with tether.App(store=store) as app:

        @app.workflow
        async def gated(wf: tether.Workflow) -> int:
            async def opened() -> int:
                await gate.wait()
                return 1

            return await wf.step("g", opened)

        wid = await app.astart(gated)
        trips.clear()
        waiter = asyncio.ensure_future(app.aresult(wid, timeout=30))
        await eventually(lambda: waiter in trips)  # it read the run, still running: it waits
        await asyncio.sleep(0.05)
        gate.set()
        assert (await waiter).value == 1
    assert [t for t in trips if t is waiter] == [waiter, waiter], trips


async def test_a_worker_runs_job_closes_with_the_runs_last_step(url: str) -> None:
    """The last step's held completion, the run's end and its job's close are one
    statement: the worker's close of the job then costs no round trip."""
    store, trips = _counting(url)
    async with tether.App(store=store) as app:
        steps = _steps(app)
        wid = await app.asubmit(steps, 3)
        host = ServerlessHost(app)
        (job,) = await host.aclaim()
        closing: list[int] = []
        finish_job = store.finish_job

        async def counted_finish_job(*args: Any, **kw: Any) -> None:
            before = len(trips)
            await finish_job(*args, **kw)
            closing.append(len(trips) - before)

        store.finish_job = counted_finish_job  # type: ignore[method-assign]
        assert (await host.ahandle_job(job)).status == "completed"
        assert closing == [0]
        assert [j.status for j in await store.list_jobs(workflow_id=wid)] == [JobStatus.DONE]


async def test_a_claimed_jobs_run_is_claimed_with_it_and_not_read_or_claimed_again(
    url: str,
) -> None:
    """PostgreSQL's claim claims each job's run for the worker's host in the same
    statement; the worker drives the run from that row, with no read or claim first."""
    store, trips = _counting(url)
    async with tether.App(store=store) as app:
        steps = _steps(app)
        wid = await app.asubmit(steps, 2)
        runs = app.kernel.host.run_claim()
        trips.clear()
        (job,) = await app.store.claim_jobs(
            "w", ["default"], limit=1, visibility=30, limits={}, now=None, at=AT, runs=runs
        )
        assert len(trips) == 1  # the job, its run and the run's event: one statement
        assert job.run is not None and job.run == await app.store.get_run(wid)
        assert (job.run.status, job.run.owner, job.run.generation) == (
            RunStatus.RUNNING,
            runs.owner,
            1,
        )
        reads: list[str] = []
        for verb in ("get_run", "claim_run"):
            real = getattr(app.store, verb)

            async def counted(*args: Any, _real: Any = real, _verb: str = verb, **kw: Any) -> Any:
                reads.append(_verb)
                return await _real(*args, **kw)

            setattr(app.store, verb, counted)
        assert (await app.kernel.execute_job(job, "w")).status == "completed"
        assert reads == []
        assert (await app.aresult(wid)).value == 2
        types = [e.type for e in await app.store.list_events(wid)]
        assert types.count("workflow.running") == 1


async def test_a_claim_skips_a_run_another_transaction_holds_and_never_waits(
    postgres: PostgresServer, url: str
) -> None:
    """A cancel locks the run, then its queued job; a claim that waited for the run while
    holding the job would deadlock with it. The claim takes the job without its run (on
    the one-statement path and the keyed one), and the drive claims the run later."""
    import psycopg

    async with tether.App(url) as app:
        steps = _steps(app)
        free = await app.asubmit(steps, 1)
        keyed = await app.asubmit(steps, 1, concurrency_key="k")
        schema = url.rsplit("schema=", 1)[1].split("&")[0]
        with psycopg.connect(postgres.url) as holder:  # a transaction holding both runs
            holder.execute(f'SET search_path TO "{schema}"')
            holder.execute("SELECT id FROM runs WHERE id = ANY(%s) FOR UPDATE", ([free, keyed],))
            jobs = await asyncio.wait_for(
                app.store.claim_jobs(
                    "w", ["default"], limit=2, visibility=30, limits={}, now=None, at=AT,
                    runs=app.kernel.host.run_claim(),
                ),
                10,
            )  # fmt: skip
            holder.rollback()
        assert sorted(j.workflow_id for j in jobs) == sorted([free, keyed])
        assert [j.run for j in jobs] == [None, None]
        for job in jobs:  # read and claimed by the drive instead
            assert (await app.kernel.execute_job(job, "w")).status == "completed"


@pytest.mark.parametrize(
    "query,commit",
    [("claim_free", "off"), ("start_step", "off"), ("complete_and_start_step", "on")],
)
async def test_what_only_a_crash_of_the_process_must_survive_skips_the_wal_flush(
    postgres: PostgresServer, url: str, query: str, commit: str
) -> None:
    """A job's claim (lost in a server crash, it only delays the run) and a step's start
    marker (a lost one costs an attempt's count) commit without waiting for the WAL
    flush; a completion waits. The run's next durable commit flushes the ones before
    it too, as the WAL is written in order. Each statement asks for its own commit
    mode, which shows inside a transaction it runs in."""
    store = open_store(url)
    try:
        await store.submit_run(NewRun("queued", "w"), NewJob(), AT)
        fence = await _run(store, "owned")
        await store.start_step(fence, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
    finally:
        await store.close()
    params: dict[str, Any] = {
        "claim_free": {"qs": ["default"], "n": 1, "worker": "w", "vis": 30.0, "now": None,
                       "at": AT, "owner": None, "lease": 0.0, "etype": "", "names": [],
                       "versions": [], "force": False, "dead": None},
        "start_step": {"wid": "owned", "gen": fence.generation, "comp": False, "key": "y",
                       "ikey": None, "at": AT, "etype": "s", "emsg": None, "edetail": None},
    }["start_step" if query != "claim_free" else query]  # fmt: skip
    if query == "complete_and_start_step":
        params |= {"ckey": "x", "result": "1", "cat": AT, "ctype": "c", "cmsg": None,
                   "cdetail": None}  # fmt: skip
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    with psycopg.connect(postgres.url, options=f"-c search_path={schema}") as conn:
        row = conn.execute(queries("postgresql")[query], params).fetchone()
        assert row is not None and row[0] is not None  # it wrote (claimed, started)
        assert conn.execute("SHOW synchronous_commit").fetchone() == (commit,)
        conn.rollback()
