"""`wf.with_mutex(key, fn)` with a sync `fn` given up on while it runs (an
enclosing step's timeout): the thread cannot be stopped, so the key stays held
until `fn` returns, as for a sync step given up on inside a mutex block. It was
run with `asyncio.to_thread`, which nobody watched: the key was released at
once, beside the side effect still under way."""

from __future__ import annotations

import threading

import pytest

import tether
from tether import App, Workflow


async def test_a_sync_fn_of_with_mutex_given_up_on_keeps_the_key_until_it_returns(
    database_url: str,
) -> None:
    app, other = App(database_url), App(database_url)
    done, ledger = threading.Event(), []

    def charge() -> None:
        ledger.append("charge started")
        done.wait(60)
        ledger.append("charge ended")

    async def charges(wf: Workflow) -> str:
        async def under_the_key() -> None:
            await wf.with_mutex("acct-1", charge)

        try:
            await wf.step("charge", under_the_key, timeout=0.2)
        except tether.StepTimeoutError:
            return "gave up"
        return "charged"

    async def next_holder(wf: Workflow, wait: float) -> None:
        async with wf.mutex("acct-1", timeout=wait):
            await wf.step("refund", lambda: ledger.append("refund"))

    try:
        assert (await app.arun(charges, workflow_id="c")).value == "gave up"
        with pytest.raises(tether.MutexTimeoutError):  # the charge still runs
            await other.arun(next_holder, 0.0, workflow_id="early")
        done.set()
        await other.arun(next_holder, 30.0, workflow_id="late")  # freed once it returned
        assert ledger == ["charge started", "charge ended", "refund"]
    finally:
        done.set()
        await other.aclose()
        await app.aclose()


@pytest.mark.parametrize("shape", ["value", "coroutine"])
async def test_with_mutex_given_no_function_is_refused_before_taking_the_key(
    app: App, shape: str
) -> None:
    """`wf.with_mutex(k, do_work())` (the result, not the function) took the key, then
    failed inside the block with a bare `TypeError: 'int' object is not callable`."""

    async def work() -> int:
        return 5

    async def flow(wf: Workflow) -> None:
        await wf.with_mutex("acct-1", work() if shape == "coroutine" else 5)  # type: ignore[arg-type]

    with pytest.raises(tether.InvalidArgumentError, match="needs a function to call") as info:
        await app.arun(flow, workflow_id="no-fn")
    assert "not wf.with_mutex('acct-1', do_work())" in str(info.value)
    record = await app.aget_record("no-fn")
    assert not [e for e in record.events if e.type.startswith("mutex.")]  # never taken
