"""Runs whose owner process on this machine was killed (SIGKILL, a real process):
taken up at once rather than when the dead owner's claim lapses, and a compensation
cut mid-step by an App's close handed back at once."""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
from pathlib import Path

import tether
from tests._killed import killed_once_marked
from tether import App, FakeClock, RunStatus, Workflow
from tether.store import NewEvent
from tether.testing import eventually

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import tether

    url, marker, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    app = tether.App(url, clock=tether.FakeClock())

    async def hang() -> int:
        open(marker, "w").close()
        await asyncio.Event().wait()  # never set: the test kills us here, mid-step
        return 1

    @app.workflow(name="walk-flow")
    async def flow(wf: tether.Workflow) -> str:
        await wf.step("a", lambda: "a")
        await wf.step("blocked", hang)
        return "done"

    @app.workflow(name="walk-parent")
    async def parent(wf: tether.Workflow) -> str:
        return "parent of " + await wf.child(flow, workflow_id="kid")

    app.run(parent if mode == "parent" else flow, workflow_id="w")
    """
)


def _register(app: App) -> None:
    @app.workflow(name="walk-flow")
    async def flow(wf: Workflow) -> str:
        await wf.step("a", lambda: "a")
        await wf.step("blocked", lambda: 2)
        return "done"

    @app.workflow(name="walk-parent")
    async def parent(wf: Workflow) -> str:
        return "parent of " + await wf.child(flow, workflow_id="kid")


async def _killed_mid_step(tmp_path: Path, database_url: str, mode: str) -> None:
    """Run "w" in a child process until its step "blocked" runs, then SIGKILL it."""
    script, marker = tmp_path / "child.py", tmp_path / "in-step"
    script.write_text(SCRIPT)
    await killed_once_marked(script, marker, database_url, str(marker), mode)


async def _is(app: App, workflow_id: str, status: RunStatus) -> bool:
    return (await app.aget_run(workflow_id)).status is status


async def test_a_run_whose_owner_here_was_killed_is_recovered_at_once(
    app: App, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Before, `recover_orphans` returned [] until the dead owner's claim lapsed."""
    await _killed_mid_step(tmp_path, database_url, "flow")
    _register(app)
    live = f"{socket.gethostname()}:{os.getppid()}:x"  # our parent lives: never doubled
    await app.store.create_run(
        tether.store.NewRun(workflow_id="live", workflow_name="walk-flow", state="null"),
        clock.now(),
    )
    await app.store.claim_run(
        "live", live, clock.now(), NewEvent("workflow.running"), lease=30,
        now=clock.store_time(),
    )  # fmt: skip

    assert await app.arecover_orphans(grace=0) == ["w"]
    await eventually(lambda: _is(app, "w", RunStatus.COMPLETED), timeout=30)
    assert (await app.aresult("w")).value == "done"
    run = await app.aget_run("live")
    assert run.status is RunStatus.RUNNING and run.owner == live


async def test_a_child_finished_elsewhere_drives_its_parent_whose_owner_died(
    app: App, database_url: str, tmp_path: Path
) -> None:
    """Before, the parent stayed `running` under its dead owner until its claim lapsed."""
    await _killed_mid_step(tmp_path, database_url, "parent")
    _register(app)
    assert (await app.aresume("kid")).value == "done"
    await eventually(lambda: _is(app, "w", RunStatus.COMPLETED), timeout=30)
    assert (await app.aresult("w")).value == "parent of done"


async def test_a_plain_cancel_of_a_run_whose_owner_died_closes_its_steps(
    app: App, database_url: str, tmp_path: Path
) -> None:
    """Before, the step the dead owner left read `running` in the cancelled run for good."""
    await _killed_mid_step(tmp_path, database_url, "flow")
    _register(app)
    assert await app.acancel("w", "stop") == ["w"]
    assert await app.arecover_orphans(grace=0) == ["w"]

    async def closed() -> bool:
        return (await app.aget_record("w")).steps["blocked"].status.value == "failed"

    await eventually(closed, timeout=30)
    rec = await app.aget_record("w")
    assert rec.status is RunStatus.CANCELLED and rec.steps["a"].status.value == "completed"
    error = rec.steps["blocked"].error
    assert error is not None and "cut short" in error.message and error.retryable is False
    assert await app.arecover_orphans(grace=0) == []  # nothing left to do for it


async def test_a_compensation_cut_by_close_is_handed_back_at_once(
    database_url: str, clock: FakeClock
) -> None:
    """Before, the CancelledError skipped the hand-back: the run stayed claimed by the
    closed App until its claim lapsed."""
    app = App(database_url, clock=clock, shutdown_grace=0)
    undoing = asyncio.Event()

    async def undo(_: str) -> None:
        undoing.set()
        await asyncio.Event().wait()  # never set: the close cuts it

    @app.workflow(name="walk-undo")
    async def flow(wf: Workflow) -> str:
        await wf.step("book", lambda: "booked", compensate=undo)
        await wf.wait_for_signal("go")
        return "done"

    try:
        await app.astart(flow, workflow_id="u")
        await eventually(lambda: _is(app, "u", RunStatus.WAITING), timeout=30)
        await app.acancel("u", compensate=True)
        await asyncio.wait_for(undoing.wait(), 30)
    finally:
        await app.aclose()
    reader = App(database_url, clock=clock)
    try:
        run = await reader.store.get_run("u")
        events = [e.type for e in (await reader.aget_record("u")).events]
    finally:
        await reader.aclose()
    assert run is not None and run.status is RunStatus.CANCELLED
    assert run.owner_expires_at is None  # released, not held until it lapses
    assert events[-1] == "workflow.handed_back"
