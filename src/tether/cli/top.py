"""`tether top`: live counts of runs by status, the busiest queues, the most expensive
unfinished runs and the live processes, redrawn from the database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import click
from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .._owners import owner_is_dead
from .._runner import PROCESS_SCOPE
from ..app import App
from ..store import RunStatus
from ._common import EXIT_USAGE, CliState, db_state, fail, guard, out, redraw_interval
from ._db import read_app
from ._format import cell, cost_text, table
from ._live import LiveView

__all__ = ["top"]

_MAX_ROWS = 1000  # more than any screen holds, and well inside a database's integers


def _counts(runs: list[tuple[str, str, int]]) -> Columns:
    """The runs by status, each status beside its count: wrapped as one line of text on
    a narrow terminal, "failed" ended one line and its count began the next."""
    by_status: Counter[str] = Counter()
    for _, status, n in runs:
        by_status[status] += n
    counts = [
        Text.assemble((f"{status.value} ", "dim"), str(by_status.get(status.value, 0)))
        for status in RunStatus
    ]
    return Columns([Text("runs", "bold"), *counts], padding=(0, 2))


def _queues(depths: list[Any], now: datetime, rows: int) -> Table:
    t = table("queue", "waiting", "claimed", "oldest waiting", words=True)
    t.title, t.title_justify = "busiest queues", "left"
    for d in sorted(depths, key=lambda d: (-d.queued, -d.claimed, d.queue))[:rows]:
        age = (
            "" if d.oldest_due is None else f"{max(0.0, (now - d.oldest_due).total_seconds()):.0f}s"
        )
        t.add_row(cell(d.queue), str(d.queued), str(d.claimed), age)
    return t


async def _costly(app: App, rows: int) -> Table:
    t = table("run", "workflow", "status", "AI calls", "AI cost", words=True)
    t.title, t.title_justify = "most expensive unfinished runs", "left"
    for workflow, status, u in await app.store.costliest_open_runs(rows):
        t.add_row(cell(u.group or ""), cell(workflow), status.value, str(u.calls), cost_text(u))
    return t


async def _processes(app: App, now: datetime) -> Text:
    live = [  # a process of this machine that has ended is not, though its claim lives on
        r
        for r in await app.store.list_locks(PROCESS_SCOPE)
        if r.active_at(now) and not owner_is_dead(r.holder)
    ]
    names = ", ".join(sorted(r.holder for r in live)) or "none"
    return Text.assemble(("live processes  ", "bold"), f"{len(live)}  ", (names, "dim"))


async def frame(app: App, rows: int) -> Group:
    """One screen of `tether top`, read now."""
    now = datetime.now(UTC)
    return Group(
        _counts(await app.store.run_counts()),
        await _processes(app, now),
        _queues(await app.store.queue_depths(), now, rows),
        await _costly(app, rows),
    )


@click.command("top", short_help="Live counts, busy queues and costly runs.")
@click.option("--interval", default=1.0, show_default=True, type=float,
              help="Seconds between redraws.")  # fmt: skip
@click.option("--rows", default=10, show_default=True, type=int,
              help=f"Rows per table (1 to {_MAX_ROWS}).")  # fmt: skip
@click.option("--once", is_flag=True,
              help="Draw once and exit (what it does when stdout is no terminal).")  # fmt: skip
@db_state
def top(state: CliState, interval: float, rows: int, once: bool) -> None:
    """A live overview of the database: runs by status, the processes driving them,
    the queues with the most waiting jobs, and the unfinished runs that cost the most.
    Ctrl-C (exit 130) or SIGTERM (exit 143) ends it. Piped or redirected (`tether top |
    head`), it prints one frame and exits, as with --once."""
    redraw_interval(interval)
    if not 1 <= rows <= _MAX_ROWS:  # 10**20 rows: a traceback from the database driver
        fail(EXIT_USAGE, f"--rows must be from 1 to {_MAX_ROWS}, got {rows}")
    app = read_app(state)
    try:
        view: Group = guard(lambda: app.run_sync(frame(app, rows)))
        if once or not out.is_terminal:  # a pipe saw nothing until the loop ended
            out.print(view)
            return
        with LiveView(view) as live:  # until Ctrl-C (exit 130) or SIGTERM (exit 143)
            while live.wait(interval):
                live.update(guard(lambda: app.run_sync(frame(app, rows))))
    finally:
        app.close()
