"""for_each items whose own code raises `asyncio.CancelledError` (a library's cancel,
re-raised): the item's failure, like any other error. The run used to take it for a
cancel of itself and stop where it was, left 'running' with no process behind it."""

from __future__ import annotations

import asyncio

import pytest

from tether import App, ForEachError, RunStatus, Workflow
from tether._fanout import ItemStatus


def _raises_cancel(i: int) -> int:
    if i == 1:
        raise asyncio.CancelledError("the HTTP client gave up")
    return i * 10


async def test_an_item_raising_cancelled_error_fails_the_run(app: App) -> None:
    async def flow(wf: Workflow) -> int:
        async def item(i: int) -> int:
            await wf.step("work", lambda: i)
            return _raises_cancel(i)

        return (await wf.for_each([0, 1, 2], item)).fulfilled

    with pytest.raises(ForEachError) as caught:
        await app.arun(flow, workflow_id="fe-raised-cancel")
    done, failed, skipped = caught.value.summary.results
    assert (done.status, failed.status, skipped.status) == (
        ItemStatus.FULFILLED, ItemStatus.REJECTED, ItemStatus.SKIPPED,
    )  # fmt: skip
    assert isinstance(failed.error, asyncio.CancelledError)
    assert "CancelledError: the HTTP client gave up" in str(caught.value)
    run = await app.aget_run("fe-raised-cancel")
    assert run.status is RunStatus.FAILED
    assert "the HTTP client gave up" in (run.error or "")


async def test_without_stop_on_error_the_other_items_go_on(app: App) -> None:
    async def flow(wf: Workflow) -> list[str]:
        summary = await wf.for_each(
            [0, 1, 2, 3], _raises_cancel, max_parallel=2, stop_on_error=False
        )
        return [r.status.value for r in summary.results]

    result = await app.arun(flow, workflow_id="fe-raised-cancel-go-on")
    assert result.value == ["fulfilled", "rejected", "fulfilled", "fulfilled"]
    assert result.record.status is RunStatus.COMPLETED


async def test_cancelling_the_run_still_stops_its_items(app: App) -> None:
    """A real cancel of the enclosing task (shutdown, a run's drive cancelled) is not
    an item's failure: it cancels the running items and the run's task, as before."""
    started: list[int] = []
    both = asyncio.Event()
    stopped: list[int] = []

    async def flow(wf: Workflow) -> None:
        async def item(i: int) -> None:
            started.append(i)
            if len(started) == 2:
                both.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopped.append(i)
                raise

        await wf.for_each([0, 1], item, max_parallel=2)

    drive = asyncio.ensure_future(app.arun(flow, workflow_id="fe-real-cancel"))
    await both.wait()
    drive.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drive
    assert sorted(stopped) == [0, 1]
