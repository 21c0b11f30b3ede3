"""A test that fails with a run stuck on a step must not then wait out a graceful
shutdown: the in-memory App's database goes with it, nobody takes the run back."""

from __future__ import annotations

import asyncio

import tether
from tether.testing import memory_app


async def test_closing_a_memory_app_cuts_a_stuck_run_at_once() -> None:
    """Before: `memory_app` (and so the `tether_app` fixture) closed with the default
    `shutdown_grace` of 30 real seconds, spent in the teardown of every test that left
    a run on a step that never returns, often past the test's timeout."""
    never = asyncio.Event()
    entered = asyncio.Event()

    async def stuck(wf: tether.Workflow) -> str:
        async def wait_for_ever() -> str:
            entered.set()
            await never.wait()
            return "never"

        return await wf.step("blocked", wait_for_ever)

    app = memory_app()
    await app.astart(stuck, workflow_id="stuck")
    await asyncio.wait_for(entered.wait(), timeout=10)
    async with asyncio.timeout(10):  # the old grace was 30 s: this fails it, not a race
        await app.aclose()
