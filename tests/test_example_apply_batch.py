"""examples/apply_batch.py stopped with Ctrl-C mid-run says how to resume it, and the
command it names finishes the run in another process (real processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ._env import child_pythonpath

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "apply_batch.py"
TETHER = str(Path(sys.executable).with_name("tether"))

# Loads the example as a module of another name (as `python examples/apply_batch.py`
# loads it as __main__, a name no resuming process shares) with an adapter that
# says "ready" on its second application and then waits for a line on stdin.
HARNESS = """
import asyncio, runpy, sys
sys.argv = ["examples/apply_batch.py", "--fresh"]
demo = runpy.run_path("examples/apply_batch.py", run_name="apply_batch_interrupted")
calls = []

async def gated(job, ctx):
    calls.append(job)
    if len(calls) == 2:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return demo["Outcome"](outcome="APPLIED", company=job.company, role=job.role, attempt=1)

demo["main"].__globals__["apply_with_agent"] = gated
demo["main"]()
"""


def test_ctrl_c_names_the_command_that_resumes_the_run_and_it_does(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "apply_batch.py")
    (tmp_path / "harness.py").write_text(HARNESS)
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env["PYTHONPATH"] = child_pythonpath()
    child = subprocess.Popen(
        [sys.executable, "harness.py"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate("go\n", timeout=60)  # the step in flight finishes
    assert child.returncode == 130, err
    assert "Traceback" not in err
    resume = err.split("`")[1]
    assert resume.startswith("tether run examples/apply_batch.py:apply_batch --id apply-batch-")

    done = subprocess.run(
        [TETHER, *resume.split()[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"applied": 4, "duplicates": 1, "failed": 0}
