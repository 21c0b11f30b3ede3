"""`tether agents run --port`: the status API, tether's API and the dashboard, served
on the dispatcher's own event loop while it runs.

The socket is bound before anything starts, so a port in use is a usage error
(exit 2) rather than a dispatcher that runs without the server it was asked
for. The server has no lifespan of its own: the App is the dispatcher's, closed
once the dispatcher has handed its runs back, not when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from ..app import App
from ..errors import TetherError
from ._common import EXIT_USAGE, fail, guard, note
from .serve import _count_tokens

__all__ = ["StatusServer", "serve_with_status", "status_server"]


class StatusServer:
    """A uvicorn server over a socket bound up front."""

    def __init__(self, server: Any, sock: socket.socket, streams: Any) -> None:
        self.server = server
        self.sock = sock
        self.streams = streams  # its open event streams (`create_app`)

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.sock.close()

    def stop(self) -> None:
        self.streams.close()  # or an open event stream holds the shutdown up
        self.server.should_exit = True


def status_server(dispatcher: Any, app: App, url: str, host: str, port: int) -> StatusServer:
    """The server `--port` asks for, its socket bound (exit 2 if it cannot be)."""
    try:
        import uvicorn

        from ..server import ServerConfig, check_bind, create_app, dispatcher_routes
    except ImportError as exc:
        fail(EXIT_USAGE, f"--port needs the server extra: pip install 'tether[server]' ({exc})")
    tokens = guard(lambda: asyncio.run(_count_tokens(url)))
    try:
        check_bind(host, tokens)
        asgi = create_app(app, ServerConfig(allow_unauthenticated=tokens == 0))
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    asgi.include_router(dispatcher_routes(dispatcher))  # after tether's own /api/v1 routes
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        fail(EXIT_USAGE, f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port")
    shown = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    note(
        f"status API: http://{where}:{shown}/api/v1/state, dashboard: http://{where}:{shown}/"
        + ("" if tokens == 0 else " (requests need an API token)")
    )
    config = uvicorn.Config(asgi, lifespan="off", log_level="warning")
    return StatusServer(_uvicorn_server(config), sock, asgi.state.tether_streams)


def _uvicorn_server(config: Any) -> Any:
    """A uvicorn server that leaves signals to the dispatcher, which stops it: uvicorn's
    own capture saw each signal beside the dispatcher's handler and raised it again
    once stopped, so one Ctrl-C counted twice (and a second one cuts the agents'
    grace short)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


async def serve_with_status(dispatcher: Any, web: StatusServer, stop: asyncio.Event) -> None:
    """Run the dispatcher and the server until `stop` (or either ends), then stop both:
    the server first, the dispatcher handing its runs back after."""
    serving = asyncio.ensure_future(web.serve())
    working = asyncio.ensure_future(dispatcher.serve(stop=stop))
    await asyncio.wait({serving, working}, return_when=asyncio.FIRST_COMPLETED)
    web.stop()
    stop.set()
    await asyncio.gather(serving, working)
