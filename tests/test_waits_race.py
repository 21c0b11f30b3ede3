"""Waits that race inside one run: branches of its own that wait at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether import App, RunStatus, Workflow


async def _first_answer(approve: asyncio.Future[Any], reject: asyncio.Future[Any]) -> str:
    """Whichever of "approve" and "reject" is answered first (a pending one suspends)."""
    done, _ = await asyncio.wait({approve, reject}, return_when=asyncio.FIRST_COMPLETED)
    if reject in done and reject.exception() is None:
        return f"rejected by {reject.result()}"
    return f"approved by {approve.result()}"


async def _check_then_reject(
    wf: Workflow, check: Callable[[], Awaitable[Any]], answered: asyncio.Event
) -> object:
    """A branch that waits for "reject" once its step "check" is done."""
    await wf.step("check", check)
    try:
        return await wf.wait_for_signal("reject")
    finally:
        answered.set()


async def test_a_branch_answered_at_once_while_a_sibling_suspends_is_not_slept_through(
    app: App,
) -> None:
    """Before, the run waited for "approve" or "reject" (asyncio.wait, first completed);
    "approve" suspended while the store was still answering "reject" from a signal
    kept in the inbox, and the run parked on "approve" alone: "reject" was resolved
    (its signal consumed) and nothing woke the run for it, so it waited for an
    approval that was never coming. Which branch's answer comes first is a race
    (PostgreSQL lost it about three times in four): five runs make it certain."""
    started, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    @app.workflow
    async def either(wf: Workflow) -> str:
        await wf.step("hold", hold)
        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(wf.wait_for_signal("reject"))
        return await _first_answer(approve, reject)  # suspends while "approve" is pending

    for n in range(5):
        started.clear()
        gate.clear()
        task = asyncio.ensure_future(app.arun(either, workflow_id=f"either-{n}"))
        await started.wait()
        assert await app.asignal(f"either-{n}", "reject", "ada") is False  # kept: no wait yet
        gate.set()
        res = await task
        assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")


async def test_a_park_waits_for_a_branch_still_registering_its_wait(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the run parked while a branch's wait was still being registered: the
    store parked it first (that wait not yet written), then answered the wait from the
    kept signal and woke the run, after the driver had returned `waiting`. Here the
    store holds that registration until the park returns, or half a second if the park
    (now) waits for it: the old order is forced, not left to a race."""
    park_returned = asyncio.Event()
    register, park = app.store.register_wait, app.store.park_run

    async def late_register(fence: Any, wait: Any, at: Any) -> Any:
        if wait.name == "reject":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(park_returned.wait(), 0.5)
        return await register(fence, wait, at)

    async def noted_park(*args: Any, **kwargs: Any) -> bool:
        try:
            return await park(*args, **kwargs)
        finally:
            park_returned.set()

    monkeypatch.setattr(app.store, "register_wait", late_register)
    monkeypatch.setattr(app.store, "park_run", noted_park)

    started, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    @app.workflow(inline_wait=0)  # (returns at the park, not after a look for a wake-up)
    async def either(wf: Workflow) -> str:
        await wf.step("hold", hold)
        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(wf.wait_for_signal("reject"))
        return await _first_answer(approve, reject)

    task = asyncio.ensure_future(app.arun(either, workflow_id="held"))
    await started.wait()
    assert await app.asignal("held", "reject", "ada") is False  # kept: no wait yet
    gate.set()
    res = await task
    assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")


async def test_a_branch_answered_after_its_run_parked_wakes_the_run(app: App) -> None:
    """Before, a branch still in a step when its sibling's wait parked the run went on
    to wait for "reject", which the store answered at once from the inbox (the run
    parked, the signal kept): the run stayed parked on "approve", the rejection
    consumed and nothing to wake it."""
    gate, answered = asyncio.Event(), asyncio.Event()

    @app.workflow
    async def either(wf: Workflow) -> str:
        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(_check_then_reject(wf, gate.wait, answered))
        return await _first_answer(approve, reject)

    first = await app.arun(either, workflow_id="late-branch")
    assert first.status is RunStatus.WAITING  # on "approve"; "check" still running
    assert await app.asignal("late-branch", "reject", "ada") is False  # no reject wait yet
    gate.set()
    await answered.wait()  # the branch's wait got the kept signal, after the park
    run = await app.store.get_run("late-branch")
    assert run is not None and run.status is RunStatus.PENDING  # woken to be replayed
    res = await app.arun(either, workflow_id="late-branch")
    assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")


async def test_a_branch_that_waits_while_its_run_parks_waits_for_the_park(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a branch whose step ended as its sibling's wait parked the run went on
    to wait for "reject" before the park was written: the store answered it from the
    kept signal on a run still running (nothing to wake), then the park took no notice
    of it, and the run slept on "approve" with the rejection consumed. Here the park
    is held until that registration returns, or half a second if the registration
    (now) waits for the park: the old order is forced."""
    started, gate = asyncio.Event(), asyncio.Event()
    step_may_end, registered, answered = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    register, park = app.store.register_wait, app.store.park_run

    async def noted_register(fence: Any, wait: Any, at: Any) -> Any:
        try:
            return await register(fence, wait, at)
        finally:
            if wait.name == "reject":
                registered.set()

    async def held_park(*args: Any, **kwargs: Any) -> bool:
        step_may_end.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registered.wait(), 0.5)
        return await park(*args, **kwargs)

    monkeypatch.setattr(app.store, "register_wait", noted_register)
    monkeypatch.setattr(app.store, "park_run", held_park)

    @app.workflow(inline_wait=0)
    async def either(wf: Workflow) -> str:
        await wf.step("hold", hold)

        approve = asyncio.ensure_future(wf.wait_for_signal("approve"))
        reject = asyncio.ensure_future(_check_then_reject(wf, step_may_end.wait, answered))
        return await _first_answer(approve, reject)

    task = asyncio.ensure_future(app.arun(either, workflow_id="parking"))
    await started.wait()
    assert await app.asignal("parking", "reject", "ada") is False  # kept: no wait yet
    gate.set()
    first = await task
    assert first.status is RunStatus.WAITING  # parked on "approve"; "check" held till then
    await answered.wait()
    run = await app.store.get_run("parking")
    assert run is not None and run.status is RunStatus.PENDING  # woken to be replayed
    res = await app.arun(either, workflow_id="parking")
    assert (res.status, res.value) == (RunStatus.COMPLETED, "rejected by ada")


async def test_kept_signals_answer_waits_of_one_name_in_the_order_the_code_asked(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two "go" signals are kept before two branches wait for "go" at once: the branch
    that asked first gets the first signal. Before, each branch's registration went to
    the store at once, and the second's could commit first (on PostgreSQL, a race of two
    connections) and take the first signal. Here the store holds the first branch's
    registration until the second's returns, or half a second if the second (now) waits
    for the first: the old order is forced, not left to a race."""
    second_done = asyncio.Event()
    register = app.store.register_wait
    calls: list[str] = []

    async def first_held(fence: Any, wait: Any, at: Any) -> Any:
        calls.append(wait.key)
        if len(calls) == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_done.wait(), 0.5)
            return await register(fence, wait, at)
        try:
            return await register(fence, wait, at)
        finally:
            second_done.set()

    monkeypatch.setattr(app.store, "register_wait", first_held)
    started, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        started.set()
        await gate.wait()

    @app.workflow
    async def both(wf: Workflow) -> list[Any]:
        await wf.step("hold", hold)
        first = asyncio.ensure_future(wf.wait_for_signal("go"))
        second = asyncio.ensure_future(wf.wait_for_signal("go"))
        return [await first, await second]

    task = asyncio.ensure_future(app.arun(both, workflow_id="two-go"))
    await started.wait()
    for n in (1, 2):
        assert await app.asignal("two-go", "go", n) is False  # kept: no wait yet
    gate.set()
    res = await task
    assert (res.status, res.value) == (RunStatus.COMPLETED, [1, 2])
    assert calls == ["signal:go#1", "signal:go#2"]
