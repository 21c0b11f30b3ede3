"""`app.run` waits inline for a wait's timeout when it is brief (`inline_wait`); an
answer meanwhile must end that wait. Before, a `wait_for_signal(timeout=...)` answered
at once went on only when its timeout ran out, in this process or from another."""

from __future__ import annotations

import asyncio

import pytest

import tether
from tether import App, RunStatus, Workflow


async def _asks(wf: Workflow) -> str:
    answer = await wf.wait_for_signal("go", timeout=60, default="nobody")
    return f"answered by {answer}"


async def _waiting(app: App, run_id: str) -> None:
    """Until the run is parked on its pending wait (its wait registered is not enough:
    a signal then resolves the wait before the run parks, and wakes no one)."""

    async def parked() -> bool:
        try:
            run = await app.aget_run(run_id)
            waits = await app.alist_waits(run_id)
        except tether.RunNotFoundError:  # not created yet
            return False
        pending = bool(waits) and waits[0].status.value == "pending"
        return pending and run.status is RunStatus.WAITING

    await tether.testing.eventually(parked, timeout=10)


@pytest.mark.parametrize("from_where", ["this App", "another App"])
async def test_an_answer_ends_the_inline_wait_for_a_timeout(
    database_url: str, from_where: str
) -> None:
    app = App(database_url, inline_wait=120)  # the wall clock: the timeout is 60 s away
    other = App(database_url) if from_where == "another App" else app
    app.workflow(name="asks")(_asks)
    other.workflow(name="asks")(_asks)
    try:
        running = asyncio.ensure_future(app.arun(_asks, workflow_id="ask-1"))
        await _waiting(app, "ask-1")
        assert await other.asignal("ask-1", "go", "ada") is True
        async with asyncio.timeout(20):  # well before the 60 s timeout
            done = await running
        assert done.status is RunStatus.COMPLETED and done.value == "answered by ada"
    finally:
        if other is not app:
            await other.aclose()
        await app.aclose()
