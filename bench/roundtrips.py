"""Statements and round trips per run of a worker, by query, on PostgreSQL.

Run: ``.venv/bin/python bench/roundtrips.py --url postgresql://...?schema=...``,
on a fresh schema each time (a worker of an earlier run may still hold the
maintenance chores' locks, and this one would then skip them).
One process holds a worker (4 jobs at once) and a client on the same App;
every statement psycopg sends is counted, by the task that sent it (the
worker's or the client's), so the figures are the store's work for a run
whatever the timing. A transaction adds two round trips (BEGIN, COMMIT).

Two phases: a backlog (N runs submitted, then drained by the worker) and one
run at a time (submit, wait until the worker has finished it, repeat), which
adds the worker's idle claims. After each, maintenance ticks run until the
outbox is empty: a run's events are published (marked, without sinks) there,
so its share of maintenance is counted too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import contextvars
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

HERE = Path(__file__).resolve().parent
T = TypeVar("T")

_role: contextvars.ContextVar[str] = contextvars.ContextVar("role", default="other")
_piped: contextvars.ContextVar[bool] = contextvars.ContextVar("piped", default=False)
_MARKS = ("(BEGIN+COMMIT)", "(pipeline)", "(pipelined)")  # counts that are not statements
_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def _names() -> dict[str, str]:
    """SQL text -> query name, where the store has named queries."""
    try:
        from tether.store._sql import queries
    except ImportError:  # an older tree: name a statement by its first words
        return {}
    return {sql: name for name, sql in queries("postgresql").items()}


def _label(names: dict[str, str], query: Any) -> str:
    text = query if isinstance(query, str) else str(query)
    if text in names:
        return names[text]
    return re.sub(r"\s+", " ", text).strip()[:60]


@contextmanager
def counting() -> Iterator[None]:
    """Count every statement and transaction psycopg runs, by the task's role; the
    statements of a pipeline share one round trip (a run's history read, a claim
    with its plan setting)."""
    names = _names()
    execute = psycopg.AsyncCursor.execute
    transaction = psycopg.AsyncConnection.transaction
    pipeline = psycopg.AsyncConnection.pipeline

    async def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        _counts[_role.get()][_label(names, query)] += 1
        if _piped.get():
            _counts[_role.get()]["(pipelined)"] += 1
        return await execute(self, query, *args, **kwargs)

    @contextlib.asynccontextmanager
    async def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        _counts[_role.get()]["(pipeline)"] += 1
        token = _piped.set(True)
        try:
            async with pipeline(self, *args, **kwargs) as piped:
                yield piped
        finally:
            _piped.reset(token)

    def counted_transaction(self: Any, *args: Any, **kwargs: Any) -> Any:
        _counts[_role.get()]["(BEGIN+COMMIT)"] += 1
        return transaction(self, *args, **kwargs)

    psycopg.AsyncCursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.AsyncConnection.transaction = counted_transaction  # type: ignore[method-assign]
    psycopg.AsyncConnection.pipeline = counted_pipeline  # type: ignore[method-assign]
    try:
        yield
    finally:
        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
        psycopg.AsyncConnection.transaction = transaction  # type: ignore[method-assign]
        psycopg.AsyncConnection.pipeline = pipeline  # type: ignore[method-assign]


async def _as(role: str, make: Callable[[], Awaitable[T]]) -> T:
    _role.set(role)
    return await make()


def _report(title: str, runs: int) -> None:
    print(f"\n== {title}: {runs} runs")
    for role in ("client", "worker", "maintenance"):
        c = _counts.get(role, collections.Counter())
        tx, pipes, piped = (c.get(k, 0) for k in _MARKS)
        stmts = sum(v for k, v in c.items() if k not in _MARKS)
        trips = stmts - piped + pipes + 2 * tx
        print(
            f"{role}: {stmts / runs:.2f} statements, {tx / runs:.2f} transactions, "
            f"{trips / runs:.2f} round trips per run"
        )
        for name, n in c.most_common():
            if name not in _MARKS[1:]:
                print(f"    {n / runs:6.2f}  {name}")
    _counts.clear()


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.002)


async def _maintain(app: Any, holder: str) -> None:
    """Maintenance ticks (as a worker's) until the outbox is empty."""
    from tether.worker._maintenance import maintenance_tick

    _role.set("maintenance")
    while (await maintenance_tick(app, holder, chore_ttl=60)).outbox_delivered:
        pass


async def main_async(url: str, runs: int, concurrency: int) -> None:
    os.environ["BENCH_URL"] = url
    sys.path.insert(0, str(HERE))
    from flows import app, five_steps  # type: ignore[import-not-found]

    from tether.worker import Worker

    worker = Worker(
        app, concurrency=concurrency, poll_interval=0.05, maintenance_interval=3600, grace=5
    )
    await app.store.open()
    with counting():
        serving = asyncio.ensure_future(_as("worker", lambda: worker.run(install_signals=False)))
        await asyncio.sleep(1.0)  # started, first maintenance tick done, idle
        for _ in range(5):  # warm up (prepared statements, caches)
            seen = worker.executed
            await _as("client", lambda: app.asubmit(five_steps))
            await _until(lambda: worker.executed > seen)  # noqa: B023
        await asyncio.sleep(0.2)
        await _maintain(app, worker.worker_id)
        _counts.clear()

        seen = worker.executed
        for _ in range(runs):
            await _as("client", lambda: app.asubmit(five_steps))
        await _until(lambda: worker.executed >= seen + runs)
        await asyncio.sleep(0.1)  # the claims after the last run
        await _maintain(app, worker.worker_id)
        _report("backlog (submitted, then drained)", runs)

        for _ in range(runs):
            seen = worker.executed
            await _as("client", lambda: app.asubmit(five_steps))
            await _until(lambda: worker.executed > seen)  # noqa: B023
        await asyncio.sleep(0.1)
        await _maintain(app, worker.worker_id)
        _report("one at a time", runs)

        worker.stop()
        await serving
    await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="statements per run of a worker (PostgreSQL)")
    parser.add_argument("--url", required=True, help="postgresql://...?schema=...")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once")
    args = parser.parse_args()
    asyncio.run(main_async(args.url, args.runs, args.concurrency))


if __name__ == "__main__":
    main()
