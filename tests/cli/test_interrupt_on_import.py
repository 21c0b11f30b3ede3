"""Ctrl-C while `tether` imports the user's module: exit 130 and one line, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ._helpers import TETHER

_SLOW_IMPORT = """
import pathlib, threading
pathlib.Path("importing").write_text("started")
threading.Event().wait()  # until Ctrl-C
"""


@pytest.mark.parametrize(
    "args", [("run", "slow.py:main"), ("run", "slow:main"), ("worker", "--app", "slow:app")]
)
def test_ctrl_c_while_the_module_imports_exits_130_with_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "slow.py").write_text(_SLOW_IMPORT)
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = subprocess.Popen(
        [TETHER, "--db", f"sqlite:///{tmp_path}/t.db", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "importing").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # polls for the gate; the signal is not timed by a sleep
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "error: interrupted" and stdout == ""
