"""Two worker processes started with one `worker_id` (a copy-pasted config, a container
restarted while its old instance still runs) shared their job leases and chores: each
renewed, released and reaped the other's jobs as its own. The second is refused at start
while the first lives; once the first is dead its id is free again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests._env import child_pythonpath
from tether import App
from tether.testing import eventually

CHILD = """
import sys
from tether import App, Workflow
from tether.worker import Worker

app = App(sys.argv[1])

@app.workflow(name="noop")
async def noop(wf: Workflow) -> None:
    return None

Worker(app, worker_id="w1", poll_interval=0.05, maintenance_interval=600).serve()
"""


def _start(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    script = tmp_path / "worker_w1.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": child_pythonpath(tmp_path)}
    return subprocess.Popen(
        [sys.executable, str(script), url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _holder(app: App, scope: str = "worker", key: str = "w1") -> str | None:
    """Who holds `key` of `scope` now ("process": the live processes, by owner)."""
    now = app.clock.store_time()
    for row in await app.store.list_locks(scope):
        live = row.released_at is None and (now is None or row.expires_at > now)
        if (scope == "process" or row.key == key) and live:
            return row.holder
    return None


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


async def test_a_second_worker_of_a_live_workers_id_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    app = App(database_url)
    await app.store.open()
    first = _start(tmp_path, database_url)
    try:
        serving = await eventually(lambda: _holder(app, "process"), timeout=60)
        assert f":{first.pid}:" in serving  # announced: it serves, its id held
        second = _start(tmp_path, database_url)
        try:  # before: it served on beside the first, sharing its jobs
            _, err = second.communicate(timeout=30)
        finally:
            _stop(second)
        assert second.returncode != 0
        assert "worker id 'w1' is in use by a live worker" in err
        assert f"pid {first.pid}" in err
        assert "leave it unset" in err
        assert first.poll() is None  # the first one serves on, holding its id
        held = await _holder(app)
        assert held is not None and f":{first.pid}:" in held
        # a dead worker's id is free: its process is gone (here, at once), or its lease lapsed
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = _start(tmp_path, database_url)
        try:

            async def taken_over() -> bool:
                assert third.poll() is None, third.communicate()[1]
                return f":{third.pid}:" in (await _holder(app) or "")

            await eventually(taken_over, timeout=60)
            third.send_signal(signal.SIGTERM)
            assert third.wait(timeout=60) == 0
            assert await _holder(app) is None  # released as it stopped
        finally:
            _stop(third)
    finally:
        _stop(first)
        await app.aclose()
