"""The progress of `tether run`, fed by the `on_event` hook of `App.arun`.

The hook is called on the App's loop thread after each committed event while
rich redraws from a thread of its own, so the counters sit behind a lock.
Steps answered from the record emit no events: they are not "run here".
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.text import Text

from ..record import RunRecord
from ..store import StepStatus

__all__ = ["Progress"]

_SHOWN = 4  # running step names listed before "and N more"


class Progress:
    """Counts step events; renders as a live line, or summarises once at the end."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.status = "starting"
        self.run_failed = False  # the workflow's failure was recorded: exit 1, not 2/3/4
        self._running: dict[str, None] = {}  # insertion-ordered set of step names
        self._stages: dict[str, tuple[str, float, str]] = {}  # id -> (status, fraction, note)
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._since = datetime.now(UTC)  # a step completed before it: by an earlier process

    def __call__(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        name = message or ""
        with self._lock:
            if type_ == "step.started":
                self._running[name] = None
            elif type_ == "step.completed":
                self._running.pop(name, None)
                self.done += 1
            elif type_ == "step.retrying":
                self._running.pop(name, None)
                self.retries += 1
            elif type_ == "step.failed":
                self._running.pop(name, None)
                self.failed += 1
            elif type_.startswith("stage."):
                self._stage(type_, message, detail)
            elif type_.startswith("workflow."):
                self.status = type_.removeprefix("workflow.")
                self.run_failed = self.run_failed or self.status == "failed"

    def _stage(self, type_: str, message: str | None, detail: Any) -> None:
        """A stage's bar: started, progressed, suspended, ended (lock held)."""
        sid = detail.get("stage") if isinstance(detail, dict) else None
        if not isinstance(sid, str):
            return
        status, fraction, note = self._stages.get(sid, ("running", 0.0, ""))
        if type_ == "stage.started":
            status, fraction, note = "running", 0.0, ""
        elif type_ == "stage.progress":
            fraction, note = float(detail.get("fraction") or 0.0), message or ""
        elif type_ in ("stage.suspended", "stage.polled"):
            status, note = "suspended", "waiting for its batch"
        elif type_ in ("stage.completed", "stage.failed", "stage.cancelled"):
            status = type_.removeprefix("stage.")
            fraction = 1.0 if status == "completed" else fraction
        self._stages[sid] = (status, fraction, note)

    def stage_lines(self) -> list[Text]:
        """One bar per stage that has not ended (``extract  [#####     ] 50% fetching``)."""
        with self._lock:
            stages = [(k, v) for k, v in self._stages.items() if v[0] in ("running", "suspended")]
        lines = []
        for sid, (status, fraction, note) in stages:
            filled = round(fraction * 20)
            lines.append(
                Text.assemble(
                    (f"  {sid:<16} ", "bold"),
                    ("[" + "#" * filled + " " * (20 - filled) + "]", "cyan"),
                    f" {fraction:4.0%} ",
                    (status if status != "running" else "", "yellow"),
                    (f" {note}" if note else "", "dim"),
                )
            )
        return lines

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __rich__(self) -> Group:
        running = self.running
        with self._lock:
            line = Text.assemble(
                (self.workflow_id, "bold"),
                f"  {self.status}  ",
                ("done ", "dim"),
                (str(self.done), "green"),
                ("  running ", "dim"),
                (str(len(running)), "yellow"),
                ("  failed ", "dim"),
                (str(self.failed), "red"),
                ("  retried ", "dim"),
                str(self.retries),
                (f"  {self.elapsed():.1f}s", "dim"),
            )
        bars = self.stage_lines()
        if not running:
            return Group(line, *bars)
        names = ", ".join(running[:_SHOWN])
        if len(running) > _SHOWN:
            names += f" and {len(running) - _SHOWN} more"
        return Group(line, *bars, Text.assemble(("  now: ", "dim"), names))

    def summary(self, record: RunRecord) -> str:
        """One line for stderr: how the run ended and what this process did."""
        # by when they completed: the record also holds what no step event tells (a
        # mutex's release, the run's state), and a new run read "3 completed earlier"
        earlier = sum(
            1
            for s in record.steps.values()
            if s.status is StepStatus.COMPLETED
            and s.completed_at is not None
            and s.completed_at < self._since
        )
        parts = [f"{self.done} step(s) run here"]
        if earlier:
            parts.append(f"{earlier} completed earlier")
        if self.retries:
            parts.append(f"{self.retries} attempt(s) retried")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return (
            f"run {record.workflow_id} {record.status.value} after {self.elapsed():.1f}s: "
            + ", ".join(parts)
        )
