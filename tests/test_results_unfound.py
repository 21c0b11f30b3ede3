"""A step result recorded with a class another process cannot import (one defined in a
script run as ``__main__``) reads back there as plain data: that is said, with the fix,
instead of surfacing later as ``'dict' object has no attribute ...``."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import App, RunStatus

SCRIPT = textwrap.dedent(
    """
    import sys

    from pydantic import BaseModel

    import tether

    class Outcome(BaseModel):
        company: str

    def build(url):
        app = tether.App(url)

        @app.workflow(name="applies")
        async def applies(wf: tether.Workflow) -> str:
            outcome = await wf.step("apply", lambda: Outcome(company="Acme"))
            await wf.wait_for_signal("go")
            return getattr(outcome, "company", "a " + type(outcome).__name__)

        return app, applies

    if __name__ == "__main__":
        app, applies = build(sys.argv[1])
        print(app.run(applies, workflow_id="a1").status.value)
        app.close()
    """
)


def test_a_class_of_a_script_run_as_main_is_named_where_it_reads_back_as_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    script = tmp_path / "applying.py"
    script.write_text(SCRIPT)
    first = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, timeout=60
    )
    assert first.stdout.strip() == "waiting", first.stderr

    spec = importlib.util.spec_from_file_location("applying_elsewhere", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app, applies = module.build(url)
    assert isinstance(app, App)
    try:
        with caplog.at_level(logging.WARNING, logger="tether"):
            app.signal("a1", "go")  # this process drives it on, from its record
            done = app.run(applies, workflow_id="a1")
    finally:
        app.close()
    assert done.status is RunStatus.COMPLETED and done.value == "a dict"
    said = [r.getMessage() for r in caplog.records if "reads back as plain data" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "Outcome" in said[0] and "__main__" in said[0] and "result_type=" in said[0]
