"""A worker adopts the run of an owner process on this machine that was killed
(SIGKILL, a real process) at once, not when the dead owner's claim lapses; a run
whose owner lives is never taken."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import tether
from tests._killed import killed_once_marked
from tether import App, FakeClock, RunStatus, Workflow
from tether.store import NewEvent
from tether.worker import ServerlessHost, maintenance_tick

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import tether

    url, marker = sys.argv[1], sys.argv[2]
    app = tether.App(url, clock=tether.FakeClock())

    async def hang() -> int:
        open(marker, "w").close()
        await asyncio.Event().wait()  # never set: the test kills us here, mid-step
        return 1

    @app.workflow(name="dead-owner-flow")
    async def flow(wf: tether.Workflow) -> str:
        await wf.step("a", lambda: "a")
        await wf.step("blocked", hang)
        return "done"

    app.run(flow, workflow_id="w")
    """
)


def _register(app: App, calls: list[str]) -> None:
    @app.workflow(name="dead-owner-flow")
    async def flow(wf: Workflow) -> str:
        await wf.step("a", lambda: calls.append("a"))
        await wf.step("blocked", lambda: calls.append("blocked"))
        return "done"


async def test_a_worker_adopts_the_run_of_a_killed_owner_here_at_once(
    app: App, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Before, the orphans chore adopted nothing until the dead owner's claim lapsed."""
    script, marker = tmp_path / "child.py", tmp_path / "in-step"
    script.write_text(SCRIPT)
    await killed_once_marked(script, marker, database_url, str(marker))
    calls: list[str] = []
    _register(app, calls)
    live = f"{socket.gethostname()}:{os.getppid()}:x"  # our parent lives: never doubled
    await app.store.create_run(
        tether.store.NewRun(workflow_id="live", workflow_name="dead-owner-flow", state="null"),
        clock.now(),
    )
    await app.store.claim_run(
        "live", live, clock.now(), NewEvent("workflow.running"), lease=30,
        now=clock.store_time(),
    )  # fmt: skip
    killed = (await app.aget_run("w")).owner
    assert killed is not None  # (the clock is not advanced: both claims are live)

    assert (await maintenance_tick(app, "w1", orphan_queue="default")).orphans_adopted == ["w"]
    assert (await maintenance_tick(app, "w2", orphan_queue="default")).orphans_adopted == []
    assert (await ServerlessHost(app).aprocess_available_jobs(limit=5)).succeeded == 1

    result = await app.aresult("w", timeout=30)
    assert result.value == "done" and calls == ["blocked"]  # "a" was recorded before
    adopted = [e for e in result.record.events if e.type == "run.adopted"]
    assert len(adopted) == 1 and killed in (adopted[0].message or "")
    run = await app.aget_run("live")
    assert run.status is RunStatus.RUNNING and run.owner == live and run.queue is None
