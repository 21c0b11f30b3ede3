"""What jobs waiting for their `run_after` cost a worker's claim.

Run: ``.venv/bin/python bench/claims.py [--url postgresql://...] [--delayed 50000]``
(default: a SQLite file). For each case the queue holds one job, then as many
copies as asked (made by SQL, fast), and a worker's claim of up to 4 jobs is
timed 30 times (median), beside the same claim of an empty queue measured in the
same run:

- delayed: every job due tomorrow, none due now (an idle worker's poll);
- due: every job due, a backlog (each claim takes 4).

Before migration 0021 a claim read every delayed job at every poll: 50,000
made it 48x the empty queue's on PostgreSQL (15.2 ms against 0.32) and 232x on
SQLite (5.6 ms against 0.02) on 2026-12-06. Now a claim that follows one that
took nothing looks up each queue's earliest due time first: 0.7x and 1.1x (the
empty queue's claims are such looks too).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import tether

WORKFLOWS = [("noop", None)]


def _app(url: str) -> tether.App:
    app = tether.App(url)

    @app.workflow(name="noop")
    async def noop(wf: tether.Workflow) -> int:
        return 1

    return app


def _copy_jobs(url: str, n: int, shift_s: int) -> None:
    """`n` copies of run 'j0' and its job, due `shift_s` seconds from its own due time."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(urlsplit(url).path)
        cols = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
        cols = [c for c in cols if c not in ("id", "run_id", "run_after")]
        series = f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) SELECT n FROM s)"
        conn.execute(f"INSERT INTO jobs (run_id, run_after, {', '.join(cols)}) SELECT 'j' || n, "
                     f"run_after + {shift_s}, {', '.join(cols)} FROM jobs, {series} WHERE run_id = 'j0'")  # fmt: skip
        conn.execute("ANALYZE")
        conn.commit()
        conn.close()
        return
    import psycopg

    parts = urlsplit(url)
    schema = dict(p.split("=") for p in parts.query.split("&"))["schema"]
    with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        for table, key in (("runs", "id"), ("jobs", "run_id")):
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND column_name NOT IN ('id', 'run_id', 'idempotency_key', "
                "'run_after')", (schema, table))]  # fmt: skip
            after = ", run_after" if table == "jobs" else ""
            shifted = f", run_after + make_interval(secs => {shift_s})" if after else ""
            conn.execute(f"INSERT INTO {table} ({key}{after}, {', '.join(cols)}) SELECT 'j' || n"
                         f"{shifted}, {', '.join(cols)} FROM {table}, generate_series(1, {n}) n "
                         f"WHERE {key} = 'j0'")  # fmt: skip
        conn.execute("ANALYZE jobs")


async def claim_ms(url: str, copies: int, shift_s: int) -> float:
    """The median time of a 4-job claim of a queue holding `copies` + 1 jobs."""
    app = _app(url)
    async with app:
        await app.asubmit(app.get_workflow("noop").fn, workflow_id="j0")
    if copies:
        _copy_jobs(url, copies, shift_s)
    app = _app(url)
    async with app:
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            await app.store.claim_jobs("w", ["default"], limit=4, visibility=30, limits={},
                                       now=None, at=datetime.now(UTC), workflows=WORKFLOWS)  # fmt: skip
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _fresh(url: str | None) -> str:
    if url is None:
        return f"sqlite:///{tempfile.mkdtemp()}/claims.db"
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}schema=bench_{uuid.uuid4().hex[:8]}"


def _drop(url: str) -> None:
    if url.startswith("sqlite"):
        return
    import psycopg

    parts = urlsplit(url)
    schema = dict(p.split("=") for p in parts.query.split("&"))["schema"]
    with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description="a claim's cost beside delayed jobs")
    parser.add_argument("--url", help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--delayed", type=int, default=50_000, help="jobs in the queue")
    args = parser.parse_args()
    cases = [("empty queue", 0, 0), ("all delayed a day", args.delayed, 86_400),
             ("all due (backlog)", args.delayed, -86_400)]  # fmt: skip
    base = None
    for label, copies, shift in cases:
        url = _fresh(args.url)
        try:
            ms = asyncio.run(claim_ms(url, copies, shift))
        finally:
            _drop(url)
        base = base or ms
        print(
            f"{label:>20} ({copies:,} jobs): claim p50 {ms:.2f} ms, {ms / base:.1f}x the empty queue's"
        )


if __name__ == "__main__":
    main()
