"""`handler(tenant)`: the tenant's ASGI endpoint for invocations.

Checks, in order, before any workflow code runs: the signature (over the
timestamp and the body, `tether.server`'s webhook check), the timestamp's
window, that this signature was not accepted before (remembered in memory
until it leaves the window), the protocol version, the request's shape, the
workflow and its version, and the deadline. Then the body replays, and the
answer streams back one line per completed step (see `_wire`).

Seen signatures are remembered per process: after a tenant restart, a captured
request could be delivered again until its deadline (the orchestrator's
`deadline=`, 30 s by default) passes; it carries the journal as it stood, so
it replays recorded steps from it and runs only what a genuine retry would.

The deadline binds the tenant too: a request that arrives after it is
refused, and the body still running at it is cancelled and the stream ends
with an ``aborted`` line; a client that hangs up cancels the body as well.

Timestamps and deadlines are wall-clock unix seconds (`time.time()`), as the
orchestrator sends them: the tenant's `clock` is its workflows' (a test's
`FakeClock`), never the wire's.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._signatures import HookRejected, Webhook, check_signature
from ..errors import InvalidArgumentError
from ._errors import RemoteTooLargeError
from ._tenant import TenantApp, execute, served_versions
from ._wire import (
    MAX_BODY,
    PROTOCOL_HEADER,
    SUPPORTED_PROTOCOLS,
    Invocation,
    Line,
    versions_text,
)

__all__ = ["MAX_BODY", "handler"]

log = logging.getLogger("tether.remote")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.details = status, code, details

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": str(self), "details": self.details}}
        return JSONResponse(body, status_code=self.status)


class _Seen:
    """Signatures accepted within the window: a second delivery of one is refused.

    One is remembered while its time of acceptance is within twice the timestamp
    tolerance (a timestamp may be that far off either way). They leave in order of
    that time, from a heap: a request looks only at those that leave, not at them all.
    """

    def __init__(self, window: float) -> None:
        self._window = window
        self._seen: dict[str, float] = {}
        self._by_time: list[tuple[float, str]] = []  # a heap of (accepted at, signature)

    def admit(self, signature: str, now: float) -> bool:
        """Whether `signature` is new at `now` (unix seconds), remembering it if so."""
        cutoff = now - 2 * self._window
        while self._by_time and self._by_time[0][0] <= cutoff:
            _, old = heapq.heappop(self._by_time)
            del self._seen[old]
        if signature in self._seen:
            return False
        self._seen[signature] = now
        heapq.heappush(self._by_time, (now, signature))
        return True


def handler(tenant: TenantApp) -> Starlette:
    """The ASGI application that serves `tenant`'s workflows to an orchestrator:
    ``POST /`` with a signed invocation (mount it at any path). Needs the ``server``
    extra."""
    if not isinstance(tenant, TenantApp):
        raise InvalidArgumentError(f"handler needs a tether.remote.TenantApp, got {tenant!r}")
    seen = _Seen(tenant.tolerance)
    hook = Webhook("remote", tenant.secrets, tolerance=tenant.tolerance)

    async def invoke(request: Request) -> Response:
        try:
            inv, size = await _admit(request, tenant, hook, seen)
        except _Refused as refused:
            return refused.response()
        # the steps it completes go back in the next invocation: they have what is left
        lines = _lines(tenant, inv, MAX_BODY - size)
        return StreamingResponse(lines, media_type="application/x-ndjson")

    return Starlette(routes=[Route("/", invoke, methods=["POST"]), Route("/", _about)])


async def _about(request: Request) -> Response:
    """A GET (or HEAD) of the endpoint: a load balancer's health check, a person checking
    the deployment in a browser. It said only 405 Method Not Allowed, so a health check
    never passed; it names no workflow (it is unsigned)."""
    return JSONResponse(
        {
            "service": "tether.remote tenant",
            "protocols": list(SUPPORTED_PROTOCOLS),
            "message": "a tether tenant is served here: an orchestrator POSTs signed "
            "invocations to this URL (register it with app.remote_workflow(name, url=..., "
            "secret=...))",
        }
    )


async def _admit(
    request: Request, tenant: TenantApp, hook: Webhook, seen: _Seen
) -> tuple[Invocation, int]:
    """The invocation and its size in bytes, once every check passed; `_Refused` naming
    the first that did not."""
    body = await _body(request)
    now = time.time()
    try:
        signature = check_signature(hook, request.headers, body, now)
    except HookRejected as exc:
        raise _Refused(exc.status, exc.code, str(exc)) from None
    if not seen.admit(signature, now):
        raise _Refused(401, "replayed", "this signed request was received before")
    try:
        data = json.loads(body)
        protocol = data.get("protocol") if isinstance(data, dict) else None
    except ValueError:
        raise _Refused(400, "invalid_json", "the body is not JSON") from None
    _check_types(data)
    header = request.headers.get(PROTOCOL_HEADER)
    if protocol not in SUPPORTED_PROTOCOLS or (header is not None and header != str(protocol)):
        raise _Refused(
            426,
            "protocol_version_mismatch",
            f"protocol version {protocol!r} is not spoken here",
            supported=list(SUPPORTED_PROTOCOLS),
        )
    try:
        inv = Invocation.model_validate(data)
    except ValidationError as exc:
        fields = [f"{'.'.join(str(p) for p in e['loc'])} ({e['msg']})" for e in exc.errors()]
        raise _Refused(400, "invalid_request", f"bad fields: {', '.join(fields)}") from None
    _check_state(inv.state)
    _check_served(tenant, inv, now)
    return inv, len(body)


def _check_types(data: Any) -> None:
    """Refuse (400) what JSON parses but no orchestrator sends: a protocol that is not
    an integer (``true`` equals 1 in Python), a deadline that is not a finite number
    (NaN is never reached, Infinity never passes)."""
    if not isinstance(data, dict):
        raise _Refused(400, "invalid_request", "the body is not a JSON object")
    protocol = data.get("protocol")
    if protocol is not None and (isinstance(protocol, bool) or not isinstance(protocol, int)):
        raise _Refused(
            400, "invalid_request", f"protocol must be an integer, got {json.dumps(protocol)}"
        )
    deadline = data.get("deadline")
    if deadline is not None and not _finite(deadline):
        raise _Refused(
            400,
            "invalid_request",
            f"deadline must be a finite number of unix seconds, got {json.dumps(deadline)}",
        )


def _check_state(state: str | None) -> None:
    """Refuse (400) a run's state that is not JSON text: the replay could not start
    from it, and the answer was an ``aborted`` line ("executor error: JSONDecodeError"),
    which an orchestrator takes for a tenant cut short and invokes again, to its cap."""
    if state is None:
        return
    try:
        json.loads(state)
    except RecursionError:
        raise _Refused(400, "invalid_request", "bad fields: state (nested too deep)") from None
    except ValueError:
        raise _Refused(
            400, "invalid_request", f"bad fields: state (not JSON text: {state[:100]!r})"
        ) from None


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


async def _body(request: Request) -> bytes:
    """The body, read no further than `MAX_BODY`: it is not signed-checked yet, so a
    stranger's huge body must not be held in memory (its Content-Length is refused
    before a byte is read, a body without one once it passes the limit)."""
    declared = request.headers.get("content-length", "")
    too_large = _Refused(
        413,
        "too_large",
        f"the invocation is {declared + ' bytes, ' if declared.isdigit() else ''}over the "
        f"{MAX_BODY} bytes this tenant reads: {RemoteTooLargeError.FIX}",
        limit=MAX_BODY,
    )
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _check_served(tenant: TenantApp, inv: Invocation, now: float) -> None:
    defn = tenant.workflows.get(inv.workflow)
    if defn is None:
        known = sorted(tenant.workflows)
        raise _Refused(
            404, "workflow_not_found", f"no workflow {inv.workflow!r} here", workflows=known
        )
    versions = served_versions(defn)
    if inv.version not in versions:
        raise _Refused(
            409,
            "workflow_version_mismatch",
            f"workflow {inv.workflow!r} is served at versions {versions_text(versions)}, "
            f"not {versions_text([inv.version])}",
            versions=versions,
        )
    if now >= inv.deadline:
        raise _Refused(
            408,
            "deadline_exceeded",
            f"the invocation's deadline passed {now - inv.deadline:.1f} s before it arrived "
            "here; if that is longer than it spent on the way, this machine's clock is ahead "
            "of the orchestrator's: synchronise them (NTP)",
        )


async def _lines(tenant: TenantApp, inv: Invocation, room: int) -> AsyncIterator[bytes]:
    """The streamed answer. A step line is yielded, and so sent, before the body is let
    go on (the `send` it awaits returns only then). `room`: the bytes the steps it
    completes may add to the next invocation."""
    queue: asyncio.Queue[tuple[Line, asyncio.Event | None]] = asyncio.Queue()

    async def send(line: Line) -> None:
        sent = asyncio.Event()
        await queue.put((line, sent))
        await sent.wait()

    async def run() -> None:
        defn = tenant.workflows[inv.workflow]
        try:
            answer = await execute(tenant, defn, inv, send, room=room)
        except Exception as exc:  # a fault of the executor, not of the workflow
            log.exception("invocation %s of run %s failed", inv.invocation, inv.run_id)
            await queue.put((Line(type="aborted", reason=f"executor error: {exc!r}"), None))
            return
        await queue.put((Line(type="answer", answer=answer), None))

    task = asyncio.create_task(run())
    try:
        while True:
            remaining = inv.deadline - time.time()
            try:
                line, sent = await asyncio.wait_for(queue.get(), max(remaining, 0.0))
            except TimeoutError:
                yield _encode(Line(type="aborted", reason="deadline exceeded"))
                return
            yield _encode(line)
            if sent is None:
                return
            sent.set()
    finally:
        task.cancel()  # the deadline passed, or the orchestrator hung up
        await asyncio.wait([task])


def _encode(line: Line) -> bytes:
    return line.model_dump_json(exclude_none=True).encode() + b"\n"
