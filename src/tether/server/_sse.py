"""A run's events as Server-Sent Events.

Each event is sent as ``id: <seq>``, ``event: <type>``, ``data: <JSON of the
event>``; the stream ends with an ``end`` event once the run has ended and
every event before its end was sent, or once the run was deleted (its data
then says ``"status": "deleted"``). A client that reconnects sends
``Last-Event-ID`` and continues after it. New events are found by polling the
store (waking at once on PostgreSQL's notification of the run's end), at most
every `POLL` seconds; a comment line every `KEEP_ALIVE` seconds keeps proxies
from closing an idle stream.

When the server begins to shut down (``asgi.state.tether_streams.close()``,
which `tether serve` calls on SIGTERM or Ctrl-C) every open stream ends within
`POLL` seconds, cleanly and without an ``end`` event (a comment says why): the
client reconnects, with ``Last-Event-ID``, to a server that is up again.
Without that, a stream would hold the server's shutdown up until the run ended.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import RunNotFoundError
from ..record import EventRecord
from ._models import Event
from ._port import ServedApp

__all__ = ["Streams", "event_stream", "sse_frame", "streams_of"]

POLL = 0.2
KEEP_ALIVE = 15.0
DELETED = (
    b"event: end\ndata: "
    + json.dumps({"status": "deleted", "message": "the run was deleted"}).encode()
    + b"\n\n"
)
CLOSING = b": the server is stopping; reconnect with Last-Event-ID to continue\n\n"


class Streams:
    """The open event streams of one ASGI application: `close()` ends them all.
    Safe to call from a signal handler (it only sets a flag that streams poll)."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def streams_of(asgi: Any) -> Streams:
    """The `Streams` of an ASGI application made by `create_app` (or `App.asgi()`)."""
    found: Streams = asgi.state.tether_streams
    return found


def sse_frame(event: Event, data: str | None = None) -> bytes:
    """The frame of `event`; `data` (one line of JSON) in place of the event's JSON."""
    data = event.model_dump_json() if data is None else data  # JSON: one line
    kind = " ".join(event.type.splitlines())  # one line too, whatever was recorded
    return f"id: {event.seq}\nevent: {kind}\ndata: {data}\n\n".encode()


async def event_stream(
    app: ServedApp,
    workflow_id: str,
    after: int,
    streams: Streams,
    frame: Callable[[Event], bytes] = sse_frame,
) -> AsyncIterator[bytes]:
    """The run's events from `after` on, each as `frame` writes it (a run's page has
    its large values cut short)."""
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        if streams.closed:
            yield CLOSING
            return
        try:
            run = await app.aget_run(workflow_id)  # read before the events: none can be missed
        except RunNotFoundError:  # deleted meanwhile: it has no more events to send
            yield DELETED
            return
        rows = await app.store.list_events(workflow_id, after_seq=after)
        for row in rows:
            yield frame(Event.of(EventRecord.from_row(row)))
            after = row.seq
        if rows:
            quiet_since = loop.time()
        if run.settled:  # a cancel's compensations too: their events come first
            yield f"event: end\ndata: {json.dumps({'status': run.status.value})}\n\n".encode()
            return
        if loop.time() - quiet_since >= KEEP_ALIVE:
            yield b": keep-alive\n\n"
            quiet_since = loop.time()
        started = loop.time()
        await app.store.wait_for_change(f"run:{workflow_id}", POLL)
        left = POLL - (loop.time() - started)
        if left > 0:  # SQLite answers at once: poll no faster than POLL
            await asyncio.sleep(left)
