"""The live view of `tether top` and `tether runs watch`, ended cleanly by SIGTERM.

Tether's own SIGTERM handler (see `tether._loop`) raises SystemExit wherever the
main thread is: a second SIGTERM (`timeout` and then a supervisor) raised again
inside rich's `Live.stop`, so the last frame was never written to a pipe. Here a
SIGTERM only asks the loop to stop; it breaks into the wait between redraws,
never into a read or a redraw, and any SIGTERM after it is ignored.
"""

from __future__ import annotations

import signal
import time
from types import FrameType, TracebackType
from typing import Any

from rich.console import RenderableType
from rich.live import Live

from ._common import EXIT_TERMINATED, fail, out

__all__ = ["LiveView"]


class _Woken(BaseException):
    """Raised by the SIGTERM handler into `LiveView.wait` only, to cut its sleep short."""


class LiveView:
    """A non-transient `Live` on stdout whose redraw loop SIGTERM ends: the Live is
    stopped (its last frame stays on screen, or is printed once to a pipe), then the
    command exits 143 with one line on stderr; the caller's `finally` closes its App.
    Ctrl-C is left alone: it ends the command as it does everywhere (exit 130)."""

    def __init__(self, first: RenderableType) -> None:
        self._live = Live(first, console=out, refresh_per_second=4, transient=False)
        self._terminated = False
        self._sleeping = False
        self._before: Any = None

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        if self._terminated:
            return  # a second SIGTERM while stopping: the first one is being handled
        self._terminated = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # and so is any later one, to exit
        if self._sleeping:
            raise _Woken

    def __enter__(self) -> LiveView:
        self._before = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self._live.start(refresh=True)
        except BaseException:  # Ctrl-C in the first draw: rich stops a Live only on an
            try:  # Exception, and the terminal was left with its cursor hidden
                self._live.stop()
            finally:
                signal.signal(signal.SIGTERM, self._before)
            raise
        return self

    def wait(self, seconds: float) -> bool:
        """Sleep until the next redraw; False if SIGTERM came (the loop should end)."""
        try:
            try:
                self._sleeping = not self._terminated
                if self._sleeping:
                    time.sleep(seconds)
            finally:
                self._sleeping = False
        except _Woken:
            pass
        return not self._terminated

    def update(self, view: RenderableType) -> None:
        self._live.update(view)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._live.stop()
            if not out.is_terminal:  # rich ends the frame it prints to a pipe without one:
                out.line()  # its last line, the run's last event, was lost to `read`
        finally:
            if not self._terminated:
                signal.signal(signal.SIGTERM, self._before)
        if self._terminated and (exc_type is None or not issubclass(exc_type, KeyboardInterrupt)):
            fail(EXIT_TERMINATED, "stopped by SIGTERM")
