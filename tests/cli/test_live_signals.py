"""SIGTERM ends `tether top` and `tether runs watch` cleanly: the live view's last frame
stays on the terminal, the cursor is given back, one line on stderr, exit 143.

Each command runs as a real process with its stdout on a pseudo-terminal (a pipe
gets no frame from rich until the view stops), against a real SQLite file.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
from pathlib import Path

import pytest

import tether
from tether import App
from tether.testing import eventually_sync

from .._env import child_pythonpath
from ._helpers import TETHER

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SHOW_CURSOR = "\x1b[?25h"  # what rich's Live writes last when it stops: the terminal is back


class _OnTerminal:
    """`tether ARGS` with stdout on a pseudo-terminal whose output is read as it comes."""

    def __init__(self, cwd: Path, url: str, *args: str) -> None:
        main, child = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
        env |= {"COLUMNS": "200", "LINES": "100", "PYTHONPATH": child_pythonpath()}
        self.proc = subprocess.Popen(
            [TETHER, "--db", url, *args], cwd=cwd, env=env, stdout=child,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        os.close(child)
        self.main = main
        self.seen = b""

    def read(self, wait: float = 0.0) -> bool:
        """Take what is there (within `wait` seconds); False at the end of the output."""
        if not select.select([self.main], [], [], wait)[0]:
            return True
        try:
            chunk = os.read(self.main, 65536)
        except OSError:  # EIO: the child's end is closed, every byte read
            return False
        self.seen += chunk
        return bool(chunk)

    def text(self, start: int = 0) -> str:
        return _ANSI.sub("", self.seen[start:].decode(errors="replace"))

    def shown(self, marker: str) -> bool:
        self.read()
        return marker in self.text()

    def finish(self) -> tuple[int, str]:
        """Read to the end of the output (the terminal is not left full, so the child is
        never blocked writing), then the exit code and stderr."""
        eventually_sync(lambda: not self.read(0.2), timeout=60)
        _, stderr = self.proc.communicate(timeout=60)
        os.close(self.main)
        return self.proc.returncode, stderr


def _terminated(screen: _OnTerminal, marker: str, signals: int) -> tuple[int, str, str]:
    """Wait for `marker` in the first frame, send `signals` SIGTERMs back to back; the exit
    code, what was written to the terminal after them (ANSI stripped), and stderr."""
    try:
        eventually_sync(lambda: screen.shown(marker), timeout=60)
        before = len(screen.seen)
        for _ in range(signals):
            screen.proc.send_signal(signal.SIGTERM)
        code, stderr = screen.finish()
    finally:
        if screen.proc.poll() is None:
            screen.proc.kill()
            screen.proc.wait()
    assert screen.seen.decode(errors="replace").rstrip("\r\n").endswith(_SHOW_CURSOR)
    return code, screen.text(before), stderr


def _waiting_run(tmp_path: Path) -> str:
    """A real SQLite file holding run `w1`, parked on a signal that never comes."""
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)

    @app.workflow(name="waits")
    async def waits(wf: tether.Workflow) -> object:
        await wf.step("prepare", lambda: 1)
        return await wf.wait_for_signal("go")

    app.run(waits, workflow_id="w1")
    app.close()
    return url


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "two-sigterms"])
def test_top_ends_on_sigterm_with_its_last_frame_and_exit_143(tmp_path: Path, signals: int) -> None:
    """Before: no word on stderr, and a second SIGTERM could cut the last frame."""
    url = _waiting_run(tmp_path)
    screen = _OnTerminal(tmp_path, url, "top", "--interval", "0.1")
    code, last, stderr = _terminated(screen, "busiest queues", signals)
    assert code == 143, stderr
    assert "waiting 1" in last and "most expensive unfinished runs" in last
    assert stderr.strip() == "error: stopped by SIGTERM"


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "two-sigterms"])
def test_watch_ends_on_sigterm_with_its_last_frame_and_exit_143(
    tmp_path: Path, signals: int
) -> None:
    url = _waiting_run(tmp_path)
    screen = _OnTerminal(tmp_path, url, "runs", "watch", "w1", "--interval", "0.1")
    code, last, stderr = _terminated(screen, "waiting on: signal:go#1", signals)
    assert code == 143, stderr
    assert "w1" in last and "prepare" in last and "waiting on: signal:go#1" in last
    assert stderr.strip() == "error: stopped by SIGTERM"
