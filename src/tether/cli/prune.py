"""`tether runs prune` and `tether runs delete`: remove finished runs."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from .._durations import parse_age
from ..app import App
from ..errors import TetherError
from ..store import RunStatus
from ._common import EXIT_USAGE, CliState, db_state, fail, text
from ._db import use_app

__all__ = ["COMMANDS"]

_FINAL = click.Choice([s.value for s in RunStatus if s.terminal])


@click.command("prune", short_help="Delete finished runs older than an age.")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Delete runs that finished more than AGE ago: 45m, 12h, 30d, 2w.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=_FINAL,
    metavar="STATUS",
    help="Only runs that ended so (completed, failed, cancelled, compensated, "
    "compensation_failed); repeat for more.  [default: all of them]",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@db_state
def prune(state: CliState, older_than: str, statuses: tuple[str, ...], dry_run: bool) -> None:
    """Delete finished runs older than AGE, with their steps, events and waits.

    Runs that have not ended (pending, running, waiting) are never deleted.
    """
    try:
        age = parse_age(older_than)
    except TetherError as exc:
        fail(EXIT_USAGE, f"--older-than: {exc}")
    wanted = [RunStatus(s) for s in statuses] or None
    if dry_run:
        count = use_app(state, lambda a: _count(a, datetime.now(UTC) - age, wanted))
        print(f"{count} finished run(s) older than {older_than} would be deleted (dry run)")
        return
    deleted = use_app(state, lambda a: a.prune(age, wanted))
    print(f"deleted {deleted} finished run(s) older than {older_than}")


def _count(the_app: App, cutoff: datetime, statuses: list[RunStatus] | None) -> int:
    rows = the_app.list_runs(limit=2**62)
    final = statuses or [s for s in RunStatus if s.terminal]
    return sum(1 for r in rows if r.status in final and (r.finished_at or r.updated_at) < cutoff)


@click.command("delete")
@click.argument("workflow_id", metavar="RUN_ID")
@db_state
def delete(state: CliState, workflow_id: str) -> None:
    """Delete one finished run and everything recorded for it."""
    text(workflow_id, "run id")
    use_app(state, lambda a: a.delete_run(workflow_id))
    print(f"deleted run {workflow_id}")


COMMANDS = (prune, delete)
