"""Maintenance forgets the rows of processes gone for good (killed or stopped long ago)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tether
from tether import App, FakeClock
from tether.testing import eventually_sync
from tether.worker import Worker, maintenance_tick

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86400.0

# a process that announces itself (as a worker does) at T0, then waits to be killed
ANNOUNCER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime
    import tether

    url, ready, start = sys.argv[1:4]
    app = tether.App(url, clock=tether.FakeClock(datetime.fromisoformat(start)))

    @app.workflow(name="flow")
    async def flow(wf: tether.Workflow) -> int:
        return 1

    app.announce(["default"])
    open(ready, "w").close()
    time.sleep(600)
    """
)


def _killed_process(database_url: str, tmp_path: Path) -> None:
    """A real process that announced itself at T0 and was then SIGKILLed."""
    script, ready = tmp_path / "announcer.py", tmp_path / "ready"
    script.write_text(ANNOUNCER)
    proc = subprocess.Popen([sys.executable, str(script), database_url, str(ready), T0.isoformat()])
    try:
        eventually_sync(lambda: ready.exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, f"the announcer exited early ({proc.returncode})"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _app(database_url: str, clock: FakeClock) -> App:
    app = App(database_url, clock=clock)

    @app.workflow(name="flow")
    async def flow(wf: tether.Workflow) -> int:
        return 1

    return app


async def _holders(app: App) -> list[str]:
    return sorted(lock.holder for lock in await app.store.list_locks("process"))


async def test_processes_silent_past_the_bound_are_forgotten_the_live_one_kept(
    database_url: str, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    _killed_process(database_url, tmp_path)
    stopped = _app(database_url, clock)
    await stopped.aannounce()
    await stopped.aclose()  # a clean stop releases its row, at T0
    app = _app(database_url, clock)
    try:
        clock.advance(DAY)
        await app.aannounce(["default"])  # as the worker it is would
        tick = await maintenance_tick(app, "w1")
        assert tick.processes_forgotten == 0  # silent a day, not longer: kept
        assert len(await _holders(app)) == 3
        clock.advance(60)
        await app.aannounce(["default"])
        tick = await maintenance_tick(app, "w1")
        assert tick.processes_forgotten == 2
        assert await _holders(app) == await app.adrivers("flow")  # the live one only
        assert len(await _holders(app)) == 1
    finally:
        await app.aclose()


async def test_the_bound_is_configurable_and_checked(database_url: str) -> None:
    clock = FakeClock(T0)
    stopped = _app(database_url, clock)
    await stopped.aannounce()
    await stopped.aclose()
    app = _app(database_url, clock)
    try:
        clock.advance(3600)
        assert (await maintenance_tick(app, "w1")).processes_forgotten == 0
        tick = await maintenance_tick(app, "w1", forget_processes_after=600)
        assert tick.processes_forgotten == 1 and await _holders(app) == []
        with pytest.raises(tether.InvalidArgumentError, match="forget_processes_after"):
            await maintenance_tick(app, "w1", forget_processes_after=float("nan"))
        with pytest.raises(tether.InvalidArgumentError, match="forget_processes_after"):
            Worker(app, forget_processes_after=0)
        assert Worker(app, forget_processes_after=600).forget_processes_after == 600
    finally:
        await app.aclose()
