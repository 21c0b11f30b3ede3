"""A recorded AI call against the same bare SDK call, in one run, on SQLite.

Run: ``.venv/bin/python bench/ai.py [-n 200]``. Both talk to the same local
server speaking OpenAI's wire format (tests/ai/_server.py), so the network
and the model cost nothing and what is left is tether's own work: the step
(start marker and completion) with the call's row written in the
completion's transaction, and the budget check's read. The target: a
recorded call costs at most one durable commit more than the bare call. The
raw durable commit is measured in the same run, since absolute times drift.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steps import raw_commit_us
from tests.ai._server import ProviderServer

import tether
from tether import ai


async def bare_us(url: str, n: int) -> float:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="k", base_url=url, max_retries=0)
    await client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "warm"}]
    )
    t0 = time.perf_counter()
    for i in range(n):
        await client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": f"q{i}"}]
        )
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed / n * 1e6


async def recorded_us(folder: Path, tag: str, url: str, n: int, budget: bool) -> float:
    app = tether.App(
        f"sqlite:///{folder}/ai-{tag}-{budget}.db",
        ai=ai.Providers(openai=ai.OpenAI(api_key="k", base_url=url)),
    )

    @app.workflow(name="calls", budget=ai.Budget(max_usd=1000.0) if budget else None)
    async def calls(wf: tether.Workflow, k: int) -> int:
        for i in range(k):
            await wf.ai.generate_text("openai:gpt-4.1-mini", prompt=f"q{i}")
        return k

    await app.arun(calls, 1)  # warm: schema, connection, client
    t0 = time.perf_counter()
    await app.arun(calls, n)
    elapsed = time.perf_counter() - t0
    await app.aclose()
    return elapsed / n * 1e6


async def main(n: int, rounds: int) -> None:
    server = ProviderServer()
    url = server.openai_url
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for r in range(rounds):
            raw = raw_commit_us(folder, n)
            bare = await bare_us(url, n)
            plain = await recorded_us(folder, f"r{r}", url, n, budget=False)
            budgeted = await recorded_us(folder, f"r{r}", url, n, budget=True)
            rows.append((raw, bare, plain, budgeted))
            print(
                f"round {r + 1}: raw commit {raw:7.0f} µs  bare SDK call {bare:7.0f} µs  "
                f"recorded {plain:7.0f} µs  recorded+budget {budgeted:7.0f} µs"
            )
    server.close()
    raw, bare, plain, budgeted = (statistics.median(c) for c in zip(*rows, strict=True))
    print()
    print(f"median of {rounds} rounds, {n} calls each:")
    print(f"  raw durable commit         {raw:8.0f} µs")
    print(f"  bare SDK call              {bare:8.0f} µs")
    print(
        f"  recorded call              {plain:8.0f} µs  (+{plain - bare:.0f} µs = "
        f"{(plain - bare) / raw:.2f} raw commits over the bare call)"
    )
    print(
        f"  recorded call with budget  {budgeted:8.0f} µs  (+{budgeted - bare:.0f} µs = "
        f"{(budgeted - bare) / raw:.2f} raw commits over the bare call)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
