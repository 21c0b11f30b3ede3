"""`tether runs retry-compensations`: an operator's second try at a failed undo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._helpers import tether

ORDER = """
import os
from pathlib import Path

from tether import App, Workflow

app = App(os.environ["FLOWS_DB"])
effects = Path(os.environ["EFFECTS"])


def note(line: str) -> None:
    with effects.open("a") as f:
        f.write(line + "\\n")


def refund(charge: str) -> None:
    note("refund " + charge)
    if not Path("refunds-up").exists():
        raise ConnectionError("refund service unavailable")


def ship() -> None:
    note("ship")
    raise ValueError("address rejected")


@app.workflow()
async def order(wf: Workflow) -> None:
    await wf.step("charge", lambda: "c1", compensate=refund)
    await wf.step("ship", ship)
"""


def test_a_failed_undo_is_tried_again_after_a_fix(tmp_path: Path) -> None:
    (tmp_path / "order.py").write_text(ORDER)
    app = f"{tmp_path / 'order.py'}:app"
    failed = tether(tmp_path, "run", f"{tmp_path / 'order.py'}:order", "--id", "o1")
    assert failed.returncode == 1, failed.stderr
    shown = tether(tmp_path, "runs", "show", "o1")
    assert "try those that failed again with `tether runs retry-compensations o1" in (shown.stderr)

    again = tether(tmp_path, "runs", "retry-compensations", "o1", "--app", app)
    assert again.returncode == 1, again.stderr
    assert json.loads(again.stdout)["status"] == "compensation_failed"
    assert "a compensation failed again" in again.stderr
    assert f"tether runs retry-compensations o1 --app {app}" in again.stderr

    (tmp_path / "refunds-up").touch()
    done = tether(tmp_path, "runs", "retry-compensations", "o1", "--app", app)
    assert done.returncode == 0, done.stderr
    assert "retry-compensations" not in tether(tmp_path, "runs", "show", "o1").stderr
    assert json.loads(done.stdout)["status"] == "compensated"
    effects = (tmp_path / "effects.log").read_text().splitlines()
    assert effects == ["ship", "refund c1", "refund c1", "refund c1"]  # never shipped twice
    events = tether(tmp_path, "runs", "events", "o1").stdout
    assert events.count("run.compensations_retried") == 2

    refused = tether(tmp_path, "runs", "retry-compensations", "o1", "--app", app)
    assert refused.returncode == 2
    assert "run 'o1' is compensated: every compensation it had ran" in refused.stderr
    missing = tether(tmp_path, "runs", "retry-compensations", "nope", "--app", app)
    assert missing.returncode == 3 and "no run with workflow id 'nope'" in missing.stderr


QUEUED = """
import asyncio, sys
sys.path.insert(0, ".")
import order
from tether.worker import ServerlessHost

async def main() -> None:
    wid = await order.app.asubmit(order.order, workflow_id="q1")
    await ServerlessHost(order.app).aprocess_available_jobs(limit=5)
    print((await order.app.aget_run(wid)).status.value)
    await order.app.aclose()

asyncio.run(main())
"""


def test_a_queued_run_is_handed_to_its_workers(tmp_path: Path) -> None:
    (tmp_path / "order.py").write_text(ORDER)
    env = {**os.environ, "FLOWS_DB": f"sqlite:///{tmp_path}/t.db"}
    env["EFFECTS"] = str(tmp_path / "effects.log")
    made = subprocess.run(
        [sys.executable, "-c", QUEUED], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert made.stdout.strip() == "compensation_failed", made.stderr
    app = f"{tmp_path / 'order.py'}:app"
    handed = tether(tmp_path, "runs", "retry-compensations", "q1", "--app", app)
    assert handed.returncode == 0, handed.stderr
    assert json.loads(handed.stdout)["status"] == "pending"
    assert "a worker of its queue runs its compensations" in handed.stderr
