"""`tether top` and `tether runs watch` used as a new user would: a --rows no database
can hold, an event message of many lines, Ctrl-C in the live view's first draw."""

from __future__ import annotations

import os
import pty
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console, ConsoleOptions, RenderResult

import tether
from tether import App
from tether.cli._common import out
from tether.cli._live import LiveView

from ._helpers import create
from ._helpers import tether as run_tether

_HIDE_CURSOR, _SHOW_CURSOR = b"\x1b[?25l", b"\x1b[?25h"


@pytest.mark.parametrize("rows", ["99999999999999999999", "1001"])
def test_top_rows_beyond_a_screen_are_a_usage_error(
    tmp_path: Path, database_url: str, rows: str
) -> None:
    # before: a traceback (SQLite: OverflowError) or "bigint out of range", exit 4
    shown = run_tether(tmp_path, "top", "--once", "--rows", rows, db=create(database_url))
    assert shown.returncode == 2, shown.stderr
    assert "--rows must be from 1 to 1000" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_watch_shows_each_latest_event_on_one_line(tmp_path: Path) -> None:
    # before: a failure's message of many lines was printed whole, ~60 lines for one event
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)

    @app.workflow(name="loud")
    async def loud(wf: tether.Workflow) -> None:
        await wf.step("two\nlines", lambda: 1)
        raise RuntimeError("line\n" * 50 + "x" * 500)

    with pytest.raises(RuntimeError):
        app.run(loud, workflow_id="loud-1")
    app.close()

    shown = run_tether(tmp_path, "runs", "watch", "loud-1", "--once", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    *_, started, completed, failed = shown.stdout.splitlines()
    assert [started, completed] == [
        "  2 step.started two\\nlines",
        "  3 step.completed two\\nlines",
    ]
    assert failed.startswith("  4 workflow.failed RuntimeError: line\\nline\\n")
    assert failed.endswith("…")
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())


class _InterruptedOnce:
    """A frame whose first draw is cut short by Ctrl-C, as a KeyboardInterrupt lands."""

    def __init__(self) -> None:
        self.draws = 0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        self.draws += 1
        if self.draws == 1:
            raise KeyboardInterrupt
        yield "the last frame"


def _read_all(main: int) -> bytes:
    """Everything the closed slave side wrote: a pty hands it over in chunks, and one
    read may return only the first."""
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the slave is closed and everything is read
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_ctrl_c_in_the_first_draw_gives_the_terminal_its_cursor_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # before: rich stops a Live whose first draw raised an Exception, not a
    # KeyboardInterrupt: the command exited 130 with the terminal's cursor hidden
    main, child = pty.openpty()
    terminal = os.fdopen(child, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(out, "is_interactive", True)  # as on a terminal from the start
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt), LiveView(_InterruptedOnce()):
            pass
        terminal.close()  # the slave's last close: what was written is all readable
        written = _read_all(main)
    finally:
        if not terminal.closed:
            terminal.close()
        os.close(main)
    assert _HIDE_CURSOR in written and written.rstrip().endswith(_SHOW_CURSOR), written
    assert b"the last frame" in written
    assert signal.getsignal(signal.SIGTERM) == before
