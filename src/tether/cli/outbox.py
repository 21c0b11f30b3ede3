"""`tether outbox ...`: the events the outbox gave up delivering (list, replay)."""

from __future__ import annotations

import click

from ..app import App
from ..store import OutboxRow
from ._common import CliState, db_option, db_state, note, out, printed_whole
from ._db import use_app
from ._format import iso, row, table, ts, zoned

__all__ = ["outbox"]


@click.group(no_args_is_help=True)
@db_option
def outbox() -> None:
    """The outbox's dead letters: events a sink refused on every attempt."""


@outbox.command("dead")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many, the longest dead first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@db_state
def outbox_dead(state: CliState, limit: int, as_json: bool) -> None:
    """Each dead letter: its run, event, attempts, when it was given up on and why.
    `tether outbox replay` puts them back for delivery."""
    # one past the limit, to tell a list cut short: "1 dead letter(s)" of three hid two
    found = use_app(state, lambda a: a.dead_letters(limit=limit + 1))
    more = len(found) > limit
    found = found[:limit]
    if more and as_json:  # on stderr: stdout stays one array
        note(f"the {limit} longest dead shown; more dead letters: a larger --limit shows them")
    if printed_whole(
        found, as_json, _dict, "no dead letters: every event was delivered or is still being tried"
    ):
        return
    t = table("run", "seq", "event", "attempts", zoned("dead since"), "last error")
    for r in found:
        row(t, r.workflow_id, str(r.seq), r.type, str(r.attempts), ts(r.dead_at),
            _clip(r.last_error or ""))  # fmt: skip
    out.print(t)
    if more:
        print(f"the {limit} longest dead shown; more dead letters: a larger --limit shows them")
    else:
        print(f"{len(found)} dead letter(s); `tether outbox replay` delivers them again")


@outbox.command("replay")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many, the longest dead first.")  # fmt: skip
@db_state
def outbox_replay(state: CliState, limit: int) -> None:
    """Put dead letters back for delivery, their attempts from zero: the next outbox
    pass of a worker (or of `tether serve`) delivers them."""

    def replay(a: App) -> tuple[int, bool]:
        count = a.replay_dead_letters(limit=limit)
        return count, count == limit and bool(a.dead_letters(limit=1))

    count, left = use_app(state, replay)
    print(f"{count} dead letter(s) put back for delivery")
    if left:  # the rest stay dead: "1 put back" read as if that were all of them
        print("more dead letters remain: `tether outbox replay` again (or a larger --limit)")


def _dict(r: OutboxRow) -> dict[str, object]:
    return {
        "workflowId": r.workflow_id,
        "seq": r.seq,
        "type": r.type,
        "message": r.message,
        "at": iso(r.at),
        "attempts": r.attempts,
        "deadAt": iso(r.dead_at),
        "lastError": r.last_error,
    }


def _clip(text: str, limit: int = 160) -> str:
    """`text` on one line, clipped: a sink's error spanning lines (a receiver's answer, a
    traceback) made each dead letter several rows of the table, hard to tell apart."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
