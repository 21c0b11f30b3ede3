"""A run whose process was killed mid-step, then cancelled with compensation and
compensated by another process: the dead process's step in the record, and the
compensations. A real process, killed by SIGKILL while its step blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests._killed import killed_once_marked
from tether import App, FakeClock, RunStatus, Workflow

NAME = "undo-after-death"

SCRIPT = textwrap.dedent(
    f"""
    import asyncio, sys
    import tether

    url, marker = sys.argv[1], sys.argv[2]
    app = tether.App(url, clock=tether.FakeClock())

    async def hang() -> int:
        open(marker, "w").close()
        await asyncio.Event().wait()  # never set: the parent kills us here, mid-step
        return 1

    @app.workflow(name={NAME!r})
    async def flow(wf: tether.Workflow) -> str:
        await wf.step("book", lambda: "booked", compensate=lambda: None)
        await wf.step("blocked", hang)
        return "done"

    app.run(flow, workflow_id="w")
    """
)


def _register(app: App, undone: list[str]) -> object:
    async def never() -> int:
        raise AssertionError("the compensating replay ran the unfinished step again")

    @app.workflow(name=NAME)
    async def flow(wf: Workflow) -> str:
        await wf.step("book", lambda: "booked", compensate=lambda v: undone.append(v))
        await wf.step("blocked", never)
        return "done"

    return flow


async def _killed_mid_step(tmp_path: Path, database_url: str) -> None:
    """Run "w" in a child process until its step "blocked" runs, then SIGKILL it."""
    script, marker = tmp_path / "child.py", tmp_path / "in-step"
    script.write_text(SCRIPT)
    await killed_once_marked(script, marker, database_url, str(marker))


async def test_a_dead_processes_step_is_recorded_cut_short_when_another_compensates(
    app: App, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Before, the compensating process undid "book" but left "blocked" `running` in
    the record of the compensated run for good: nothing closed what the dead one left."""
    await _killed_mid_step(tmp_path, database_url)
    undone: list[str] = []
    flow = _register(app, undone)
    assert (await app.aget_record("w")).steps["blocked"].status.value == "running"

    assert await app.acancel("w", "stop", compensate=True) == ["w"]
    await app.arun(flow, workflow_id="w")  # type: ignore[arg-type]

    rec = await app.aget_record("w")
    assert rec.status is RunStatus.COMPENSATED
    assert undone == ["booked"]
    assert {k: s.status.value for k, s in rec.steps.items()} == {
        "book": "completed",
        "blocked": "failed",
        "compensate:book": "completed",
    }
    error = rec.steps["blocked"].error
    assert error is not None and "cut short" in error.message
    assert error.retryable is False
