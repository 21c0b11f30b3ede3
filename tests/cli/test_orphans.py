"""A run whose process was killed (SIGKILL) seen by the commands before its claim
lapses: they said it was running and driven by the dead process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tether import App
from tether.store import NewEvent, NewRun

from ._helpers import TETHER, tether

LONG = textwrap.dedent(
    """
    import os
    import time

    import tether

    app = tether.App(os.environ["FLOWS_DB"], owner_lease=600)  # a claim that outlives the test

    @app.workflow
    async def long(wf: tether.Workflow) -> str:
        for i in range(1000):
            await wf.step(f"s{i}", lambda: time.sleep(0.05))
        return "done"
    """
)


def _killed_mid_run(tmp: Path, run_id: str) -> int:
    """Start `tether run long` as a real process, SIGKILL it once two steps are
    recorded; its process id."""
    (tmp / "long.py").write_text(LONG)
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"FLOWS_DB": f"sqlite:///{tmp}/t.db"}
    proc = subprocess.Popen(
        [TETHER, "run", "long.py:long", "--id", run_id],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = tether(tmp, "runs", "show", run_id, "--json")
            if shown.returncode == 0 and "s1" in json.loads(shown.stdout)["steps"]:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    return proc.pid


def test_a_run_whose_process_was_killed_is_not_said_to_be_driven(tmp_path: Path) -> None:
    pid = _killed_mid_run(tmp_path, "orphan-1")
    shown = tether(tmp_path, "runs", "show", "orphan-1")
    assert shown.returncode == 0, shown.stderr
    facts = " ".join(shown.stdout.split())
    assert f"running (owner gone: its process {pid} on this machine has ended" in facts, facts
    assert "a resume here takes the run over now" in facts
    assert "driven by nobody: no live process drives workflow 'long'" in facts
    assert re.search(r"│ s\d+\s+│ interrupted\s+│", shown.stdout), shown.stdout  # not running
    listed = tether(tmp_path, "runs", "list", env={"COLUMNS": "100"})
    assert re.search(r"orphan-1 +│ long +│ running \(owner gone:", listed.stdout), listed.stdout
    top = tether(tmp_path, "top", "--once")
    assert top.returncode == 0, top.stderr
    assert "live processes  0  none" in top.stdout, top.stdout


def test_a_run_whose_claim_lapsed_keeps_its_id_in_a_terminal_wide_list(tmp_path: Path) -> None:
    # the status "running (owner gone since ...; a worker or the next run takes it
    # over)", 92 characters kept on one line, squeezed the id and workflow columns to
    # nothing at 100 columns
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)

    async def orphan() -> None:
        new = NewRun(workflow_id="ghost-run-7", workflow_name="nightly-report", state="null")
        await app.store.create_run(new, long_ago)
        await app.store.claim_run(
            "ghost-run-7", "elsewhere:1:x", long_ago, NewEvent("workflow.running"),
            lease=30, now=long_ago,
        )  # fmt: skip

    app.run_sync(orphan())
    app.close()
    listed = tether(tmp_path, "runs", "list", env={"COLUMNS": "100"})
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"│ ghost-run-7 +│ nightly-report +│ running \(owner", listed.stdout), (
        listed.stdout
    )
    assert max(len(line) for line in listed.stdout.splitlines()) <= 100
    status = [line.split("│")[3].strip() for line in listed.stdout.splitlines() if "│" in line]
    assert " ".join(status).startswith("running (owner gone since ")  # the rest: `runs show`


def test_the_json_says_the_owner_is_gone_when_its_process_was_killed(
    tmp_path: Path,
) -> None:
    # the table said "running (owner gone: its process ended)"; the JSON had no such flag
    _killed_mid_run(tmp_path, "orphan-j")
    app = App(f"sqlite:///{tmp_path}/t.db")
    app.run_sync(app.store.create_run(NewRun("waiting-j", "long", state="null"), datetime.now(UTC)))
    app.close()
    listed = tether(tmp_path, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["workflowId"]: r for r in json.loads(listed.stdout)}
    assert by_id["orphan-j"]["status"] == "running"
    assert by_id["orphan-j"]["ownerGone"] is True, by_id["orphan-j"]
    assert by_id["orphan-j"]["ownerGoneSince"] is None  # its claim has not lapsed yet
    assert by_id["waiting-j"]["ownerGone"] is False  # pending: nobody owns it, none is gone
    shown = tether(tmp_path, "runs", "show", "orphan-j", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["ownerGone"] is True
