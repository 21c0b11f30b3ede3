"""`tether runs signal` to a run that takes the signal without being parked."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from tether import App, RunStatus, Workflow

from ._helpers import tether


async def test_a_signal_a_running_run_takes_is_not_said_kept(tmp_path: Path) -> None:
    """One item of a for_each waits for 'go' while another runs a step: the run is
    running, not parked, and its wait takes the signal. Before, the command said the
    signal was kept until the run waits for 'go' (`App.signal` answers False for both)."""
    app = App(f"sqlite:///{tmp_path}/t.db")
    entered, gate = threading.Event(), threading.Event()

    def hold() -> str:
        entered.set()
        gate.wait(60)
        return "held"

    @app.workflow
    async def both(wf: Workflow) -> list[Any]:
        async def item(i: int) -> Any:
            if i == 0:
                return await wf.wait_for_signal("go")
            return await wf.step("hold", hold)

        done = await wf.for_each([0, 1], item, max_parallel=2)
        return [r.value for r in done.results]

    try:
        await app.astart(both, workflow_id="fe")
        assert await asyncio.to_thread(entered.wait, 60)
        assert (await app.aget_run("fe")).status is RunStatus.RUNNING
        sent = await asyncio.to_thread(
            tether, tmp_path, "runs", "signal", "fe", "go", "--payload", "1"
        )
        assert sent.returncode == 0, sent.stderr
        assert "kept" not in sent.stdout
        assert "signal 'go' answered fe's wait signal:go[0]#1" in sent.stdout
        gate.set()
        assert (await app.aresult("fe", timeout=30)).value == [1, "held"]
    finally:
        gate.set()
        await app.aclose()
