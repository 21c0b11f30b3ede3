"""Worker throughput and latency, beside the raw claim-and-complete limit.

Run: ``.venv/bin/python bench/workers.py --url postgresql://...`` (or a
sqlite:/// URL). On PostgreSQL the runs go to a fresh schema, dropped at the
end, unless the URL names one (``?schema=``): what earlier invocations left
would otherwise weigh on the figures, the more so on a server whose
autovacuum is off. Prints, in one run:

- the raw rate of a bare queue table: claim one row (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, a write transaction on SQLite), commit, mark it
  done, commit; with the same number of processes as workers;
- runs/s of a 5-step no-op workflow with 1, 2 and 4 worker processes, and
  that as a percentage of the raw rate (a run needs at least 7 commits where
  the raw loop needs 2). Measured as the raw loop is, on a full queue: the
  runs are submitted, then the workers start; the rate is that of the run
  ends the database recorded after the first tenth of them (by then every
  worker has imported and started: one may come up later than another).
  Beside it, end to end: the runs submitted one by one while the workers run
  and each result awaited, from one client process, whose own CPU (a submit
  and a result read per run) then competes with the workers and the server
  for the machine's cores, so with more than one worker it measures mostly
  how fast one client submits;
- submit-to-result latency (p50, p99) of one run at a time on an idle system, beside
  its floor: six durable commits in sequence (`FLOOR_COMMITS`), each as long as a
  raw commit measured in the same run; and on PostgreSQL beside the same round
  made with bare psycopg and no engine (`raw_pipeline_ms`: a submit that
  notifies, a listening process that claims and commits six times and notifies,
  the client woken reading the end), which on an idle machine also pays each
  process's wake-up.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent


# -- the raw limit ------------------------------------------------------------------


def _pg_dsn(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    schema = dict(parse_qsl(parts.query)).get("schema", "tether")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), schema


def _claim_one(conn: Any, table: str, status: str) -> Any:
    """The oldest queued row of `table`, set to `status` in one transaction (None: none)."""
    with conn.transaction():
        row = conn.execute(
            f"SELECT id FROM {table} WHERE status = 'queued' ORDER BY id "
            "FOR UPDATE SKIP LOCKED LIMIT 1"
        ).fetchone()
        if row is not None:
            conn.execute(f"UPDATE {table} SET status = %s WHERE id = %s", (status, row[0]))
        return row


def _raw_worker_pg(url: str, table: str, stop_at: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import psycopg

    dsn, _ = _pg_dsn(url)
    done = 0
    with psycopg.connect(dsn) as conn:
        while time.perf_counter() < stop_at:
            row = _claim_one(conn, table, "claimed")
            if row is None:
                break
            with conn.transaction():
                conn.execute(f"UPDATE {table} SET status = 'done' WHERE id = %s", row)
            done += 1
    out.put(done)


def raw_rate_pg(url: str, procs: int, seconds: float) -> float:
    import psycopg

    dsn, _ = _pg_dsn(url)
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, status text NOT NULL)")
        conn.execute(
            f"INSERT INTO {table} (status) SELECT 'queued' FROM generate_series(1, 200000)"
        )
    try:
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        stop_at = time.perf_counter() + seconds
        workers = [
            mp.Process(target=_raw_worker_pg, args=(url, table, stop_at, out)) for _ in range(procs)
        ]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        total = sum(out.get() for _ in workers)
        for w in workers:
            w.join()
        return total / (time.perf_counter() - t0)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


def raw_rate_sqlite(folder: Path, seconds: float) -> float:
    import sqlite3

    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO q (status) VALUES ('queued')", [()] * 50000)
    conn.execute("COMMIT")
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.execute("BEGIN IMMEDIATE")
        (job,) = conn.execute(
            "SELECT id FROM q WHERE status = 'queued' ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE q SET status = 'claimed' WHERE id = ?", (job,))
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE q SET status = 'done' WHERE id = ?", (job,))
        conn.execute("COMMIT")
        done += 1
    rate = done / (time.perf_counter() - t0)
    conn.close()
    return rate


# -- tether ------------------------------------------------------------------------


def _start_workers(url: str, n: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from flows import app; from tether.worker import Worker;"
        "Worker(app, concurrency=int(sys.argv[2]), poll_interval=0.05,"
        " maintenance_interval=1.0, grace=5).serve()"
    )
    env = {**os.environ, "BENCH_URL": url}
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, str(HERE), str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)


def runs_per_second(url: str, workers: int, runs: int, concurrency: int) -> tuple[float, float]:
    """(runs/s draining a full queue, runs/s end to end while submitting)."""
    os.environ["BENCH_URL"] = url
    sys.path.insert(0, str(HERE))
    from flows import app, five_steps  # type: ignore[import-not-found]

    ids = [app.submit(five_steps) for _ in range(runs)]  # the full queue, before any worker
    procs = _start_workers(url, workers, concurrency)
    try:
        _wait_done(app, ids)
        # read after the clock, so it costs the workers nothing
        ends = sorted(e for e in (app.get_run(wid).finished_at for wid in ids) if e is not None)
        skip = len(ends) // 10  # the workers' start: their imports, one later than another
        drained = (len(ends) - 1 - skip) / (ends[-1] - ends[skip]).total_seconds()

        t0 = time.perf_counter()
        ids = [app.submit(five_steps) for _ in range(runs)]
        for wid in ids:
            app.result(wid, timeout=600)
        return drained, runs / (time.perf_counter() - t0)
    finally:
        _stop(procs)


def _wait_done(app: Any, ids: list[str]) -> None:
    """Until every run has ended, reading as little as possible meanwhile (one small
    read per run, or per 20 ms while the next is not done)."""
    deadline = time.monotonic() + 600
    for wid in ids:
        while not app.get_run(wid).status.terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {wid} did not end within 600 s")
            time.sleep(0.02)


def latency_ms(url: str, samples: int) -> tuple[float, float]:
    os.environ["BENCH_URL"] = url
    sys.path.insert(0, str(HERE))
    from flows import app, five_steps

    procs = _start_workers(url, 1, 1)
    try:
        time.sleep(1.5)
        for _ in range(5):  # warm up
            app.result(app.submit(five_steps), timeout=60)
        out = []
        for _ in range(samples):
            t0 = time.perf_counter()
            app.result(app.submit(five_steps), timeout=60)
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
        out.sort()
        return statistics.median(out), out[min(len(out) - 1, int(len(out) * 0.99))]
    finally:
        _stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description="worker throughput and latency")
    parser.add_argument("--url", required=True, help="postgresql://... or sqlite:///path.db")
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (PostgreSQL)")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument("--samples", type=int, default=100, help="latency samples")
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    args = parser.parse_args()
    is_pg = args.url.startswith(("postgresql://", "postgres://"))
    fresh = is_pg and "schema" not in dict(parse_qsl(urlsplit(args.url).query))
    if fresh:  # runs of earlier invocations would weigh on these (autovacuum may be off)
        sep = "&" if urlsplit(args.url).query else "?"
        args.url = f"{args.url}{sep}schema=bench_{uuid.uuid4().hex[:8]}"
    try:
        _measure(args, is_pg)
    finally:
        if fresh:
            _drop_schema(args.url)


def _drop_schema(url: str) -> None:
    import psycopg

    dsn, schema = _pg_dsn(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _measure(args: argparse.Namespace, is_pg: bool) -> None:
    counts = [int(x) for x in args.workers.split(",")] if is_pg else [1]
    print(f"store: {args.url}")
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=".") as tmp:
        for n in counts:
            raw = (
                raw_rate_pg(args.url, n, args.raw_seconds)
                if is_pg
                else raw_rate_sqlite(Path(tmp), args.raw_seconds)
            )
            rps, end_to_end = runs_per_second(args.url, n, args.runs, args.concurrency)
            print(
                f"{n} worker(s) x {args.concurrency}: {rps:8.1f} runs/s   raw claim+complete "
                f"({n} proc): {raw:8.1f}/s   ratio {rps / raw * 100:5.1f}%   (end to end, "
                f"submitted meanwhile: {end_to_end:.1f} runs/s)"
            )
    p50, p99 = latency_ms(args.url, args.samples)
    print(f"submit -> result latency, idle: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if is_pg:
        raw50, raw99 = raw_pipeline_ms(args.url, args.samples)
        print(
            f"raw pipeline, idle (bare psycopg: INSERT+NOTIFY, a LISTENing process claims, "
            f"6 commits, NOTIFY, the client reads): p50 {raw50:.1f} ms, p99 {raw99:.1f} ms; "
            f"tether's p50 is {p50 / raw50:.1f}x it"
        )
    commit_us = _raw_commit_us(args.url)
    floor = FLOOR_COMMITS * commit_us / 1000
    print(
        f"floor: {FLOOR_COMMITS} durable commits in sequence = {floor:.1f} ms (one raw commit "
        f"{commit_us:.0f} µs here); p50 is {p50 / floor:.1f}x the floor"
    )


def _raw_pipeline_worker(url: str, table: str, stop: Any) -> None:
    import psycopg

    dsn, _ = _pg_dsn(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {table}_jobs")
        while not stop.is_set():
            for _ in conn.notifies(timeout=0.05, stop_after=1):
                pass
            while True:
                row = _claim_one(conn, table, "running")
                if row is None:
                    break
                for step in range(5):
                    conn.execute(f"UPDATE {table} SET step = %s WHERE id = %s", (step, row[0]))
                conn.execute(f"UPDATE {table} SET status = 'done' WHERE id = %s", row)
                conn.execute("SELECT pg_notify(%s, %s)", (f"{table}_done", str(row[0])))


def raw_pipeline_ms(url: str, samples: int) -> tuple[float, float]:
    """The same idle round as `latency_ms` with no engine: the least this machine's
    processes, sockets and wake-ups cost for it (p50, p99 in ms)."""
    import psycopg

    dsn, _ = _pg_dsn(url)
    table = f"bench_pipe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, status text, step int)")
    stop = mp.Event()
    worker = mp.Process(target=_raw_pipeline_worker, args=(url, table, stop))
    worker.start()
    out: list[float] = []
    try:
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            psycopg.connect(dsn, autocommit=True) as listener,
        ):
            listener.execute(f"LISTEN {table}_done")
            for i in range(samples + 5):
                t0 = time.perf_counter()
                (rid, _) = conn.execute(
                    f"WITH r AS (INSERT INTO {table} (status) VALUES ('queued') RETURNING id) "
                    "SELECT id, pg_notify(%s, '') FROM r",
                    (f"{table}_jobs",),
                ).fetchone() or (None, None)
                while conn.execute(
                    f"SELECT status FROM {table} WHERE id = %s", (rid,)
                ).fetchone() != ("done",):
                    for _ in listener.notifies(timeout=1, stop_after=1):
                        pass
                if i >= 5:  # the first few warm up
                    out.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.01)
    finally:
        stop.set()
        worker.join(timeout=30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
    out.sort()
    return statistics.median(out), out[min(len(out) - 1, int(len(out) * 0.99))]


# A 5-step run cannot end sooner than this many durable commits one after the other,
# whatever the engine: the submit, and each step's completion (which must be on disk
# before the next step's side effect may happen; the last one can carry the run's
# end). A claim need not wait for the disk (one lost in a crash only delays the run).
# Process wake-ups, reads and the other round trips come on top.
FLOOR_COMMITS = 6


def _raw_commit_us(url: str) -> float:
    """One raw durable commit of a small row, as bench/steps.py measures it."""
    sys.path.insert(0, str(HERE))
    from steps import raw_commit_us, raw_insert_pg_us  # type: ignore[import-not-found]

    if url.startswith(("postgresql://", "postgres://")):
        return float(raw_insert_pg_us(url, 300))
    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=".") as tmp:
        return float(raw_commit_us(Path(tmp), 300))


if __name__ == "__main__":
    main()
