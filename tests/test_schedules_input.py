"""A schedule's input that cannot be stored fails when declared, not at every tick."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether import App, Workflow


@pytest.mark.parametrize("bad", [object(), float("nan")])
def test_an_input_that_cannot_be_stored_fails_when_declared(tmp_path: Any, bad: Any) -> None:
    """It was accepted; then every tick was logged and skipped, for good."""
    app = App(f"sqlite:///{tmp_path}/t.db")

    @app.workflow(name="w")
    async def w(wf: Workflow, x: Any) -> str:
        return "x"

    with pytest.raises(tether.NotSerializableError, match="the input of workflow 'w'"):
        app.schedule(w, cron="*/5 * * * *", input=bad)
    assert "w" not in app.schedules
    app.close()
