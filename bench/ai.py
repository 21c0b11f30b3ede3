"""A recorded AI call against the same bare SDK call, in one run, on SQLite.

Run: ``.venv/bin/python bench/ai.py [-n 200] [--rounds 3]``. All three talk to
the same local server speaking OpenAI's wire format (tests/ai/_server.py, in a
process of its own, as a real provider is), so the network and the model cost
(almost) nothing and what is left is our own work. Three figures per round, interleaved so machine drift hits them alike:

- the bare SDK call (``AsyncOpenAI().chat.completions.create``);
- the same call inside a plain durable step (``wf.step``): the core's cost,
  a start marker and a completion, as in bench/steps.py;
- ``wf.ai.generate_text``: the step plus the AI layer (the call's row, written
  in the completion's transaction; pricing; usage normalised), and with a
  budget, the spend read before the call.

Figures are µs per call and, for the overheads, in raw durable commits
measured in the same round (absolute times drift on shared machines).

The target's limit is also measured in place: the bare call followed by one
raw durable commit, in the same loop. A commit between SDK calls costs more
than one in a tight loop of commits (the fsync's kernel work and the SQLite
code evict what the SDK had in the CPU caches, and the next call runs
slower), so "one durable commit more than the bare call" is that figure, and
the overheads are also given in commits measured so.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steps import raw_commit_us
from tests.ai._server import ProviderServer

import tether
from tether import ai


async def _timed(n: int, fn: Any) -> tuple[float, float]:
    """(wall, CPU of this process) in µs per call."""
    t0, c0 = time.perf_counter(), time.process_time()
    await fn()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def _serve(urls: Any) -> None:
    """The provider server in its own process, as a real provider is: its work
    must not take this process's GIL from the loop being measured."""
    server = ProviderServer()
    urls.send(server.openai_url)
    urls.recv()  # until told to stop
    server.close()


async def main(n: int, rounds: int) -> None:
    from openai import AsyncOpenAI

    ours, theirs = multiprocessing.Pipe()
    serving = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs,))
    serving.start()
    openai_url = ours.recv()
    client = AsyncOpenAI(api_key="k", base_url=openai_url, max_retries=0)

    async def bare(i: int) -> str:
        resp = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": f"q{i}"}]
        )
        return resp.choices[0].message.content or ""

    async def bare_loop() -> None:
        for i in range(n):
            await bare(i)

    def commit_once(conn: sqlite3.Connection, i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (run, v) VALUES (?, ?)", ("run", f'{{"i":{i}}}'))
        conn.execute("COMMIT")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        app = tether.App(
            f"sqlite:///{folder}/ai.db",
            ai=ai.Providers(openai=ai.OpenAI(api_key="k", base_url=openai_url)),
        )

        @app.workflow(name="stepped")
        async def stepped(wf: tether.Workflow, k: int) -> int:
            for i in range(k):

                async def call(i: int = i) -> str:
                    return await bare(i)

                await wf.step("call", call)
            return k

        @app.workflow(name="recorded")
        async def recorded(wf: tether.Workflow, k: int) -> int:
            for i in range(k):
                await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=f"q{i}")
            return k

        @app.workflow(name="budgeted", budget=ai.Budget(max_usd=1000.0))
        async def budgeted(wf: tether.Workflow, k: int) -> int:
            for i in range(k):
                await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=f"q{i}")
            return k

        conn = sqlite3.connect(folder / "in-place.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, run TEXT, v TEXT)")

        async def bare_and_commit_loop() -> None:  # the target's limit, in place
            for i in range(n):
                await bare(i)
                commit_once(conn, i)

        await bare(0)
        for flow in (stepped, recorded, budgeted):  # warm: schema, client, prices
            await app.arun(flow, 1)
        rows, cpus = [], []
        for r in range(rounds):
            raw = raw_commit_us(folder, n)
            timed = [
                await _timed(n, bare_loop),
                await _timed(n, bare_and_commit_loop),
                await _timed(n, lambda: app.arun(stepped, n)),
                await _timed(n, lambda: app.arun(recorded, n)),
                await _timed(n, lambda: app.arun(budgeted, n)),
            ]
            row = [raw, *(wall for wall, _ in timed)]
            rows.append(row)
            cpus.append([cpu for _, cpu in timed])
            print(
                f"round {r + 1}: raw commit {row[0]:6.0f} µs  bare {row[1]:6.0f}  "
                f"bare+commit {row[2]:6.0f}  in a step {row[3]:6.0f}  wf.ai {row[4]:6.0f}  "
                f"wf.ai+budget {row[5]:6.0f}"
            )
        conn.close()
        await app.aclose()
    await client.close()
    ours.send("stop")
    serving.join()
    _report(rounds, n, rows, cpus)


def _report(rounds: int, n: int, rows: list[list[float]], cpus: list[list[float]]) -> None:
    raw, bare_us, limit_us, step_us, ai_us, budget_us = (
        statistics.median(c) for c in zip(*rows, strict=True)
    )
    bare_cpu, limit_cpu, step_cpu, ai_cpu, budget_cpu = (
        statistics.median(c) for c in zip(*cpus, strict=True)
    )
    in_place = limit_us - bare_us  # one durable commit, between two SDK calls

    def over(us: float, cpu: float) -> str:
        return (
            f"{us:8.0f} µs  (+{us - bare_us:5.0f} µs = {(us - bare_us) / raw:4.2f} raw commits,"
            f" {(us - bare_us) / in_place:4.2f} in place; CPU +{cpu - bare_cpu:4.0f} µs)"
        )

    print(f"\nmedian of {rounds} rounds, {n} calls each (CPU: this process, per call):")
    print(f"  raw durable commit           {raw:8.0f} µs  (in a loop of commits)")
    print(f"  bare SDK call                {bare_us:8.0f} µs  (CPU {bare_cpu:.0f} µs)")
    print(
        f"  bare call + one raw commit   {limit_us:8.0f} µs  (the target's limit: a commit in"
        f" place costs {in_place:.0f} µs = {in_place / raw:4.2f} raw commits;"
        f" CPU +{limit_cpu - bare_cpu:.0f} µs)"
    )
    print(f"  the call in a plain step     {over(step_us, step_cpu)}")
    print(f"  wf.ai.generate_text          {over(ai_us, ai_cpu)}")
    print(f"  wf.ai with a budget          {over(budget_us, budget_cpu)}")
    print(
        f"  the AI layer alone           {ai_us - step_us:8.0f} µs over the plain step"
        f"  (CPU +{ai_cpu - step_cpu:.0f} µs)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
