"""`tether serve`: the HTTP API of an App on uvicorn."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from typing import Any

import click

from ..errors import TetherError
from ..store import open_store
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CliState,
    app_option,
    db_state,
    fail,
    guard,
    note,
)
from ._db import choose, open_app, require_existing
from .worker import load_app

__all__ = ["serve"]


async def _count_tokens(url: str) -> int:
    """Live API tokens in the database (see `_token_counts`)."""
    return (await _token_counts(url))[0]


async def _token_counts(url: str) -> tuple[int, int]:
    """API tokens in the database: (live, ever made, revoked ones included), on a
    store of its own: the server's store must be opened on the server's event loop,
    not on this one."""
    store = open_store(url)
    try:
        return await store.count_api_tokens(), len(await store.list_api_tokens())
    finally:
        await store.close()


def _address(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}" if port else f"http://{shown}:<the port uvicorn prints>"


@click.command()
@app_option(
    "The App to serve (its workflows can be started over HTTP). Without it, the "
    "runs already in the database are served: inspect, signal, cancel."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port, named in the server's log).",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    metavar="BYTES",
    help="Largest request body accepted (larger: 413).",
)
@click.option(
    "--cors-origin",
    "cors",
    multiple=True,
    metavar="ORIGIN",
    help="Let browser pages from ORIGIN call the API; repeat for more. [default: none]",
)
@click.option(
    "--webhook",
    "webhooks",
    multiple=True,
    metavar="NAME",
    help="Accept signed webhooks at /hooks/NAME; the secret is read from "
    "$TETHER_WEBHOOK_SECRET_<NAME> (comma-separated for several). Repeat for more.",
)
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    callback=lambda _ctx, _param, value: _root_path(value),
    help="Behind a proxy that serves this server at PATH (e.g. /tether) and strips it: "
    "the dashboard's links, redirects and cookies carry PATH. [default: none]",
)
@db_state
def serve(
    state: CliState,
    app_ref: str | None,
    host: str,
    port: int,
    max_body: int,
    cors: tuple[str, ...],
    webhooks: tuple[str, ...],
    root_path: str,
) -> None:
    """Serve the App's HTTP API (/api/v1), webhooks (/hooks/NAME) and the dashboard (/)
    until SIGTERM or Ctrl-C.

    Requests need an API token (`tether tokens create`). While none was ever
    created, the server listens on this machine only and lets its own users in
    without one (revoking every token does not open it again); it refuses to
    listen on another address until a live token exists.
    """
    try:
        import uvicorn  # noqa: F401  (here: a missing extra is a usage error)

        from ..server import ServerConfig, check_bind, create_app, webhooks_from_env
    except ImportError as exc:
        fail(
            EXIT_USAGE, f"tether serve needs the server extra: pip install 'tether[server]' ({exc})"
        )
    if app_ref is None:  # the database's runs: `make demo`, then `tether serve`
        db = choose(state.db)
        require_existing(db)
        the_app = open_app(db)
    else:
        the_app, db = load_app(state, app_ref, existing=False)
    live, made = guard(lambda: asyncio.run(_token_counts(db.url)))
    try:
        check_bind(host, live)
        config = ServerConfig(
            max_body=max_body,
            cors_origins=cors,
            webhooks=webhooks_from_env(webhooks),
            allow_unauthenticated=made == 0,
        )
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    _check_port(host, port)  # before saying anything else: the error alone
    _announce(db, host, port, live, made, root_path)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)
    _run(create_app(the_app, config), host, port, root_path)


def _root_path(value: str) -> str:
    """`--root-path` as uvicorn takes it: ``/tether``, never a trailing ``/``."""
    path = value.rstrip("/")
    if value and (
        not path.startswith("/") or not re.fullmatch(r"(/[\w.~%!$&'()*+,;=:@-]+)+", path)
    ):
        raise click.BadParameter(
            f"{value!r} is no URL path: give the path the proxy serves this server at, "
            "starting with '/', e.g. --root-path /tether"
        )
    return path


def _announce(db: Any, host: str, port: int, live: int, made: int, root: str = "") -> None:
    db.announce()
    if made == 0:
        note(
            "no API tokens yet: requests from this machine need none (create one with "
            "`tether tokens create --scope admin`; from then on every request needs one)"
        )
    elif live == 0:
        note(
            "every API token is revoked: requests are refused until you create one "
            "(`tether tokens create --scope admin`)"
        )
    note(
        f"dashboard: {_address(host, port)}/"
        + ("" if made == 0 else " (sign in with a token, or add ?token=TOKEN once)")
        + (f"; its links start with {root}, for the proxy that serves it there" if root else "")
    )


def _run(asgi: Any, host: str, port: int, root_path: str = "") -> None:
    """Serve until SIGTERM (exit 143) or Ctrl-C (exit 130). Open event streams end
    as soon as the signal comes, so they do not hold the shutdown up."""
    import uvicorn

    streams = asgi.state.tether_streams  # see `create_app`
    stopped_by: list[int] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stopped_by.append(sig)
            streams.close()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=10,
        root_path=root_path,
    )
    logging.getLogger("uvicorn.access").addFilter(_HideTokens())  # after its log config
    server = Server(config)

    def stop(sig: int, frame: Any) -> None:
        """Before uvicorn's own handlers, and after: uvicorn raises the signal again
        once it has stopped, to the handler it found; the exit code is chosen here."""
        stopped_by.append(sig)
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    server.run()
    if stopped_by and stopped_by[0] == signal.SIGINT:
        fail(EXIT_INTERRUPTED, "interrupted (Ctrl-C): the server has stopped")
    if stopped_by:
        sys.exit(EXIT_TERMINATED)
    if not server.started:  # uvicorn's own 3, "startup failed", is our "no such run"
        fail(EXIT_USAGE, f"the server did not start on {host}:{port} (see above)")


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&#\s]*")


class _HideTokens(logging.Filter):
    """Keeps the dashboard's sign-in token out of the access log: ``/?token=TOKEN``,
    which the start-up line suggests, was logged as it came, a secret in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[hidden]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def _check_port(host: str, port: int) -> None:
    """Fail now, saying so, if `port` is taken (uvicorn would log a trace and exit 3)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(
                EXIT_USAGE,
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server may "
                "be running there: stop it, or pick another --port)",
            )
