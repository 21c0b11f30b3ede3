"""`tether runs prune` and `tether runs delete`: remove finished runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import click

from .._durations import parse_age
from ..app import App
from ..errors import TetherError
from ..store import RunStatus
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliState,
    app_option,
    db_state,
    err,
    fail,
    guard,
    note,
    text,
)
from ._db import use_app
from .worker import load_app

__all__ = ["COMMANDS", "with_app"]

T = TypeVar("T")

_FINAL = click.Choice([s.value for s in RunStatus if s.terminal])
_APP = app_option(
    "The App whose blob store holds the runs' files (stage outputs, artifacts), when "
    "it is not the default one beside the database: they are deleted with the runs. "
    "With it, a run with an event its sinks have yet to get is kept until delivered "
    "(without it, no sink counts)."
)


def with_app(state: CliState, app_ref: str | None, action: Callable[[App], T]) -> T:
    """`action` on the App named by `--app` (its blob store, its AI providers), else on a
    bare App over the database."""
    if app_ref is None:
        return use_app(state, action)
    the_app, _ = load_app(state, app_ref, existing=True)
    try:
        return guard(lambda: action(the_app))
    finally:
        the_app.close()


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
    "compensation_failed), with the runs they started; a run started by another goes "
    "only with it. Repeat for more.  [default: all of them]",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@_APP
@db_state
def prune(
    state: CliState, older_than: str, statuses: tuple[str, ...], dry_run: bool, app_ref: str | None
) -> None:
    """Delete finished runs older than AGE, with their steps, events, waits and AI calls.

    Runs that have not ended (pending, running, waiting) are never deleted. A run goes
    with the runs it started, and only once every one of them ended more than AGE ago;
    a run started by another goes only with it, never on its own.
    """
    try:
        age = parse_age(older_than)
        cutoff = datetime.now(UTC) - age
    except TetherError as exc:
        fail(EXIT_USAGE, f"--older-than: {exc}")
    except OverflowError:  # `--older-than 99999999d`: a traceback, not an error line
        fail(
            EXIT_USAGE,
            f"--older-than: {older_than!r} reaches back before the year 1; give a smaller age",
        )
    wanted = [RunStatus(s) for s in statuses] or None
    if dry_run:
        count = with_app(state, app_ref, lambda a: _count(a, cutoff, wanted))
        print(f"{count} finished run(s) older than {older_than} would be deleted (dry run)")
        return
    found: list[int] = []  # how many there were, once counted

    def delete(a: App) -> int:
        found.append(_count(a, cutoff, wanted))
        return _deleting(found[0], older_than, lambda: a.prune(age, wanted))

    try:
        deleted = with_app(state, app_ref, delete)
    except KeyboardInterrupt:
        _interrupted(found, lambda: with_app(state, app_ref, lambda a: _count(a, cutoff, wanted)))
    print(f"deleted {deleted} finished run(s) older than {older_than}")


def _deleting(count: int, older_than: str, prune: Callable[[], int]) -> int:
    """`prune`, said on stderr before it starts, with a spinner on a terminal: thousands
    of runs take a while (5,000 took 14 s on PostgreSQL, without a word)."""
    if not count:
        return 0
    note(f"deleting {count} finished run(s) older than {older_than} (Ctrl-C stops it) ...")
    if not err.is_terminal:
        return prune()
    with err.status(f"deleting {count} finished run(s) ..."):
        return prune()


def _interrupted(found: list[int], remaining: Callable[[], int]) -> NoReturn:
    """Ctrl-C: each batch deleted stays deleted, so say how far it got (it said only
    "interrupted", leaving the user to guess whether anything was deleted)."""
    if not found or not found[0]:
        fail(EXIT_INTERRUPTED, "interrupted before anything was deleted")
    gone = max(found[0] - remaining(), 0)
    fail(
        EXIT_INTERRUPTED,
        f"interrupted after deleting {gone} of {found[0]} finished run(s); the same "
        "command deletes the rest",
    )


def _count(the_app: App, cutoff: datetime, statuses: list[RunStatus] | None) -> int:
    """The runs a prune would delete (with their child runs), by the prune's own rule
    and ids alone: reading every run (inputs and results with them) to count them took
    memory in proportion to the whole database."""
    keep = bool(the_app.kernel.sinks)  # as App.prune: what its sinks have yet to get stays
    ids = the_app.run_sync(
        the_app.store.prunable_runs(cutoff, statuses, 2**62, keep_undelivered=keep)
    )
    # the tops of families only (`_family_kept`): the runs below go with them
    return the_app.run_sync(_with_children(the_app, ids))


async def _with_children(the_app: App, ids: list[str]) -> int:
    """How many runs `ids` are with the runs below them, which go with them whatever
    their status: a prune picks a family's top, and `--status failed` counted a failed
    run, and deleted its completed child with it ("1 would be deleted", then
    "deleted 2")."""
    seen, below = set(ids), list(ids)
    while below:
        for child in await the_app.store.child_runs(below.pop()):
            if child not in seen:
                seen.add(child)
                below.append(child)
    return len(seen)


@click.command("delete")
@click.argument("workflow_id", metavar="RUN_ID")
@_APP
@db_state
def delete(state: CliState, workflow_id: str, app_ref: str | None) -> None:
    """Delete one finished run and everything recorded for it."""
    text(workflow_id, "run id")
    with_app(state, app_ref, lambda a: a.delete_run(workflow_id))
    print(f"deleted run {workflow_id}")


COMMANDS = (prune, delete)
