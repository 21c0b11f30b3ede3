"""`tether runs cancel` from another process stops a long async step of the run, in a
process driving it with `app.run` and in a worker: real processes, a ledger file
outside tether's database. Before, both waited for the step (an hour here)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import App, RunStatus
from tether.testing import eventually_sync

MODULE = """
import asyncio, os
from tether import App, Workflow

LEDGER = os.environ["LEDGER"]
app = App(os.environ["TETHER_URL"])


def note(line: str) -> None:
    with open(LEDGER, "a") as f:
        f.write(line + "\\n")


async def held() -> str:
    note("held")
    try:
        await asyncio.sleep(3600)  # an agent's long call
    except asyncio.CancelledError:
        note("stopped")
        raise
    return "done"


@app.workflow()
async def long_call(wf: Workflow) -> str:
    await wf.step("first", lambda: note("first"))
    await wf.step("held", held)
    await wf.step("after", lambda: note("after"))
    return "ok"
"""

DRIVE = """
import m
print(m.app.run(m.long_call, workflow_id="w").status.value, flush=True)
m.app.close()
"""

WORK = """
import asyncio, m
from tether.worker import Worker

m.app.submit(m.long_call, workflow_id="w")

async def main() -> None:
    worker = Worker(m.app, poll_interval=0.05, maintenance_interval=0.2)
    async def stop_when_cancelled() -> None:
        while (await m.app.aget_run("w")).status.value != "cancelled" or "stopped" not in \\
                open(m.LEDGER).read():
            await asyncio.sleep(0.05)
        worker.stop()
    asyncio.ensure_future(stop_when_cancelled())
    await worker.run()

asyncio.run(main())
print("served", flush=True)
"""


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("script", [DRIVE, WORK], ids=["app-run", "worker"])
def test_a_cancel_from_the_cli_stops_the_long_step_of_another_process(
    tmp_path: Path, database_url: str, script: str
) -> None:
    (tmp_path / "m.py").write_text(MODULE)
    ledger = tmp_path / "ledger"
    env = {**os.environ, "LEDGER": str(ledger), "TETHER_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        eventually_sync(lambda: "held" in _ledger(ledger), timeout=60)
        cancel = subprocess.run(
            [sys.executable, "-c", "from tether.cli import main; main()",
             "runs", "cancel", "w", "--db", database_url],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cancel.returncode == 0, cancel.stderr
        out, err = driver.communicate(timeout=120)  # before: an hour
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    assert out.split() == (["cancelled"] if script is DRIVE else ["served"])
    assert _ledger(ledger) == ["first", "held", "stopped"]  # the step stopped; no "after"
    with App(database_url) as app:
        rec = app.get_record("w")
    assert rec.status is RunStatus.CANCELLED
    error = rec.steps["held"].error
    assert rec.steps["held"].status.value == "failed" and error is not None
    assert "by the cancel" in error.message
