"""KeyboardInterrupt or SystemExit raised by a workflow's own code, between steps or in
a for_each item (a step's own exit: tests/test_retry_walk43.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tether
from tether import App, RunStatus, StepStatus, Workflow

from ._env import child_pythonpath

_EXITS = """
import sys, tether
app = tether.App(sys.argv[1])
ledger = open(sys.argv[2], "a")

def note(what):
    ledger.write(what + "\\n")
    ledger.flush()
    return what

@app.workflow(name="exits")
async def flow(wf: tether.Workflow) -> str:
    async def item(i):
        await wf.step(f"item-{{i}}", lambda: note(f"item-{{i}}"))
        if i == 1 and sys.argv[3] == "exit":
            raise {exc}
        return i

    await wf.step("a", lambda: note("a"))
    if sys.argv[3] == "exit" and {between}:
        raise {exc}
    await wf.for_each([0, 1], item, max_parallel=1)
    return await wf.step("b", lambda: note("b"))

try:
    print("result", app.run(flow, workflow_id="w").value, flush=True)
except BaseException as e:
    print("raised", type(e).__name__, flush=True)
    raise
"""


def _script(
    tmp_path: Path, database_url: str, mode: str, **fill: str
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "exits.py"
    script.write_text(_EXITS.format(**fill))
    return subprocess.run(
        [sys.executable, str(script), database_url, str(tmp_path / "ledger"), mode],
        env={**os.environ, "PYTHONPATH": child_pythonpath()},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("between", ["True", "False"], ids=["between-steps", "in-an-item"])
@pytest.mark.parametrize("exc", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_workflow_code_raising_an_exit_ends_the_process_and_the_run_goes_on(
    database_url: str, tmp_path: Path, exc: str, between: str
) -> None:
    """Before, the exit ended the App's event loop under the run: app.run waited for
    good, and SIGTERM did not stop it either (the child never exited)."""
    done = _script(tmp_path, database_url, "exit", exc=exc, between=between)
    name = exc.split("(")[0]
    assert f"raised {name}" in done.stdout, done.stdout + done.stderr
    assert done.returncode == (3 if name == "SystemExit" else -2), done.stderr
    assert "the workflow's code raised" in done.stderr  # said, as the exit passes
    again = _script(tmp_path, database_url, "run", exc=exc, between=between)
    assert "result b" in again.stdout, again.stdout + again.stderr
    ran = (tmp_path / "ledger").read_text().split()
    # nothing recorded ran twice: the run went on from its last recorded step
    first = ["a"] if between == "True" else ["a", "item-0", "item-1"]
    assert ran == [*first, *[s for s in ["item-0", "item-1"] if s not in first], "b"]


async def test_arun_raises_step_exited_naming_no_step(app: App) -> None:
    """The async API raises `tether.StepExited` (step None) for an exit raised by the
    workflow's own code; the step before it stays recorded, the run not failed."""

    @app.workflow(name="exits-body")
    async def flow(wf: Workflow) -> None:
        await wf.step("s", lambda: 1)
        raise SystemExit(4)

    with pytest.raises(tether.StepExited) as caught:
        await app.arun(flow, workflow_id="wb")
    assert isinstance(caught.value.exit, SystemExit) and caught.value.step is None
    assert "the workflow's code raised SystemExit(4)" in str(caught.value)
    rec = await app.aget_record("wb")
    assert rec.steps["s"].status is StepStatus.COMPLETED
    assert rec.status is not RunStatus.FAILED and rec.last_error is None
