"""`tether schedules`: list, pause and resume the schedules a database knows."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import click

from ..app import App
from ..schedules import MissedTicks, Schedule
from ..store import ScheduleRow
from ._common import (
    EXIT_NOT_FOUND,
    CliState,
    app_option,
    db_option,
    db_state,
    fail,
    out,
    printed_whole,
    text,
)
from ._db import db_flag, use_app
from ._format import iso, row, table
from .prune import with_app

__all__ = ["schedules"]


@click.group(no_args_is_help=True)
@db_option
def schedules() -> None:
    """List, pause and resume schedules (saved when a worker first fires them)."""


def _next(saved: ScheduleRow) -> str:
    if saved.paused:
        return "paused"
    at, due = _upcoming(saved)
    if at is None:
        return "?"
    shown = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{shown}, due now ({due} missed tick{'s' if due > 1 else ''})" if due else shown


def _upcoming(saved: ScheduleRow) -> tuple[datetime | None, int]:
    """The next tick a worker starts (None while paused or for a row it cannot be read
    of) and how many of the schedule's ticks are due now. A schedule behind (no worker
    ran) was shown with tomorrow's tick, while the first worker up would start the
    missed ones at once (`missed="latest"` one, `"all"` each)."""
    if saved.paused:
        return None, 0
    try:
        missed = cast(MissedTicks, saved.missed)  # checked by Schedule
        sched = Schedule(saved.name, saved.workflow_name, saved.cron, saved.timezone, missed=missed)
        now = datetime.now(UTC)
        due, _ = sched.due(saved.fired_until, now)
        if due:
            return due[0], len(due)
        return sched.next_tick(max(saved.fired_until, now)), 0
    except Exception:  # a row written by other code: show it, do not fail the list
        return None, 0


def _dict(r: ScheduleRow) -> dict[str, object]:
    at, due = _upcoming(r)
    return {
        "name": r.name,
        "workflow": r.workflow_name,
        "cron": r.cron,
        "timezone": r.timezone,
        "queue": r.queue,
        "missed": r.missed,
        "paused": r.paused,
        "nextTick": iso(at),
        "dueNow": due,
        "firedUntil": iso(r.fired_until),
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
    }


@dataclass(frozen=True)
class _Saved:
    """The schedules a database knows, and, with --app, the names that App declares and
    the database it was read on (for the hint to remove the others)."""

    rows: list[ScheduleRow]
    declared: frozenset[str] | None = None
    url: str | None = None

    def undeclared(self, r: ScheduleRow) -> bool:
        return self.declared is not None and r.name not in self.declared


def _saved(state: CliState, app_ref: str | None) -> _Saved:
    def read(a: App) -> _Saved:
        declared = None if app_ref is None else frozenset(a.schedules)
        return _Saved(a.list_schedules(), declared, a.database_url)

    return with_app(state, app_ref, read)


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@app_option(
    "The App whose code declares the schedules: a saved one it no longer declares "
    "(renamed or deleted) is marked, and how to remove it said (--json: declared)."
)
@db_state
def schedules_list(state: CliState, as_json: bool, app_ref: str | None) -> None:
    """Each schedule: its workflow, cron, time zone, next tick and whether it is paused.

    A schedule behind (no worker ran at its ticks) shows the oldest tick the next
    worker starts at once, and how many (its `missed` policy: latest one, all, or
    skip those over a minute late); --json: nextTick and dueNow."""
    saved = _saved(state, app_ref)
    none = "no schedules in this database (a worker saves each when it first fires it)"

    def as_dict(r: ScheduleRow) -> dict[str, object]:
        return _dict(r) | ({} if saved.declared is None else {"declared": not saved.undeclared(r)})

    if printed_whole(saved.rows, as_json, as_dict, none):
        return
    # folded, not cut: a name ending in "…" at 80 columns could not be paused by it
    t = table("name", "workflow", "cron", "timezone", "missed", "next tick", "fired until")
    for r in saved.rows:
        row(
            t,
            r.name,
            r.workflow_name,
            r.cron,
            r.timezone,
            r.missed,
            _NOT_DECLARED if saved.undeclared(r) else _next(r),
            r.fired_until.strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
    out.print(t)
    _say_undeclared(saved)


# what "next tick" says of a schedule the App given no longer declares: its workers
# never fire it, whatever the cron says
_NOT_DECLARED = "none: not declared by this App"


def _say_undeclared(saved: _Saved) -> None:
    """Name the schedules the App no longer declares, and the command that forgets
    one: they were listed with a next tick that never comes, no word of why."""
    names = [r.name for r in saved.rows if saved.undeclared(r)]
    if not names:
        return
    print(
        f"not declared by this App (renamed or deleted in its code): {', '.join(names)}; "
        f"`tether schedules remove {shlex.quote(names[0])}{db_flag(saved.url)}` forgets "
        "one (its runs are kept), unless another App on this database declares it"
    )


def _known(a: App, name: str) -> ScheduleRow:
    """The schedule saved as `name`. One the database does not know exits 3 (not
    found), as a missing run does, naming those it knows."""
    saved = a.list_schedules()
    for r in saved:
        if r.name == name:
            return r
    fail(
        EXIT_NOT_FOUND,
        f"no schedule named {name!r} in this database (known: "
        f"{', '.join(r.name for r in saved) or 'none'}; `tether schedules list` shows "
        "them); a schedule is saved when a worker running its app first fires it",
    )


def _pause(a: App, name: str, paused: bool) -> bool:
    """Pause or resume `name`; whether it was paused before."""
    was = _known(a, name).paused
    a.pause_schedule(name, paused=paused)
    return was


def _remove(a: App, name: str) -> None:
    _known(a, name)
    a.run_sync(a.store.delete_schedule(name))


def _set(state: CliState, name: str, paused: bool) -> None:
    """Say what changed: resuming a schedule that ran said "resumed (from now: the ticks
    of the pause are not started)", of a pause that never was."""
    text(name, "schedule name")
    was = use_app(state, lambda a: _pause(a, name, paused))
    if was == paused:
        print(f"schedule {name} was {'already paused' if paused else 'not paused'}: unchanged")
    elif paused:
        print(f"schedule {name} paused")
    else:
        print(f"schedule {name} resumed (from now: the ticks of the pause are not started)")


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


@schedules.command("remove")
@click.argument("name")
@db_state
def schedules_remove(state: CliState, name: str) -> None:
    """Forget schedule NAME, one no App declares any more (its runs are kept): it is
    no longer listed with a next tick that never comes. An App that still declares it
    saves it again when it next fires its schedules, counting from then."""
    text(name, "schedule name")
    use_app(state, lambda a: _remove(a, name))
    print(f"schedule {name} removed (its runs are kept)")
