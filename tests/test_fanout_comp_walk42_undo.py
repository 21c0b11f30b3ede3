"""Compensation walked as a user meets it: several undos after a late failure, an
undo that fails, a process SIGKILLed while undoing and the run resumed, a cancel
while undoing, and undos of steps run inside for_each items."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tests._killed import killed_once_marked
from tether import App, ForEachError, RunFinishedError, RunStatus, Workflow
from tether.testing import eventually

# the child's undo notes each value it undoes in the ledger, and is killed undoing argv[4]
UNDO_HEAD = textwrap.dedent(
    """
    import sys, time
    import tether

    url, ledger, marker, killed_in = sys.argv[1:5]
    app = tether.App(url, clock=tether.FakeClock())

    def undo(value: str) -> None:
        with open(ledger, "a") as f:
            f.write(value + "\\n")
        if value == killed_in:
            open(marker, "w").close()
            time.sleep(3600)  # the test kills us here
    """
)

KILLED = UNDO_HEAD + textwrap.dedent(
    """
    @app.workflow(name="comp42-killed")
    async def flow(wf: tether.Workflow) -> None:
        for name in ("a", "b", "c"):
            await wf.step(name, lambda name=name: name, compensate=undo)
        await wf.step("d", lambda: 1 / 0)

    app.run(flow, workflow_id="comp42-k")
    """
)


async def test_a_process_killed_while_undoing_leaves_the_rest_to_the_resume(
    app: App, database_url: str, tmp_path: Path
) -> None:
    """The undo recorded as done (c) is not run again; the one cut short (b) and the
    one not reached (a) run, newest first, and the run ends compensated."""
    script, ledger, marker = tmp_path / "undo.py", tmp_path / "ledger", tmp_path / "in-b"
    script.write_text(KILLED)
    await killed_once_marked(script, marker, database_url, str(ledger), str(marker), "b")
    assert ledger.read_text().split() == ["c", "b"]

    undone: list[str] = []

    @app.workflow(name="comp42-killed")
    async def flow(wf: Workflow) -> None:
        for name in ("a", "b", "c"):
            await wf.step(name, lambda name=name: name, compensate=undone.append)
        await wf.step("d", lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        await app.aresume("comp42-k")
    assert undone == ["b", "a"]
    run = await app.aget_run("comp42-k")
    assert run.status is RunStatus.COMPENSATED


async def test_a_failing_undo_does_not_stop_the_older_ones(app: App) -> None:
    undone: list[str] = []

    def undo(value: str) -> None:
        undone.append(value)
        if value == "b":
            raise ConnectionError("refund service down")

    @app.workflow(name="comp42-fails")
    async def flow(wf: Workflow) -> None:
        for name in ("a", "b", "c"):
            await wf.step(name, lambda name=name: name, compensate=undo)
        raise LookupError("late failure")

    with pytest.raises(LookupError, match="late failure"):
        await app.arun(flow, workflow_id="comp42-f")
    assert undone == ["c", "b", "a"]
    record = (await app.aresult("comp42-f")).record
    assert record.status is RunStatus.COMPENSATION_FAILED
    assert record.last_error is not None and record.last_error.type == "LookupError"


async def test_a_cancel_while_undoing_is_refused_and_undoes_nothing_twice(app: App) -> None:
    undone: list[str] = []
    in_undo, go_on = asyncio.Event(), asyncio.Event()

    async def undo(value: str) -> None:
        undone.append(value)
        if value == "b":
            in_undo.set()
            await go_on.wait()

    @app.workflow(name="comp42-cancel")
    async def flow(wf: Workflow) -> None:
        for name in ("a", "b", "c"):
            await wf.step(name, lambda name=name: name, compensate=undo)
        raise LookupError("late failure")

    task = asyncio.ensure_future(app.arun(flow, workflow_id="comp42-c"))
    await in_undo.wait()
    with pytest.raises(RunFinishedError):
        await app.acancel("comp42-c", "stop", compensate=True)
    go_on.set()
    with pytest.raises(LookupError):
        await task
    assert undone == ["c", "b", "a"]
    assert (await app.aget_run("comp42-c")).status is RunStatus.COMPENSATED


@pytest.mark.parametrize("stop_on_error", [True, False])
async def test_steps_inside_for_each_items_are_undone(app: App, stop_on_error: bool) -> None:
    """Each item's completed steps are undone (a failed item's too), newest first
    within an item, and a replay of the failed run undoes nothing again."""
    undone: list[str] = []

    @app.workflow(name="comp42-fan")
    async def flow(wf: Workflow) -> None:
        async def item(i: int) -> None:
            await wf.step("reserve", lambda: f"reserve{i}", compensate=undone.append)
            await wf.step("charge", lambda: f"charge{i}", compensate=undone.append)
            if i == 1:
                raise ValueError("item 1 fails")

        await wf.for_each([0, 1, 2], item, max_parallel=1, stop_on_error=stop_on_error)
        raise LookupError("after the fan-out")

    expected: type[Exception] = ForEachError if stop_on_error else LookupError
    with pytest.raises(expected):
        await app.arun(flow, workflow_id="comp42-fan")
    done = 2 if stop_on_error else 3
    assert sorted(undone) == sorted(f"{s}{i}" for i in range(done) for s in ("reserve", "charge"))
    for i in range(done):
        assert undone.index(f"charge{i}") < undone.index(f"reserve{i}")
    assert undone[:2] == [f"charge{done - 1}", f"reserve{done - 1}"]
    with pytest.raises(expected):
        await app.arun(flow, workflow_id="comp42-fan")
    assert len(undone) == 2 * done
    assert (await app.aget_run("comp42-fan")).status is RunStatus.COMPENSATED


async def test_a_cancel_with_compensation_mid_fan_out_undoes_the_items_done(app: App) -> None:
    undone: list[str] = []
    started = asyncio.Event()

    @app.workflow(name="comp42-fan-cancel")
    async def flow(wf: Workflow) -> None:
        async def item(i: int) -> None:
            await wf.step("book", lambda: f"book{i}", compensate=undone.append)
            if i == 2:
                started.set()
                await wf.wait_for_signal("never")

        await wf.for_each([0, 1, 2], item, max_parallel=1)

    await app.astart(flow, workflow_id="comp42-fc")
    await eventually(lambda: started.is_set())
    await app.acancel("comp42-fc", "stop", compensate=True)
    result = await app.aresult("comp42-fc", timeout=60)
    assert result.status is RunStatus.COMPENSATED
    assert undone == ["book2", "book1", "book0"]


async def test_an_undo_raising_cancelled_error_itself_fails_and_the_older_still_run(
    app: App,
) -> None:
    """Before, the CancelledError an undo raised itself (a library's, re-raised) ended
    the drive as a cancel: `a` was never undone, the run stayed running, and each
    resume met the same cancel."""
    undone: list[str] = []

    async def undo(value: str) -> None:
        undone.append(value)
        if value == "b":
            raise asyncio.CancelledError

    @app.workflow(name="comp42-own-cancel")
    async def flow(wf: Workflow) -> None:
        for name in ("a", "b", "c"):
            await wf.step(name, lambda name=name: name, compensate=undo)
        raise LookupError("late failure")

    with pytest.raises(LookupError):
        await app.arun(flow, workflow_id="comp42-oc")
    assert undone == ["c", "b", "a"]
    record = (await app.aresult("comp42-oc")).record
    assert record.status is RunStatus.COMPENSATION_FAILED
    failed = record.steps["compensate:b"].error
    assert failed is not None and failed.type == "CompensationCancelled"
    assert "raised asyncio.CancelledError though nothing cancelled it" in failed.message


KILLED_FAN = UNDO_HEAD + textwrap.dedent(
    """
    @app.workflow(name="comp42-fan-killed")
    async def flow(wf: tether.Workflow) -> None:
        async def item(i: int) -> None:
            await wf.step("book", lambda: f"book{i}", compensate=undo)

        await wf.for_each(range(4), item, max_parallel=4)
        await wf.step("pay", lambda: 1 / 0)

    app.run(flow, workflow_id="comp42-fk")
    """
)


async def test_a_process_killed_undoing_fan_out_items_is_finished_in_order(
    app: App, database_url: str, tmp_path: Path
) -> None:
    """Items completed at one (fake) instant are undone newest first by their recorded
    completion, before the kill and after the resume alike; none is undone twice."""
    script, ledger, marker = tmp_path / "fan.py", tmp_path / "ledger", tmp_path / "in-1"
    script.write_text(KILLED_FAN)
    await killed_once_marked(script, marker, database_url, str(ledger), str(marker), "book1")
    events = await app.store.list_events("comp42-fk")
    booked = [e.message for e in events if e.type == "step.completed" and e.message]
    newest_first = [f"book{key[-2]}" for key in reversed(booked) if key.startswith("book")]
    assert sorted(newest_first) == ["book0", "book1", "book2", "book3"]
    before = ledger.read_text().split()
    assert before == newest_first[: newest_first.index("book1") + 1]

    undone: list[str] = []

    @app.workflow(name="comp42-fan-killed")
    async def flow(wf: Workflow) -> None:
        async def item(i: int) -> None:
            await wf.step("book", lambda: f"book{i}", compensate=undone.append)

        await wf.for_each(range(4), item, max_parallel=4)
        await wf.step("pay", lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        await app.aresume("comp42-fk")
    assert undone == newest_first[len(before) - 1 :]  # book1 cut short, so again
    assert (await app.aget_run("comp42-fk")).status is RunStatus.COMPENSATED
