"""A new user's walk through README.md: `tether run` of a run that had already failed
names the command that retries it after a fix, and that command, as written with its
placeholders filled in, works (before: it lacked `--app`, which `runs rerun` requires,
so the command the error gave failed with exit 2)."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

from .cli._helpers import tether

FLOWS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App()

    @app.workflow(name="report")
    async def report(wf: tether.Workflow) -> str:
        def parse() -> str:
            if os.path.exists("broken"):
                raise RuntimeError("the parser is broken")
            return "parsed"

        return await wf.step("parse", parse)
    """
)


def test_the_rerun_a_failed_run_names_is_a_command_that_works(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "broken").write_text("")
    first = tether(tmp_path, "run", "flows.py:report", "--id", "r1")
    assert first.returncode == 1, first.stderr
    again = tether(tmp_path, "run", "flows.py:report", "--id", "r1")
    assert again.returncode == 1, again.stderr
    hint = re.search(r"`(tether runs rerun [^`]*)`", again.stderr)
    assert hint, again.stderr
    (tmp_path / "broken").unlink()  # the fix
    words = [
        {"STEP": "parse", "FILE.py:APP": "flows.py:app"}.get(w, w) for w in shlex.split(hint[1])[1:]
    ]
    rerun = tether(tmp_path, *words)
    assert rerun.returncode == 0, (hint[1], rerun.stderr)
    assert '"result": "parsed"' in rerun.stdout
