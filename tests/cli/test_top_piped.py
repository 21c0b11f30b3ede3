"""`tether top` with stdout a pipe (`tether top | head`): one frame, then exit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tether import App

from ._helpers import TETHER
from ._helpers import tether as run_tether


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/t.db"
    App(url).close()  # a tether database with nothing in it yet
    with App(url) as app:

        @app.workflow(name="later")
        async def later(wf: object) -> None:
            return None

        app.submit(later, queue="nightly")
    return url


def test_top_into_a_pipe_prints_one_frame_and_exits(tmp_path: Path) -> None:
    # before: with no terminal, rich's live view printed nothing until it was stopped,
    # and nothing stopped it: `tether top | head` hung with an empty screen
    shown = run_tether(tmp_path, "top", db=_database(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "pending 1" in shown.stdout and "nightly" in shown.stdout
    assert shown.stdout.count("busiest queues") == 1


def test_top_piped_to_a_reader_that_leaves_early_exits_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = subprocess.Popen(
        [TETHER, "--db", _database(tmp_path), "top", "--rows", "1000"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # as `| head -1` reads its line and goes
    proc.stdout.close()
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert first.startswith(b"runs"), first
    assert code in (0, 141), (code, stderr)  # 141 if it was still writing: no message
    assert stderr == "", stderr
