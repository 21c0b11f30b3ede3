"""A claim does not read the jobs delayed to later (migration 0021, `jobs_due`).

The claims read a queue in priority order and skipped each job whose `run_after`
had not come (a delayed submit, a retry's back-off); with no job due they read
them all, at every idle worker's every poll: 50,000 delayed jobs made each claim
48 times an empty queue's on PostgreSQL and 232 times on SQLite (`bench/claims.py`). A claim now first looks up the earliest
due time of the queue (the first entry of `jobs_due`) and reads no further when it
has not come. The checks below read what the database did, not how long it took:
on SQLite the virtual machine's instructions, on PostgreSQL the plan's executed
nodes (EXPLAIN ANALYZE, rolled back).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest

from tether import App, FakeClock, Workflow
from tether.store._sql import queries
from tether.store._verbs_queue import _run_claim, _workflow_params

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


def _params(dialect: str, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"worker": "w", "vis": 30.0, "now": T0, "at": T0, "q": "default",
                         "qs": ["default"], "n": 4, "room": 16,
                         **_run_claim(None), **_workflow_params([("noop", None)])}  # fmt: skip
    if dialect == "sqlite":
        p = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in p.items()}
        p["now"] = p["at"] = T0.timestamp()
    return p | extra


def _sqlite_steps(path: str, query: str) -> int:
    """The virtual machine instructions SQLite ran for `query` (a claim's read)."""
    conn = sqlite3.connect(path)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        assert conn.execute(queries("sqlite")[query], _params("sqlite")).fetchall() == []
    finally:
        conn.close()
    return steps


def _pg_plan(url: str, query: str) -> dict[str, Any]:
    base, schema = _pg(url)
    with psycopg.connect(base) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("SET plan_cache_mode = force_generic_plan")  # as the store runs claims
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries("postgresql")[query], _params("postgresql")
        ).fetchone()
        conn.rollback()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for sub in plan.get("Plans", []):
        yield from _nodes(sub)


def _jobs_read(plan: dict[str, Any]) -> list[str]:
    """The executed scans of `jobs` other than `jobs_due`'s and the primary key's."""
    return [
        f"{n['Node Type']} {n.get('Index Name', '')}".strip()
        for n in _nodes(plan)
        if n.get("Relation Name") == "jobs"
        and "Scan" in n["Node Type"]
        and n.get("Index Name") not in ("jobs_due", "jobs_pkey")
        and n.get("Actual Loops", 0) > 0
    ]


def test_a_claim_with_no_job_due_reads_none_of_the_delayed_ones(delayed: str, backend: str) -> None:
    if backend == "sqlite":
        for query in ("ready_jobs", "ready_jobs_of"):
            steps = _sqlite_steps(urlsplit(delayed).path, query)
            assert steps < DELAYED // 2, f"{query} ran {steps} instructions for {DELAYED} jobs"
        return
    for query in ("claim_free", "claim_free_of", "ready_jobs", "ready_jobs_of"):
        read = _jobs_read(_pg_plan(delayed, query))
        assert read == [], f"{query} read the delayed jobs: {read}"


async def test_a_due_job_behind_many_delayed_ones_is_claimed_and_a_delayed_one_when_due(
    delayed: str, clock: FakeClock
) -> None:
    app = _flow_app(delayed, clock)
    async with app:
        await app.asubmit(app.get_workflow("noop").fn, workflow_id="now")
        got = await app.store.claim_jobs(
            "w", ["default"], limit=4, visibility=30, limits={}, now=clock.store_time(),
            at=clock.now(), workflows=[("noop", None)],
        )  # fmt: skip
        assert [j.workflow_id for j in got] == ["now"]
        clock.advance(timedelta(days=1, seconds=1))
        later = await app.store.claim_jobs(
            "w", ["default"], limit=4, visibility=30, limits={}, now=clock.store_time(),
            at=clock.now(), workflows=[("noop", None)],
        )  # fmt: skip
        assert len(later) == 4  # the delayed ones, now due
