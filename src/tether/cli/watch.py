"""`tether runs watch RUN_ID`: a live view of one run, redrawn from its record.

It reads the database (any process may be driving the run, or none), so it
works beside a worker or a `tether run` in another terminal. It ends when
the run ends, with the exit code of its status (0 completed, 1 failed or
cancelled), or at once with ``--once``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import click
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .._info import RunInfo
from ..ai import budget_stops
from ..app import App
from ..record import EventRecord, RunRecord
from ..store import RunStatus, StepStatus
from ._common import (
    EXIT_FAILED,
    CliState,
    db_state,
    guard,
    out,
    redraw_interval,
    text,
)
from ._db import read_app
from ._format import (
    cell,
    clip,
    cost_text,
    error_text,
    facts,
    row,
    status_text,
    step_status,
    table,
    ts,
    zoned,
)
from ._live import LiveView

__all__ = ["RunReader", "render_run", "watch"]

_STAGE_STYLE = {"completed": "green", "failed": "red", "cancelled": "red", "suspended": "yellow",
                "running": "cyan", "pending": "dim", "skipped": "dim"}  # fmt: skip


def _header(rec: RunRecord, now: datetime) -> Table:
    started = rec.started_at or rec.created_at
    ended = rec.finished_at or now
    usage = rec.usage.total if rec.usage is not None else None
    return facts(
        [
            ("run", rec.workflow_id),
            ("workflow", f"{rec.workflow_name}, attempt {rec.attempt}"),
            ("status", status_text(rec)),
            ("elapsed", f"{(ended - started).total_seconds():.1f}s"),
            ("AI cost", "" if usage is None else f"{cost_text(usage)} ({usage.calls} calls)"),
            ("last error", _one_line(error_text(rec.last_error))),
        ]
    )


def _one_line(message: str) -> str:
    """`message` on one line of text, cut short: a traceback or an HTTP body of many
    lines would fill the screen (`runs show` prints it whole)."""
    return clip(message.replace("\r", "\\r").replace("\n", "\\n"))


def _stages(rec: RunRecord) -> Table:
    t = table("stage", "status", "progress", "note", "seconds", "AI cost", words=True)
    t.title = "stages"
    for s in rec.stages:
        row(
            t,
            f"{s.group}. {s.id}",
            cell(s.status, style=_STAGE_STYLE.get(s.status, "")),
            ProgressBar(total=1.0, completed=s.progress or 0.0, width=20),
            s.progress_message or "",
            "" if s.seconds is None else f"{s.seconds:.2f}",
            cost_text(s.usage),
        )
    return t


def _steps(rec: RunRecord, last: int) -> Table:
    t = table("step", "status", "attempts", zoned("completed"), words=True)
    t.title = f"steps (last {min(last, len(rec.steps))} of {len(rec.steps)})"
    stopped = budget_stops(rec.events)
    for name, s in list(rec.steps.items())[-last:]:
        style = {StepStatus.COMPLETED: "green", StepStatus.FAILED: "red"}.get(s.status, "cyan")
        status = step_status(rec, s, stopped)
        style = "yellow" if status == "stopped" else style
        row(t, name, cell(status, style=style), str(s.attempts), ts(s.completed_at))
    return t


def render_run(rec: RunRecord, now: datetime, waits: list[str], last: int = 8) -> Group:
    """The watch view of `rec`: header, stages (a pipeline) or steps, open waits."""
    parts: list[object] = [_header(rec, now)]
    parts.append(_stages(rec) if rec.stages else _steps(rec, last))
    if waits:
        parts.append(Text.assemble(("waiting on: ", "bold"), ", ".join(waits)))
    parts += [_event_line(e) for e in rec.events[-3:]]
    return Group(*parts)  # type: ignore[arg-type]


def _event_line(e: EventRecord) -> Text:
    """One screen line per event, as the header's last error is cut short: a failure's
    message of many lines (a traceback, an HTTP body) filled the screen, and on a live
    terminal pushed the frame past its height, where rich cuts it off."""
    message = _one_line(e.message or "")
    line = cell(f"  {e.seq} {e.type} {message}".rstrip(), style="dim")
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


class RunReader:
    """What each redraw of `runs watch` reads. The whole record (every step and event)
    is read only when the run changed: a redraw first reads the run's row and its events
    past the last one seen (at most one), so a run that sits still, whatever its history,
    costs two small reads a redraw, not its history's. The row is read first: a run seen
    settled there has nothing left for the record to miss."""

    def __init__(self, app: App, workflow_id: str) -> None:
        self._app, self._wid = app, workflow_id
        self._row: RunInfo | None = None
        self._rec: RunRecord | None = None
        self._waits: list[str] = []

    def read(self) -> tuple[RunRecord, list[str], bool]:
        """The record, its open waits, and whether the run has settled."""
        app, wid = self._app, self._wid
        row: RunInfo = guard(lambda: app.get_run(wid))
        if self._rec is None or not self._same(row) or self._moved(self._rec):
            self._rec = guard(lambda: app.get_record(wid))
            self._waits = [w.key for w in guard(lambda: app.list_waits(wid))
                           if w.status.value == "pending"]  # fmt: skip
        elif row.owner_expires_at != self._rec.owner_expires_at:
            self._rec = replace(self._rec, owner_expires_at=row.owner_expires_at)
        self._row = row
        return self._rec, self._waits, row.settled

    def _same(self, row: RunInfo) -> bool:
        """Whether `row` is the row read before, but for a renewed claim: its owner's
        renewals (every few seconds of a long step) change nothing else, and read the
        whole record each time; the record takes the new expiry alone (the header says
        from it whether the owner is gone)."""
        seen = self._row
        return seen is not None and replace(row, owner_expires_at=seen.owner_expires_at) == seen

    def _moved(self, rec: RunRecord) -> bool:
        """Whether an event came after the record's last (a step, a wait, an end)."""
        seq = rec.events[-1].seq if rec.events else 0
        store = self._app.store
        newer = guard(lambda: self._app.run_sync(store.list_events(self._wid, after_seq=seq,
                                                                   limit=1)))  # fmt: skip
        return bool(newer)


@click.command("watch", short_help="A live view of one run until it ends.")
@click.argument("workflow_id", metavar="RUN_ID")
@click.option("--interval", default=0.5, show_default=True, type=float,
              help="Seconds between redraws.")  # fmt: skip
@click.option("--once", is_flag=True, help="Draw once and exit (0 whatever the status).")
@db_state
def watch(state: CliState, workflow_id: str, interval: float, once: bool) -> None:
    """Watch RUN_ID live: its stages with progress bars (or its latest steps), the waits
    it is parked on, its cost and its latest events. Exits when the run ends (a cancel's
    compensations, if due, have run): 0 if it completed, 1 if it failed or was cancelled
    (compensated or not)."""
    text(workflow_id, "run id")
    redraw_interval(interval)
    app = read_app(state)
    try:
        reader = RunReader(app, workflow_id)

        def frame() -> tuple[Group, RunRecord, bool]:
            rec, waits, settled = reader.read()
            return render_run(rec, datetime.now(UTC), waits), rec, settled

        view, rec, settled = frame()
        if once:
            out.print(view)
            return
        with LiveView(view) as live:  # SIGTERM ends it with exit 143, the run goes on
            while not settled and live.wait(interval):  # a cancel's compensations too
                view, rec, settled = frame()
                live.update(view)
    finally:
        app.close()
    if rec.status is not RunStatus.COMPLETED:  # failed or cancelled, undone or not
        raise SystemExit(EXIT_FAILED)
