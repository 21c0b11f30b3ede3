"""The warning at exit about sync steps still running points to what a user can do.

A program exits while a sync step runs past the App's grace period: the step
is abandoned (its run resumes from the last completed step) and a warning says
so. It used to advise calling ``StepThreads.shutdown(wait=True)``, an internal
API; it names ``App(shutdown_grace=...)`` and closing the App before exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent(
    """
    import sys
    import threading

    from tether import App, FakeClock, Workflow

    app = App(sys.argv[1], clock=FakeClock(), shutdown_grace=0)
    started, never = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        never.wait()  # still running when the interpreter exits
        return "done"

    @app.workflow(name="stuck")
    async def workflow(wf: Workflow) -> str:
        return await wf.step("stuck", stuck)

    app.start(workflow, workflow_id="s1")
    assert started.wait(60)
    print("exiting", flush=True)
    """
)


def test_the_exit_warning_names_the_grace_period_not_an_internal_api(tmp_path: Path) -> None:
    # the child inherits this environment: a PYTHONPATH naming another tether `src` too
    url = f"sqlite:///{tmp_path}/tether.db"
    cmd = [sys.executable, "-c", PROGRAM, url]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exiting\n"
    assert "1 sync step(s) still running at interpreter exit were abandoned" in done.stderr
    assert "App(shutdown_grace=<seconds>)" in done.stderr
    assert "call app.close() before the program exits" in done.stderr
    assert "StepThreads" not in done.stderr
