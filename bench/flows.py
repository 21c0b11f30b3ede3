"""The workflow the worker benchmark runs: five no-op durable steps."""

from __future__ import annotations

import os

import tether

app = tether.App(os.environ.get("BENCH_URL"))


async def _noop() -> int:
    return 1


@app.workflow(name="five-steps")
async def five_steps(wf: tether.Workflow) -> int:
    total = 0
    for i in range(5):
        total += await wf.step(f"s{i}", _noop)
    return total
