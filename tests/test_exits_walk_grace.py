"""A caller waiting on a run when the App closes gets the run as it stands.

Whether the step in flight finishes within the grace period or not, the run is
handed back, and `app.run` / `await app.arun` return it (status pending), not
a bare CancelledError that says nothing when the grace period ran out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tether import App, RunStatus, Workflow


@dataclass
class Held:
    """An App with no grace period, and a workflow whose first step holds until released."""

    app: App
    workflow: Callable[[Workflow], Awaitable[str]]
    started: threading.Event


@pytest.fixture
def held(database_url: str) -> Iterator[Held]:
    app = App(database_url, shutdown_grace=0)
    started, release = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        release.wait(60)
        return "held"

    @app.workflow(name="held")
    async def workflow(wf: Workflow) -> str:
        await wf.step("hold", hold)
        await wf.step("after", lambda: "after")
        return "done"

    yield Held(app, workflow, started)
    release.set()


def test_app_run_returns_the_handed_back_run_when_the_grace_period_runs_out(
    held: Held,
) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(held.app.run, held.workflow, workflow_id="h1")
        assert held.started.wait(60)
        held.app.close()  # from another thread, as a signal handler of the program's own
        result = waiting.result(timeout=60)
    assert result.status is RunStatus.PENDING
    handed = [e for e in result.record.events if e.type == "workflow.handed_back"]
    assert [e.message for e in handed] == ["interrupted step: hold"]


async def test_arun_returns_the_handed_back_run_when_the_grace_period_runs_out(
    held: Held,
) -> None:
    waiting = asyncio.ensure_future(held.app.arun(held.workflow, workflow_id="h2"))
    assert await asyncio.to_thread(held.started.wait, 60)
    await held.app.aclose()
    result = await waiting
    assert result.status is RunStatus.PENDING
    assert result.record.steps["hold"].status.value == "running"  # cut off: runs again
    assert "after" not in result.record.steps
