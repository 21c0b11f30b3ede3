"""`tether tokens ...`: the API tokens of `tether serve` (create, list, revoke)."""

from __future__ import annotations

import sys

import click

from ..app import App
from ..store import ApiTokenRow
from ._common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliState,
    app_option,
    db_option,
    db_state,
    err,
    fail,
    guard,
    out,
    printed_whole,
    text,
)
from ._db import choose, open_app
from ._format import row, table, ts, zoned
from .prune import with_app
from .worker import load_app

__all__ = ["tokens"]


_APP = app_option(
    "The App `tether serve --app` serves: its database holds the tokens "
    "(see `tether --help` for which database is used without it)."
)


@click.group(no_args_is_help=True)
@db_option
def tokens() -> None:
    """API tokens for `tether serve` (kept hashed in the database)."""


@tokens.command("create")
@click.option(
    "--scope",
    type=click.Choice(["read", "write", "admin"]),
    required=True,
    help="read: GET only; write: also act on runs; admin: also manage tokens.",
)
@click.option("--name", metavar="NAME", help="A name to tell tokens apart (and revoke by).")
@_APP
@db_state
def tokens_create(state: CliState, scope: str, name: str | None, app_ref: str | None) -> None:
    """Create a token and print it, once: only its hash is kept.

    It counts only for a server on the same database, which is said on stderr:
    a token made in another one (the default, beside an App of its own) leaves
    that server open to this machine and refuses the token."""
    from ..server import create_token

    if name is not None:
        text(name, "--name", new=True)
    if sys.stdout is None:  # `>&-`: a token shown nowhere, and never again, is no token
        fail(
            EXIT_USAGE,
            "stdout is closed, and a token is printed only once: nothing was created; "
            "run it with stdout open, e.g. > token.txt",
        )
    if app_ref is None:
        db = choose(state.db)
        the_app = open_app(db)  # creating the first token may create the database
    else:
        the_app, db = load_app(state, app_ref, existing=False)
    db.announce()
    try:
        token, tok = guard(
            lambda: the_app.run_sync(create_token(the_app.store, the_app.clock, scope, name))
        )
        err.print(
            f"token {tok.id} ({scope}) created; it is shown this once, keep it secret:",
            highlight=False,
            markup=False,
        )
        _show(the_app, token, tok.id)
    finally:
        the_app.close()


def _show(the_app: App, token: str, token_id: str) -> None:
    """Print the token, or revoke it if stdout cannot take it: `> /dev/full` ended in a
    traceback, leaving a live token whose secret nobody ever saw. A reader that has gone
    (`| true`) is such a stdout too; the command then says so, not exit 141 quietly."""
    try:
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
    except OSError as exc:
        sys.stdout = None  # nothing more to flush at exit, where it would fail again
        guard(lambda: the_app.run_sync(
            the_app.store.revoke_api_token(token_id, at=the_app.clock.now(), by_name=False)
        ))  # fmt: skip
        fail(
            EXIT_USAGE,
            f"the token could not be written to stdout ({exc.strerror or exc}), so token "
            f"{token_id} was revoked at once; create one again with stdout where it can "
            "be written, e.g. > token.txt",
        )


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_APP
@db_state
def tokens_list(state: CliState, as_json: bool, app_ref: str | None) -> None:
    """Every token (never its secret), revoked ones included."""
    found = with_app(state, app_ref, lambda a: a.run_sync(a.store.list_api_tokens()))
    if printed_whole(found, as_json, _dict, "no tokens"):
        return
    t = table("id", "name", "scope", zoned("created"), zoned("last used"), zoned("revoked"))
    for r in found:
        row(t, r.id, r.name or "", r.scope, ts(r.created_at), ts(r.last_used_at),
            ts(r.revoked_at))  # fmt: skip
    out.print(t)


def _dict(r: ApiTokenRow) -> dict[str, object]:
    return {
        "id": r.id,
        "name": r.name,
        "scope": r.scope,
        "createdAt": r.created_at.isoformat(),
        "lastUsedAt": None if r.last_used_at is None else r.last_used_at.isoformat(),
        "revokedAt": None if r.revoked_at is None else r.revoked_at.isoformat(),
    }


@tokens.command("revoke")
@click.argument("token", metavar="ID|NAME")
@_APP
@db_state
def tokens_revoke(state: CliState, token: str, app_ref: str | None) -> None:
    """Revoke a token (by id, or every live token with that name) at once."""
    text(token, "token id")
    count = with_app(
        state, app_ref, lambda a: a.run_sync(a.store.revoke_api_token(token, at=a.clock.now()))
    )
    if count == 0:
        fail(EXIT_NOT_FOUND, f"no live API token {token!r}; `tether tokens list` shows them")
    print(f"revoked {count} token(s)")
