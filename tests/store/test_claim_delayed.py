"""A claim after an idle one does not read the jobs delayed to later (`jobs_due`).

The claims read a queue in priority order and skipped each job whose `run_after`
had not come (a delayed submit, a retry's back-off); with no job due they read
them all, at every idle worker's every poll: 50,000 delayed jobs made each claim
48 times an empty queue's on PostgreSQL and 232 times on SQLite (`bench/claims.py`).
After a claim that took nothing, the next now looks up each queue's earliest due
time first (`queues_due`, the first entry of the index `jobs_due`). The checks read
what the database did, not how long it took: on SQLite the virtual machine's
instructions, on PostgreSQL the plan's executed nodes (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest

from tether import App, FakeClock, Workflow
from tether.store._sql import queries

DELAYED = 2_000
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _flow_app(url: str, clock: FakeClock) -> App:
    app = App(url, clock=clock)

    @app.workflow(name="noop")
    async def noop(wf: Workflow) -> int:
        return 1

    return app


async def _delay_many(url: str, clock: FakeClock) -> None:
    """One job submitted a day ahead, then `DELAYED` copies of it (by SQL: fast)."""
    app = _flow_app(url, clock)
    async with app:
        await app.asubmit(app.get_workflow("noop").fn, workflow_id="d0",
                          run_after=T0 + timedelta(days=1))  # fmt: skip
    if url.startswith("sqlite"):
        conn = sqlite3.connect(urlsplit(url).path)
        cols = [
            r[1] for r in conn.execute("PRAGMA table_info(jobs)") if r[1] not in ("id", "run_id")
        ]
        conn.execute(
            f"INSERT INTO jobs (run_id, {', '.join(cols)}) SELECT 'd' || n, {', '.join(cols)} "
            f"FROM jobs, (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {DELAYED}) SELECT n FROM s) WHERE run_id = 'd0'"
        )
        conn.commit()
        conn.close()
        return
    base, schema = _pg(url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        run_cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'runs' AND column_name NOT IN ('id', 'idempotency_key')",
            (schema,))]  # fmt: skip
        job_cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'jobs' AND column_name NOT IN ('id', 'run_id')", (schema,))]  # fmt: skip
        for table, cols, key in (("runs", run_cols, "id"), ("jobs", job_cols, "run_id")):
            conn.execute(
                f"INSERT INTO {table} ({key}, {', '.join(cols)}) SELECT 'd' || n, "
                f"{', '.join(cols)} FROM {table}, generate_series(1, {DELAYED}) n "
                f"WHERE {key} = 'd0'"
            )
        conn.execute("ANALYZE jobs")


def _pg(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((*parts[:3], "", "")), parse_qs(parts.query)["schema"][0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def delayed(database_url: str, clock: FakeClock) -> Iterator[str]:
    import asyncio

    asyncio.run(_delay_many(database_url, clock))
    yield database_url


def _pg_plan(url: str) -> dict[str, Any]:
    base, schema = _pg(url)
    with psycopg.connect(base) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries("postgresql")["queues_due"],
            {"qs": ["default"], "now": T0},
        ).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for sub in plan.get("Plans", []):
        yield from _nodes(sub)


async def _claim(app: App, clock: FakeClock) -> list[str]:
    got = await app.store.claim_jobs(
        "w", ["default"], limit=4, visibility=30, limits={}, now=clock.store_time(),
        at=clock.now(), workflows=[("noop", None)],
    )  # fmt: skip
    return [j.workflow_id for j in got]


async def test_a_claim_after_an_idle_one_reads_none_of_the_delayed_jobs(
    delayed: str, backend: str, clock: FakeClock
) -> None:
    app = _flow_app(delayed, clock)
    async with app:
        assert await _claim(app, clock) == []  # reads the queue: none due
        if backend == "postgresql":
            read = [n for n in _nodes(_pg_plan(delayed)) if n.get("Relation Name") == "jobs"]
            assert [n.get("Index Name") for n in read] == ["jobs_due"], read
            assert read[0]["Actual Rows"] <= 1
            assert await _claim(app, clock) == []
            return
        conn = app.store._conn  # type: ignore[attr-defined]  # the store's own connection
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(count, 1)
        try:
            assert await _claim(app, clock) == []
        finally:
            conn.set_progress_handler(None, 1)
        assert steps < DELAYED // 2, f"the idle claim ran {steps} instructions, {DELAYED} delayed"


async def test_after_an_idle_claim_a_new_job_is_claimed_at_once(
    delayed: str, clock: FakeClock
) -> None:
    app = _flow_app(delayed, clock)
    async with app:
        assert await _claim(app, clock) == []
        assert await _claim(app, clock) == []
        await app.asubmit(app.get_workflow("noop").fn, workflow_id="new")
        assert await _claim(app, clock) == ["new"]


async def test_a_due_job_behind_many_delayed_ones_is_claimed_and_a_delayed_one_when_due(
    delayed: str, clock: FakeClock
) -> None:
    app = _flow_app(delayed, clock)
    async with app:
        await app.asubmit(app.get_workflow("noop").fn, workflow_id="now")
        assert await _claim(app, clock) == ["now"]
        assert await _claim(app, clock) == []  # idle: the next claim looks first
        clock.advance(timedelta(days=1, seconds=1))
        assert len(await _claim(app, clock)) == 4  # the delayed ones, now due
