"""What every request passes before routing: the body size limit and Idempotency-Key.

A plain ASGI middleware, so that it sees the raw body (the signature of a
webhook and the digest of an idempotent request are over the bytes sent) and
the raw answer (kept as sent, to be sent again).

Idempotency-Key: a POST carrying one is answered once; the same key with the
same request (method, path, query and body) gets the first answer again,
marked ``Idempotent-Replayed: true``; with another request it gets 409
``idempotency_conflict``; while the first is still being answered, 409
``idempotency_in_progress``. Keys belong to the credentials that sent them
(two clients cannot collide on a key) and are kept `keep` seconds. Only answers
of requests that did something (2xx), or that the run's state refused (409),
are kept: after a 5xx the request may be retried as it is, and after another
4xx (a bad body, a missing token, an unknown run: nothing was done) it may be
corrected and sent again under the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..clock import Clock
from ..store import Store
from ._errors import error_body

__all__ = ["Edge"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STALE_AFTER = 600.0  # a request in flight this long died with its server


class _TooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _answer(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, code: str, message: str) -> None:
    await _answer(send, status, json.dumps(error_body(code, message)).encode())


class Edge:
    """Body size limit (413) and Idempotency-Key handling in front of `app`."""

    def __init__(
        self, app: ASGIApp, *, store: Store, clock: Clock, max_body: int, keep: float
    ) -> None:
        self.app = app
        self.store = store
        self.clock = clock
        self.max_body = max_body
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
        except _TooLarge:
            await _error(
                send, 413, "body_too_large", f"the request body is over {self.max_body} bytes"
            )
            return
        replay = _replayer(body, receive)
        key = _header(scope, b"idempotency-key")
        if key is None or scope["method"] != "POST":
            await self.app(scope, replay, send)
            return
        await self._idempotent(scope, replay, send, key, body)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, key: str, body: bytes
    ) -> None:
        if not key or len(key) > 200:
            await _error(send, 422, "invalid_idempotency_key", "Idempotency-Key: 1-200 chars")
            return
        who = hashlib.sha256((_header(scope, b"authorization") or "").encode()).hexdigest()[:16]
        stored_key = f"{who}:{key}"
        request = hashlib.sha256(
            f"{scope['method']} {scope['path']}?{scope.get('query_string', b'').decode()}\n".encode()
            + body
        ).hexdigest()
        earlier = await self.store.idempotent_begin(
            stored_key, request, at=self.clock.now(), keep=self.keep, stale_after=_STALE_AFTER
        )
        if earlier is not None:
            await _again(send, key, request, earlier.request_hash, earlier.status, earlier.response)
            return
        status, chunks = 0, []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        kept = False
        try:
            await self.app(scope, receive, capture)
            if status < 400 or status == 409:  # it did something, or the state refused it
                await self.store.idempotent_finish(stored_key, status, b"".join(chunks).decode())
                kept = True
        finally:
            if not kept:
                await self.store.idempotent_finish(stored_key, None, None)


async def _again(
    send: Send, key: str, request: str, first: str, status: int | None, response: str | None
) -> None:
    """Answer a request whose Idempotency-Key was used before."""
    if first != request:
        await _error(
            send,
            409,
            "idempotency_conflict",
            f"Idempotency-Key {key!r} was used with a different request; use a new key",
        )
    elif status is None or response is None:
        await _error(
            send,
            409,
            "idempotency_in_progress",
            f"the request with Idempotency-Key {key!r} is still being answered; retry later",
        )
    else:
        await _answer(send, status, response.encode(), ((b"idempotent-replayed", b"true"),))


def _replayer(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the body read already to the app, then waits for the
    client to go (what Starlette's disconnect watch listens for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
