"""Waiters for a mutex in one process take turns: a holder that releases the key and
asks for it again at once goes behind them. It took the key straight back before any
waiter woke, again and again, so a waiter in its own run starved until its timeout
though the key was freed hundreds of times."""

from __future__ import annotations

import asyncio
from typing import Any

from tether import App, RunStatus, Workflow
from tether.store import LockOutcome, LockResult
from tether.testing import eventually

ROUNDS = 300


async def test_a_holder_asking_again_goes_behind_the_waiters(app: App) -> None:
    rounds = 0
    waiter_in_at: list[int] = []
    holding = asyncio.Event()

    async def greedy(wf: Workflow) -> None:
        nonlocal rounds
        for _ in range(ROUNDS):
            async with wf.mutex("account-7", timeout=30):
                holding.set()
                rounds += 1
                await asyncio.sleep(0)  # (the block does some async work)
            if waiter_in_at:
                return

    async def waiter(wf: Workflow) -> None:
        await holding.wait()
        async with wf.mutex("account-7", timeout=30):
            waiter_in_at.append(rounds)

    await asyncio.gather(
        app.arun(greedy, workflow_id="greedy"), app.arun(waiter, workflow_id="waiter")
    )
    assert waiter_in_at and waiter_in_at[0] < 10, (waiter_in_at, rounds)
    assert rounds < ROUNDS  # the holder saw the waiter get in and stopped


async def test_waiters_of_one_key_take_it_in_the_order_they_came(app: App) -> None:
    order: list[int] = []
    release = asyncio.Event()

    async def flow(wf: Workflow) -> None:
        async def first() -> None:
            async with wf.mutex("k", timeout=30):
                await release.wait()
                order.append(0)

        async def later(i: int) -> None:
            async with wf.mutex("k", timeout=30):
                order.append(i)

        task = asyncio.ensure_future(first())
        waiters = [asyncio.ensure_future(later(i)) for i in range(1, 4)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(task, *waiters)

    await app.arun(flow, workflow_id="fifo")
    assert order == [0, 1, 2, 3]


async def test_a_resumed_run_takes_its_key_back_ahead_of_a_waiter(app: App) -> None:
    # the run parked inside its block keeps the key; resumed, its replay takes it back
    # (releasing its dead incarnation's hold, then taking it): a waiter first in line
    # must not get in between, in the middle of the resumed run's block
    refused = 0
    seen: list[str] = []
    real = app.store.acquire_lock

    async def counting(*args: Any, **kwargs: Any) -> LockResult:
        nonlocal refused
        res = await real(*args, **kwargs)
        refused += res.outcome is LockOutcome.CONFLICT
        return res

    app.store.acquire_lock = counting  # type: ignore[method-assign]

    async def keeper(wf: Workflow) -> None:
        async with wf.mutex("job:42", stale_after=10):
            await wf.wait_for_signal("approve")  # parks the run inside the block
            seen.append("keeper back in")
            start = refused
            await eventually(lambda: refused >= start + 3, timeout=30)  # the waiter asked
            seen.append("keeper leaves")

    async def waiter(wf: Workflow) -> None:
        async with wf.mutex("job:42", timeout=60, poll=0.01):
            seen.append("waiter in")

    assert (await app.arun(keeper, workflow_id="keeper")).status is RunStatus.WAITING
    waiting = asyncio.ensure_future(app.arun(waiter, workflow_id="waiter"))
    await eventually(lambda: refused >= 1)  # the waiter is first in line
    await app.asignal("keeper", "approve", "ada")
    assert (await app.aresume("keeper")).status is RunStatus.COMPLETED
    await waiting
    assert seen == ["keeper back in", "keeper leaves", "waiter in"]
