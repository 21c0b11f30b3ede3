"""What every request passes before routing: HEAD, a compressed body (415, nothing
here decodes one), a JSON body in a charset JSON is not written in (415), the body
size limit and Idempotency-Key.

HEAD: HTTP asks a server that offers GET to answer HEAD as it, with the same
status and headers and no body; FastAPI's routes offer GET alone (405 to a
HEAD). A HEAD is answered here as the GET is, less its body (`_headers_only`).

A plain ASGI middleware, so that it sees the raw body (the signature of a
webhook is over the bytes sent, and an idempotent request's digest over its JSON
as read) and the raw answer (kept as sent, to be sent again).

Idempotency-Key: a POST to the API (``/api/v1``) carrying one is answered once;
the same key with the same request (method, path, query and body: a JSON body by
its meaning, so that key order and spacing do not count) gets the first answer
again (its status, body and headers), marked ``Idempotent-Replayed: true``; with
another request it gets 409 ``idempotency_conflict``; while the
first is still being answered, 409 ``idempotency_in_progress``. Keys belong to
the credential that sent them (the bearer token, however its scheme is
spelled; or none: two clients cannot collide on a key), and a request with a
key is let in only if its credential still is (a revoked token gets 401, not
the first answer). Keys are kept `keep` seconds. Only answers of requests that
did something (2xx), or that the run's state refused (409), are kept: after a
5xx the request may be retried as it is, and after another 4xx (a bad body, a
missing token, an unknown run: nothing was done) it may be corrected and sent
again under the same key. A request whose answer holds a secret (a new API
token) is refused a key (422): its answer is never stored, so it cannot be
replayed.
"""

from __future__ import annotations

import codecs
import email.message
import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request

from ..clock import Clock
from ..errors import TetherError
from ..store import IdempotentAnswer, Store
from ._auth import hash_token
from ._deps import granted
from ._errors import ApiError, answer_for, challenge, details_for, error_body

__all__ = ["Edge", "bearer_token"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STALE_AFTER = 600.0  # a request in flight this long died with its server
_API = "/api/v1/"
# POSTs whose answer holds a secret (a new token's): never stored, so never replayed
_SECRET_ANSWERS = ("/api/v1/api-tokens",)
# headers of an answer not sent again with its replay (the server sets them anew)
_NOT_REPLAYED = {b"content-length", b"transfer-encoding", b"connection", b"date", b"server"}


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client left before its body was all sent: the request is not whole."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any
    case, as `fastapi.security.HTTPBearer` reads it); None for none or another scheme."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


def _route_path(scope: Scope) -> str:
    """The request's path below the application's mount point (``root_path``)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


async def _answer(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    given = headers or [(b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*given, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, code: str, message: str, details: Any = None) -> None:
    headers = [(b"content-type", b"application/json")] + [
        (k.lower().encode(), v.encode()) for k, v in challenge(status, code).items()
    ]
    await _answer(send, status, json.dumps(error_body(code, message, details)).encode(), headers)


async def _refuse(send: Send, exc: TetherError) -> None:
    """Answer `exc` as the API's exception handlers would."""
    if isinstance(exc, ApiError):
        await _error(send, exc.status, exc.code, exc.message, exc.details)
    else:
        status, code = answer_for(exc)
        await _error(send, status, code, str(exc), details_for(exc))


def _headers_only(send: Send) -> Send:
    """The `send` of a HEAD answered as a GET: the answer's start as it is, then its
    end at once, so that no body is sent; the server, its answer complete, then tells
    the app the client is gone, which ends an endless body (an event stream) too."""
    started = False

    async def head(message: Message) -> None:
        nonlocal started
        if started:
            return  # the body: not for a HEAD
        await send(message)
        if message["type"] == "http.response.start":
            started = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return head


def _encoded(scope: Scope) -> bool:
    """Whether the body is sent compressed (``Content-Encoding: gzip``, say): nothing
    here decodes it, and a gzipped JSON body was read as bytes, "not valid JSON at
    character 0", while a plain one so labelled was taken as sent."""
    coding = (_header(scope, b"content-encoding") or "").strip().lower()
    return coding not in ("", "identity")


async def _unencoded_only(send: Send, coding: str | None) -> None:
    """415, naming the encoding and, as RFC 7694 has it, the one taken (``Accept-Encoding``)."""
    body = error_body(
        "unsupported_content_encoding",
        f"Content-Encoding {coding!r}: the server takes a request body as sent, not "
        "compressed; send it uncompressed, without the Content-Encoding header",
    )
    headers = [(b"content-type", b"application/json"), (b"accept-encoding", b"identity")]
    await _answer(send, 415, json.dumps(body).encode(), headers)


# the encodings of JSON (RFC 8259; UTF-16 and UTF-32 as RFC 7159 allowed them), as
# `codecs` names them: `json.loads` of the body's bytes tells which by its first bytes
_JSON_CODECS = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def _foreign_charset(content_type: str | None) -> str | None:
    """The charset of a JSON body's Content-Type if it is none JSON is written in
    (``charset=latin-1``): the body was read as UTF-8 whatever it said, so an "é" sent
    in Latin-1 was refused as "not UTF-8", or read as another text. None if it is one."""
    if content_type is None or not _read_as_json(content_type):
        return None
    message = email.message.Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    if not isinstance(charset, str):
        return None  # none given (or one email cannot read): read as UTF-8, as JSON is
    try:
        known = codecs.lookup(charset.strip()).name
    except LookupError:
        known = ""
    return None if known in _JSON_CODECS else charset


async def _utf_only(send: Send, charset: str) -> None:
    """415 for a JSON body in another charset than JSON's own (UTF-8)."""
    await _error(
        send,
        415,
        "unsupported_charset",
        f"Content-Type charset {charset!r}: a JSON body is read as UTF-8 (RFC 8259); "
        "send it encoded as UTF-8, with charset=utf-8 or no charset",
    )


class Edge:
    """HEAD as GET, no compressed body or foreign charset (415), body size limit (413) and
    Idempotency-Key handling in front of `app`."""

    def __init__(
        self, app: ASGIApp, *, store: Store, clock: Clock, max_body: int, keep: float
    ) -> None:
        self.app = app
        self.store = store
        self.clock = clock
        self.max_body = max_body
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            await self.app({**scope, "method": "GET"}, receive, _headers_only(send))
            return
        if scope["type"] != "http" or scope["method"] in ("GET", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if _encoded(scope):
            await _unencoded_only(send, _header(scope, b"content-encoding"))
            return
        try:
            body = await self._read(scope, receive)
        except _Gone:  # nobody to answer, and a cut body (or none) is not what was asked
            return
        except _TooLarge:
            await _error(
                send,
                413,
                "body_too_large",
                f"the request body is over {self.max_body} bytes; send a smaller one "
                "(the server's limit is `tether serve --max-body`)",
            )
            return
        charset = _foreign_charset(_header(scope, b"content-type"))
        if body and charset is not None:
            await _utf_only(send, charset)
            return
        replay = _replayer(body, receive)
        key = _header(scope, b"idempotency-key")
        path = _route_path(scope)
        if key is None or scope["method"] != "POST" or not path.startswith(_API):
            await self.app(scope, replay, send)
            return
        if path.rstrip("/") in _SECRET_ANSWERS:
            await _error(
                send,
                422,
                "idempotency_key_refused",
                "Idempotency-Key: not accepted here: the answer holds a new token's secret, "
                "which the server never stores, so it could not be sent again; send the "
                "request without it (if a retry may have made a second token, list the "
                "tokens and revoke the one you do not use)",
            )
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
                raise _Gone  # acted on as cut, a cancel whose body never came cancelled
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
            # an empty key is told to give one: "send a shorter key" was no help to it
            fix = (
                f"it has {len(key)}); send a shorter key (a hash of a long one, say)"
                if key
                else "it is empty); send one (a request id, say)"
            )
            await _error(
                send,
                422,
                "invalid_idempotency_key",
                f"Idempotency-Key: give 1 to 200 characters ({fix}, or leave the header out",
            )
            return
        try:
            stored_key, request, earlier = await self._begin(scope, key, body)
        except TetherError as exc:  # refused, or the store failed: nothing was done
            await _refuse(send, exc)
            return
        if earlier is not None:
            same = earlier.request_hash in request  # as kept by this server or an older one
            await _again(send, key, same, earlier.status, earlier.response)
            return
        status, headers, chunks = 0, [], []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = int(message["status"]), list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        kept = False
        try:
            await self.app(scope, receive, capture)
            # it did something (2xx), or the state refused it (409); a redirect (a path
            # with a trailing slash) did nothing: its key was kept, and the request it sent
            # the client on to, with that key, was refused as another request (409)
            if 200 <= status < 300 or status == 409:
                await self.store.idempotent_finish(
                    stored_key, status, _keep(headers, b"".join(chunks))
                )
                kept = True
        finally:
            if not kept:
                await self.store.idempotent_finish(stored_key, None, None)

    async def _begin(
        self, scope: Scope, key: str, body: bytes
    ) -> tuple[str, tuple[str, str], IdempotentAnswer | None]:
        """Reserve the key of a request let in (else `ApiError`): (the key as
        stored, the request's digests (`_digests`), what the key stands for if it was
        used before)."""
        token = bearer_token(_header(scope, b"authorization"))
        # the route checks the scope; a key's answer is only for a credential still let in
        await granted(Request(scope), token)
        who = "-" if token is None else hash_token(token)[:32]
        stored_key = f"{who}:{key}"
        request = _digests(scope, body)
        earlier = await self.store.idempotent_begin(
            stored_key, request[0], at=self.clock.now(), keep=self.keep, stale_after=_STALE_AFTER
        )
        return stored_key, request, earlier


def _digests(scope: Scope, body: bytes) -> tuple[str, str]:
    """The request's digest by its meaning (kept now), then by its bytes (as servers
    before kept it, so that their keys are still honoured). A JSON body counts by its
    canonical form: another client library, or a retry by another code path, sends the
    same request with its keys in another order or other spacing. A body the API does
    not read as JSON (another content type, or not JSON at all) counts by its bytes.
    A path counts without its trailing '/' (the router redirects it there)."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    # a path with a trailing '/' is the request it is redirected to (307): the one the
    # client follows it with, under the same key, and its retry are one request
    path = str(scope["path"]).removesuffix("/")
    line = f"{scope['method']} {path}?{query}\n".encode()
    by_bytes = hashlib.sha256(line + body).hexdigest()
    if not _read_as_json(_header(scope, b"content-type")):
        return by_bytes, by_bytes
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON: the API refuses it, by its bytes
        return by_bytes, by_bytes
    return hashlib.sha256(line + canonical.encode()).hexdigest(), by_bytes


def _read_as_json(content_type: str | None) -> bool:
    """Whether the API reads a body of this type as JSON, as FastAPI decides it: a
    JSON type (``application/json``, ``application/*+json``); with none, it does not."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _keep(headers: list[Any], body: bytes) -> str:
    """An answer as stored (ASCII JSON: the body and the headers that matter), to be
    sent again by `_replayed`."""
    kept = [
        [bytes(k).decode("latin-1"), bytes(v).decode("latin-1")]
        for k, v in headers
        if bytes(k).lower() not in _NOT_REPLAYED
    ]
    return json.dumps({"headers": kept, "body": body.decode("utf-8", "surrogateescape")})


def _replayed(response: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a stored answer (`_keep`)."""
    try:
        stored = json.loads(response)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored["headers"]]
        return headers, str(stored["body"]).encode("utf-8", "surrogateescape")
    except (ValueError, KeyError, TypeError):  # kept by an older server: the body alone
        return [(b"content-type", b"application/json")], response.encode()


async def _again(
    send: Send, key: str, same: bool, status: int | None, response: str | None
) -> None:
    """Answer a request whose Idempotency-Key was used before (`same`: with this request)."""
    if not same:
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
        headers, body = _replayed(response)
        await _answer(send, status, body, [*headers, (b"idempotent-replayed", b"true")])


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
