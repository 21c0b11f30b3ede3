"""A run that ends closes the waits it left pending, in the same transaction.

A `for_each` sibling that fails (stop_on_error) ends the run while another item
is parked on a wait; a task the workflow never awaited registers a wait and the
run completes. Those waits used to stay pending on the ended run: listed as
pending, fired as timers, answered by events and tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import tether
from tether import App, FakeClock, RunStatus, WaitStatus, Workflow
from tether.testing import eventually


async def _wait_registered(app: App, wf: Workflow) -> None:
    """Until the run has a waitpoint: a sibling item reached its wait (a short sleep
    was not always enough on a loaded machine)."""
    await eventually(lambda: app.store.list_waits(wf.workflow_id), timeout=60)


def _parked_sibling_flow(
    app: App, kind: str, tokens: list[str]
) -> Callable[[Workflow], Awaitable[object]]:
    async def flow(wf: Workflow) -> object:
        async def item(i: int) -> object:
            if i == 1:
                await _wait_registered(app, wf)  # item 0 reaches its wait first
                raise ValueError("item 1 broke")
            if kind == "signal":
                return await wf.wait_for_signal("go")
            if kind == "timer":
                return await wf.sleep(60)
            if kind == "event":
                return await wf.wait_for_event("batch.done")
            token = await wf.create_token()
            tokens.append(token)
            return await wf.wait_for_token(token)

        return (await wf.for_each([0, 1], item, max_parallel=2)).values

    return flow


@pytest.mark.parametrize("kind", ["signal", "timer", "event", "token"])
async def test_a_run_failed_by_a_sibling_closes_the_wait_another_item_parked_on(
    app: App, clock: FakeClock, kind: str
) -> None:
    tokens: list[str] = []
    with pytest.raises(tether.ForEachError, match="item 1 broke"):
        await app.arun(_parked_sibling_flow(app, kind, tokens), workflow_id="fe")
    assert (await app.aget_run("fe")).status is RunStatus.FAILED
    (wait,) = await app.alist_waits("fe")
    assert wait.status is WaitStatus.CANCELLED and wait.resolved_at is not None
    events_at_end = [e.type for e in await app.store.list_events("fe")]
    assert events_at_end[-1] == "workflow.failed"

    clock.advance(120)
    assert await app.afire_due_timers() == []
    if kind == "signal":
        with pytest.raises(tether.RunFinishedError, match="already ended"):
            await app.asignal("fe", "go", 1)
    elif kind == "event":
        assert await app.asend_event("batch.done", {}) == []
    elif kind == "token":
        with pytest.raises(tether.RunFinishedError, match=r"complete token .* ended \(failed\)"):
            await app.acomplete_token(tokens[0], {"ok": True})
    # nothing reached the ended run: its wait stays closed, its record ends with its end
    assert [w.status for w in await app.alist_waits("fe")] == [WaitStatus.CANCELLED]
    assert [e.type for e in await app.store.list_events("fe")] == events_at_end


async def test_a_completed_run_closes_the_waits_of_tasks_it_never_awaited(app: App) -> None:
    async def flow(wf: Workflow) -> str:
        task = asyncio.ensure_future(wf.wait_for_signal("never"))
        await asyncio.wait({task})  # the task registers its wait, then is left behind
        token = await wf.create_token()  # handed out, never waited for
        return token

    token = (await app.arun(flow, workflow_id="done")).value
    waits = await app.alist_waits("done")
    assert [(w.kind.value, w.status) for w in waits] == [
        ("signal", WaitStatus.CANCELLED),
        ("token", WaitStatus.CANCELLED),
    ]
    with pytest.raises(tether.RunFinishedError, match=r"ended \(completed\)"):
        await app.acomplete_token(token, None)
    with pytest.raises(tether.RunFinishedError):
        await app.asignal("done", "never", None)


async def test_a_rerun_of_the_failed_run_waits_again_for_the_wait_its_end_closed(
    app: App,
) -> None:
    broken = True

    async def flow(wf: Workflow) -> object:
        async def item(i: int) -> object:
            if i == 0:
                return await wf.wait_for_signal("go")
            await _wait_registered(app, wf)

            def work() -> int:
                if broken:
                    raise ValueError("item 1 broke")
                return 7

            return await wf.step("work", work, retry=1)

        return (await wf.for_each([0, 1], item, max_parallel=2)).values

    with pytest.raises(tether.ForEachError, match="item 1 broke"):
        await app.arun(flow, workflow_id="fe")
    broken = False
    # the closed wait was registered before the step rerun from: kept cancelled, the
    # replay met it as a cancel and left the run running with nobody driving it
    rerun = await app.arerun_from("fe", "work[1]")
    assert rerun.status is RunStatus.WAITING
    assert [w.status for w in await app.alist_waits("fe")] == [WaitStatus.PENDING]
    await app.asignal("fe", "go", 5)
    assert (await app.aresult("fe", timeout=30)).value == [5, 7]


async def test_an_item_whose_wait_timed_out_ends_the_run_and_closes_its_siblings_wait(
    app: App, clock: FakeClock
) -> None:
    async def flow(wf: Workflow) -> object:
        async def item(i: int) -> object:
            if i == 0:
                return await wf.wait_for_signal("a", timeout=10)  # raises WaitTimeout
            return await wf.wait_for_signal("b")

        return (await wf.for_each([0, 1], item, max_parallel=2)).values

    assert (await app.arun(flow, workflow_id="fe")).status is RunStatus.WAITING
    clock.advance(20)
    assert await app.afire_due_timers() == ["fe"]
    assert (await app.aresult("fe", timeout=30)).status is RunStatus.FAILED
    waits = {w.name: w.status for w in await app.alist_waits("fe")}
    assert waits == {"a": WaitStatus.TIMED_OUT, "b": WaitStatus.CANCELLED}
    with pytest.raises(tether.RunFinishedError):
        await app.asignal("fe", "b", None)
