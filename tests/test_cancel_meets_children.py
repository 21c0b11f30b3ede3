"""Races of child runs and for_each items with a cancel of their parent, each forced by
holding a store verb until the other side ran (no sleeps)."""

from __future__ import annotations

from typing import Any

import pytest

from tether import App, RunStatus, Workflow


def _cancel_at_child_creation(
    app: App, monkeypatch: pytest.MonkeyPatch, child_id: str, *, before: bool
) -> list[str]:
    """Cancel run "p" while the child `child_id` is being created: just before its row
    is written (after its parent was read live) or just after (before the parent's wait
    for it is registered). The ids the cancel reached."""
    create = app.store.create_run
    reached: list[str] = []

    async def cancelling_create(run: Any, at: Any) -> Any:
        if run.workflow_id == child_id and before:
            reached.extend(await app.acancel("p"))
        out = await create(run, at)
        if run.workflow_id == child_id and not before:
            reached.extend(await app.acancel("p"))
        return out

    monkeypatch.setattr(app.store, "create_run", cancelling_create)
    return reached


@pytest.mark.parametrize("before", [True, False], ids=["before-its-row", "after-its-row"])
async def test_a_cancel_landing_as_a_child_is_created_cancels_the_child(
    app: App, monkeypatch: pytest.MonkeyPatch, before: bool
) -> None:
    """Before, the cancel reached only the children the run waited on: one created
    around it (its parent's wait then refused) stayed pending for good, and an App
    recovering orphans later ran it for a parent that was cancelled."""
    reached = _cancel_at_child_creation(app, monkeypatch, "p/kid", before=before)
    ran: list[str] = []

    async def kid(wf: Workflow) -> str:
        await wf.step("k", lambda: ran.append("k"))
        return "ok"

    async def parent(wf: Workflow) -> str:
        await wf.step("a", lambda: 1)
        return await wf.child(kid, workflow_id="p/kid")

    res = await app.arun(parent, workflow_id="p")
    assert reached == ["p"]  # the cancel did land there
    assert res.status is RunStatus.CANCELLED
    child = await app.store.get_run("p/kid")
    assert child is None or child.status is RunStatus.CANCELLED
    assert ran == []


@pytest.mark.parametrize("stop_on_error", [True, False])
async def test_a_cancel_landing_as_a_for_each_item_starts_leaves_no_child_pending(
    app: App, monkeypatch: pytest.MonkeyPatch, stop_on_error: bool
) -> None:
    """Item 1 starts its child as the cancel lands: no child is left pending (before,
    item 1's stayed pending, and without stop_on_error item 2 created one more for the
    cancelled run), and `app.run` answers the run cancelled. It raised the
    `RunCancelledError` (a CancelledError) the run's end met instead, which reads to
    the caller as a cancel of its own task."""
    reached = _cancel_at_child_creation(app, monkeypatch, "p/kid1", before=False)

    async def kid(wf: Workflow, i: int) -> int:
        await wf.step("k", lambda: i)
        return i

    async def parent(wf: Workflow) -> list[str]:
        async def item(i: int) -> int:
            return await wf.child(kid, i, workflow_id=f"p/kid{i}")

        summary = await wf.for_each([0, 1, 2], item, max_parallel=1, stop_on_error=stop_on_error)
        return [r.status.value for r in summary.results]

    res = await app.arun(parent, workflow_id="p")
    assert reached == ["p"]
    assert res.status is RunStatus.CANCELLED
    kids = [await app.store.get_run(f"p/kid{i}") for i in range(3)]
    assert kids[0] is not None and kids[0].status is RunStatus.COMPLETED  # ended before
    assert [k.status for k in kids[1:] if k is not None] == [RunStatus.CANCELLED]


@pytest.mark.parametrize("compensate", [True, False])
async def test_a_cancel_landing_as_the_run_returns_answers_cancelled(
    app: App, monkeypatch: pytest.MonkeyPatch, compensate: bool
) -> None:
    """The cancel lands after the run's code returned, before its end is written: the
    run ends cancelled (compensated once, if asked) and `app.run` says so. Before, it
    raised `RunCancelledError`, a CancelledError, out of `app.run`."""
    finish = app.store.finish_run
    undone: list[int] = []

    async def cancelling_finish(fence: Any, *args: Any, **kwargs: Any) -> Any:
        if fence.workflow_id == "p" and not fence.compensating:
            await app.acancel("p", compensate=compensate)
        return await finish(fence, *args, **kwargs)

    monkeypatch.setattr(app.store, "finish_run", cancelling_finish)

    async def parent(wf: Workflow) -> int:
        await wf.step("a", lambda: 1, compensate=undone.append)
        return 5

    res = await app.arun(parent, workflow_id="p")
    await app._runner.settle()
    assert res.status is (RunStatus.COMPENSATED if compensate else RunStatus.CANCELLED)
    assert undone == ([1] if compensate else [])
    assert (await app.aget_run("p")).status is res.status


async def test_a_compensating_replay_creates_no_child(app: App) -> None:
    """A run cancelled with compensation replays its code to learn its compensations:
    a for_each item whose child was never created (an earlier item's child still
    waited) created it in that replay, and it sat pending for good."""
    undone: list[int] = []

    async def kid(wf: Workflow, i: int) -> int:
        await wf.wait_for_signal("go")
        return i

    async def parent(wf: Workflow) -> list[str]:
        await wf.step("a", lambda: 1, compensate=undone.append)

        async def item(i: int) -> int:
            return await wf.child(kid, i, workflow_id=f"p/kid{i}")

        summary = await wf.for_each([0, 1], item, max_parallel=1, stop_on_error=False)
        return [r.status.value for r in summary.results]

    first = await app.arun(parent, workflow_id="p")
    assert first.status is RunStatus.WAITING  # on item 0's child; item 1 not started
    assert await app.acancel("p", compensate=True) == ["p", "p/kid0"]
    await app._runner.settle()
    assert (await app.aget_run("p")).status is RunStatus.COMPENSATED
    assert undone == [1]
    assert await app.store.get_run("p/kid1") is None
