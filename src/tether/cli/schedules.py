"""`tether schedules`: list, pause and resume the schedules a database knows."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from ..app import App
from ..schedules import Schedule
from ..store import ScheduleRow
from ._common import EXIT_NOT_FOUND, CliState, db_option, db_state, fail, out, text
from ._db import use_app
from ._format import row, table

__all__ = ["schedules"]


@click.group(no_args_is_help=True)
@db_option
def schedules() -> None:
    """List, pause and resume schedules (saved when a worker first fires them)."""


def _next(saved: ScheduleRow) -> str:
    if saved.paused:
        return "paused"
    try:
        sched = Schedule(saved.name, saved.workflow_name, saved.cron, saved.timezone)
        after = max(saved.fired_until, datetime.now(UTC))
        return sched.next_tick(after).strftime("%Y-%m-%d %H:%M UTC")
    except Exception:  # a row written by other code: show it, do not fail the list
        return "?"


@schedules.command("list")
@db_state
def schedules_list(state: CliState) -> None:
    """Each schedule: its workflow, cron, time zone, next tick and whether it is paused."""
    rows = use_app(state, lambda a: a.list_schedules())
    if not rows:
        print("no schedules in this database (a worker saves each when it first fires it)")
        return
    # folded, not cut: a name ending in "…" at 80 columns could not be paused by it
    t = table("name", "workflow", "cron", "timezone", "missed", "next tick", "fired until")
    for r in rows:
        row(
            t,
            r.name,
            r.workflow_name,
            r.cron,
            r.timezone,
            r.missed,
            _next(r),
            r.fired_until.strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    out.print(t)


def _pause(a: App, name: str, paused: bool) -> None:
    """Pause or resume `name`; one the database does not know exits 3 (not found), as
    a missing run does, naming those it knows."""
    known = [r.name for r in a.list_schedules()]
    if name not in known:
        fail(
            EXIT_NOT_FOUND,
            f"no schedule named {name!r} in this database (known: {', '.join(known) or 'none'}; "
            "`tether schedules list` shows them); a schedule is saved when a worker running "
            "its app first fires it",
        )
    a.pause_schedule(name, paused=paused)


def _set(state: CliState, name: str, paused: bool) -> None:
    text(name, "schedule name")
    use_app(state, lambda a: _pause(a, name, paused))
    print(
        f"schedule {name} {'paused' if paused else 'resumed (from now: the ticks of the pause are not started)'}"
    )


@schedules.command("pause")
@click.argument("name")
@db_state
def schedules_pause(state: CliState, name: str) -> None:
    """Stop starting ticks of schedule NAME until it is resumed."""
    _set(state, name, True)


@schedules.command("resume")
@click.argument("name")
@db_state
def schedules_resume(state: CliState, name: str) -> None:
    """Start ticks of schedule NAME again, from now on."""
    _set(state, name, False)
