"""`tether run|submit --id`: a new run's id holding a control character is refused
(a newline split it over two rows of `runs list`, the second a blank run); a run of
such an id made through the API stays reachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import App

from ._helpers import tether


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_new_run_id_with_a_newline_is_refused(flow: Path, command: str) -> None:
    tmp = flow.parent
    done = tether(tmp, command, "flows.py:broken", "--id", "x\ny")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "--id 'x\\ny' contains a control character ('\\n')" in done.stderr
    listed = tether(tmp, "runs", "list")
    assert listed.stdout.strip() == "no runs", listed.stdout


def test_a_run_of_such_an_id_made_elsewhere_is_still_submitted_again(flow: Path) -> None:
    tmp = flow.parent
    app = App(f"sqlite:///{tmp}/t.db")

    @app.workflow(name="broken")
    async def broken(wf: object) -> None:
        return None

    app.submit(broken, workflow_id="x\ty")
    app.close()
    again = tether(tmp, "submit", "flows.py:broken", "--id", "x\ty")
    assert again.returncode == 0, again.stderr
    app = App(f"sqlite:///{tmp}/t.db")
    assert [r.workflow_id for r in app.list_runs()] == ["x\ty"]  # that run, not a new one
    app.close()
