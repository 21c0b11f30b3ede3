"""A parent awaiting a child, its process killed with SIGKILL mid-step in the child, is
resumed by another process: the same child goes on (no second child run) and the
parent gets its result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tether.testing import eventually_sync

from ._env import child_pythonpath

FLOWS = textwrap.dedent(
    """
    import os, time
    import tether

    app = tether.App(os.environ["URL"])

    @app.workflow(name="kid", version="1")
    async def kid(wf: tether.Workflow, n: int) -> int:
        def slow() -> int:
            with open(os.environ["EFFECTS"], "a") as f:
                f.write("kid\\n")
            if os.environ.get("MARK"):
                open(os.environ["MARK"], "w").close()
                time.sleep(600)  # killed here, mid-step
            return n * 2
        return await wf.step("slow", slow)

    @app.workflow(name="parent", version="1")
    async def parent(wf: tether.Workflow) -> int:
        return await wf.child(kid, 21) + 1
    """
)

RESUME = "import flows\nr = flows.app.resume('par')\nprint(r.record.status.value, r.value)\n"
RUN = "import flows\nflows.app.run(flows.parent, workflow_id='par')\n"
LIST = (
    "import flows\nprint(sorted((r.workflow_id, r.status.value) for r in flows.app.list_runs()))\n"
)


def test_parent_of_a_child_killed_mid_step_is_resumed(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    mark, effects = tmp_path / "in-kid", tmp_path / "effects.log"
    env = {
        **os.environ,
        "URL": database_url,
        "EFFECTS": str(effects),
        "PYTHONPATH": child_pythonpath(tmp_path),
    }
    with (tmp_path / "first.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN], env={**env, "MARK": str(mark)}, cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        eventually_sync(lambda: mark.exists() or proc.poll() is not None, timeout=60)
        assert mark.exists(), (tmp_path / "first.log").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def run(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run(RESUME) == "completed 43"
    assert run(LIST) == str([("par", "completed"), ("par/kid#1", "completed")])
    assert effects.read_text().splitlines() == ["kid", "kid"]  # the cut-off step, once more
