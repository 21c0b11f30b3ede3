"""Durable step cost, as a ratio to one raw durable commit, on SQLite or PostgreSQL.

Run: ``make bench`` (or ``.venv/bin/python bench/steps.py [--url postgresql://...]``).
Absolute times drift on shared machines, so every figure is printed beside
the raw limit measured in the same run: on SQLite one fully durable commit of
a small row (WAL, ``synchronous=FULL``) on the same disk; on PostgreSQL one
committed INSERT of a small row over one connection to the same server.
Steps run with an async and with a sync step function (a sync one runs in a
step thread), each with its own table, then the sync/async cost ratio; last,
a paired figure that resists drift: rounds that alternate a chunk of raw
commits, of async steps and of sync steps, each ratio taken within a round,
the median over rounds reported. Also prints mutex acquire/release round
trips per second.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import tether


def raw_commit_us(folder: Path, n: int) -> float:
    """µs per fully durable commit of one small row (the floor a step sits on)."""
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, run TEXT, v TEXT)")
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (run, v) VALUES (?, ?)", ("run", f'{{"i":{i}}}'))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed / n * 1e6


def raw_insert_pg_us(url: str, n: int) -> float:
    """µs per committed INSERT of one small row over one connection (autocommit).

    Measured with the same driver and event loop tether uses (psycopg's
    async connection), so the ratio compares like with like.
    """
    return asyncio.run(raw_insert_pg_loop(url, n))


async def raw_insert_pg_loop(url: str, n: int) -> float:
    """`raw_insert_pg_us` on the running loop."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, run text, v jsonb)")
    sql = f"INSERT INTO {table} (run, v) VALUES (%s, %s::jsonb)"
    try:
        for _ in range(50):  # warm up the connection and the prepared statement
            await conn.execute(sql, ("run", "{}"))
        t0 = time.perf_counter()
        for i in range(n):
            await conn.execute(sql, ("run", f'{{"i":{i}}}'))
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()


async def mutex_round_trips(app: tether.App, seconds: float) -> float:
    """Acquire/release pairs of one uncontended mutex per second."""
    wf = await app.aopen("bench-mutex")
    count = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        async with wf.mutex("bench-key"):
            count += 1
    return count / (time.perf_counter() - t0)


async def step_run(
    app: tether.App, n_steps: int, workflow_id: str, sync_fn: bool
) -> tuple[float, float]:
    """(seconds spent in the step loop, seconds for the whole run) of `n_steps` trivial steps.

    The loop time is what a step costs; the whole run adds the fixed cost of
    creating and claiming the run and reading its record back.
    """

    async def trivial_async() -> int:
        return 1

    def trivial_sync() -> int:
        return 1

    fn = trivial_sync if sync_fn else trivial_async
    loop_time = 0.0
    marks: list[float] = []

    async def flow(wf: tether.Workflow) -> int:
        nonlocal loop_time
        total = 0
        t0 = time.perf_counter()
        for i in range(n_steps):
            marks.append(time.perf_counter())
            total += await wf.step(f"s{i}", fn)
        marks.append(time.perf_counter())
        loop_time = time.perf_counter() - t0
        # park: a finished run is an answer (asked again, its body does not run), so the
        # replay figure replays a run that is still open
        await wf.wait_for_signal("never")
        return total

    t0 = time.perf_counter()
    await app.arun(flow, workflow_id=f"{RUN_PREFIX}{workflow_id}")
    whole = time.perf_counter() - t0
    if n_steps >= 10_000:
        LAST_MARKS[:] = marks
    return loop_time, whole


# a PostgreSQL schema outlives one invocation: fresh ids, or a second run would replay
RUN_PREFIX = uuid.uuid4().hex[:8] + "-"
LAST_MARKS: list[float] = []
FRESH_MARKS: list[float] = []
POSITION: list[float] = []  # µs/step of steps 1-100 and of the last 100, in one long run


def window_us(marks: list[float], start: int, count: int) -> float:
    """Mean µs per step of steps start+1 .. start+count of one run."""
    return (marks[start + count] - marks[start]) / count * 1e6


async def measure(
    app: tether.App, sizes: list[int], repeat: int, sync_fn: bool
) -> dict[int, list[float]]:
    """Per size: medians of (µs/step, whole-run µs/step, replay steps/s, whole replay steps/s).

    One long-lived App and database, as in use: the first run warms up the
    interpreter and grows the WAL file to its working size, so no figure pays
    for either.
    """
    kind = "sync" if sync_fn else "async"
    await step_run(app, 2000 if app.store.dialect == "sqlite" else 500, f"warm-up-{kind}", sync_fn)
    out: dict[int, list[float]] = {}
    POSITION.clear()
    for n in sizes:
        fresh, fresh_whole, replay, replay_whole = [], [], [], []
        for r in range(repeat):
            wid = f"run-{kind}-{n}-{r}"
            loop_s, whole_s = await step_run(app, n, wid, sync_fn)
            FRESH_MARKS[:] = LAST_MARKS
            fresh.append(loop_s / n * 1e6)
            fresh_whole.append(whole_s / n * 1e6)
            loop_s, whole_s = await step_run(app, n, wid, sync_fn)
            replay.append(n / loop_s)
            replay_whole.append(n / whole_s)
            if n >= 10_000 and r == 0:
                POSITION.extend(
                    [window_us(FRESH_MARKS, 0, 100), window_us(FRESH_MARKS, n - 100, 100)]
                )
        out[n] = [statistics.median(x) for x in (fresh, fresh_whole, replay, replay_whole)]
    return out


MUTEX: list[float] = []


async def paired(
    app: tether.App, raw: Callable[[int], Awaitable[float]], rounds: int, chunk: int
) -> tuple[float, float, float, float, float, float]:
    """Median ratios over rounds of (raw, async steps, sync steps) chunks, and raw µs.

    Returns (async/raw, sync/raw, sync/async, median raw µs, median µs a sync step
    costs over an async one, median async step µs). Each ratio is
    taken within one round, a few hundred milliseconds, so load that comes and
    goes on a shared machine shifts numerator and denominator alike.
    """
    timings: list[tuple[float, float, float]] = []
    for r in range(rounds):
        raw_us = await raw(chunk)
        a, _ = await step_run(app, chunk, f"paired-async-{r}", False)
        s, _ = await step_run(app, chunk, f"paired-sync-{r}", True)
        timings.append((raw_us, a / chunk * 1e6, s / chunk * 1e6))
        HANDOFF.append(thread_handoff_us(chunk * 10))
    return (
        statistics.median(a / r for r, a, _ in timings),
        statistics.median(s / r for r, _, s in timings),
        statistics.median(s / a for _, a, s in timings),
        statistics.median(r for r, _, _ in timings),
        statistics.median(s - a for _, a, s in timings),
        statistics.median(a for _, a, _ in timings),
    )


HANDOFF: list[float] = []  # µs per bare hand-off, one figure per paired round


def thread_handoff_us(n: int) -> float:
    """µs to hand a call to a parked thread and be woken by its answer, as bare as
    Python allows (a queue and a lock, no function run): the floor under running a
    sync step function off the event loop, which takes these two wake-ups."""
    calls: queue.SimpleQueue[threading.Lock | None] = queue.SimpleQueue()

    def answer() -> None:
        while (done := calls.get()) is not None:
            done.release()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    for _ in range(n):
        done = threading.Lock()
        done.acquire()
        calls.put(done)
        done.acquire()
    elapsed = time.perf_counter() - t0
    calls.put(None)
    thread.join()
    return elapsed / n * 1e6


def print_table(
    results: dict[int, list[float]], raw: float, sizes: list[int], label: str
) -> dict[int, float]:
    print(f"step function: {label}")
    print(
        f"{'steps':>7} {'µs/step':>9} {'× raw':>7} {'whole run µs/step':>18} "
        f"{'cached replay steps/s':>22} {'whole replay steps/s':>21}"
    )
    per_step: dict[int, float] = {}
    for n, (step_us, whole_us, replay, replay_whole) in results.items():
        per_step[n] = step_us
        print(
            f"{n:>7} {step_us:>9.1f} {step_us / raw:>7.2f} {whole_us:>18.1f} "
            f"{replay:>22,.0f} {replay_whole:>21,.0f}"
        )
    if len(sizes) > 1:
        first, last = per_step[sizes[0]], per_step[sizes[-1]]
        print(
            f"per-step cost at {sizes[-1]:,} steps vs {sizes[0]:,}: "
            f"{(last / first - 1) * 100:+.1f}%"
        )
    if POSITION:
        early, late = POSITION
        print(
            f"within one {max(sizes):,}-step run: steps 1-100 {early:.1f} µs/step, "
            f"last 100 steps {late:.1f} µs/step ({(late / early - 1) * 100:+.1f}%)"
        )
    print()
    return per_step


async def bench(
    url: str, pg_url: str | None, folder: Path, args: argparse.Namespace, sizes: list[int]
) -> None:
    async def raw(n: int) -> float:
        if pg_url is not None:
            return await raw_insert_pg_loop(pg_url, n)
        return raw_commit_us(folder, n)

    raw_before = await raw(args.raw)
    what = (
        "committed PostgreSQL INSERT (one connection)"
        if pg_url
        else ("durable SQLite commit (WAL, synchronous=FULL)")
    )
    print(f"raw {what}: {raw_before:8.1f} µs")
    print()
    app = tether.App(url)
    kinds = {"async": [False], "sync": [True], "both": [False, True]}[args.fn]
    per_kind: dict[bool, dict[int, float]] = {}
    for sync_fn in kinds:
        results = await measure(app, sizes, args.repeat, sync_fn)
        label = "sync (step thread)" if sync_fn else "async"
        per_kind[sync_fn] = print_table(results, raw_before, sizes, label)
    if len(kinds) == 2:
        print("sync step / async step, µs/step of the tables above:")
        for n in sizes:
            print(f"{n:>7} {per_kind[True][n] / per_kind[False][n]:>7.2f}")
        print()
        ra, rs, sa, raw_med, extra, async_us = await paired(app, raw, args.rounds, args.chunk)
        print(
            f"paired, median of {args.rounds} rounds of {args.chunk} (raw {raw_med:.1f} µs): "
            f"async step {ra:.2f}× raw, sync step {rs:.2f}× raw, sync/async {sa:.2f}"
        )
        handoff = statistics.median(HANDOFF)
        print(
            f"a sync step costs {extra:.0f} µs more than an async one; a bare hand-off to a "
            f"parked thread and back costs {handoff:.0f} µs here, so sync/async cannot be "
            f"below {(async_us + handoff) / async_us:.2f} without running the function on "
            "the loop"
        )
    MUTEX.append(await mutex_round_trips(app, 2.0))
    await app.aclose()
    print(f"mutex acquire+release round trips: {MUTEX[0]:,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="workflow lengths in steps")
    parser.add_argument("--raw", type=int, default=2000, help="raw commits to time")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per size (median kept)")
    parser.add_argument(
        "--fn", choices=("async", "sync", "both"), default="both", help="step functions to time"
    )
    parser.add_argument("--sync-fn", action="store_true", help="same as --fn sync")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the paired figure")
    parser.add_argument("--chunk", type=int, default=200, help="commits or steps per chunk")
    parser.add_argument("--url", default=None, help="postgresql://... (default: a SQLite file)")
    args = parser.parse_args()
    if args.sync_fn:
        args.fn = "sync"
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="tether-bench-", dir=".") as tmp:
        folder = Path(tmp)
        url = args.url or f"sqlite:///{folder}/bench.db"
        asyncio.run(bench(url, args.url, folder, args, sizes))


if __name__ == "__main__":
    main()
