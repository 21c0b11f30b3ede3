"""The orchestrator's side of one invocation: sign, send, read the streamed answer.

Wire timestamps and deadlines are wall-clock unix seconds (`time.time()`), the
time two machines share; the App's clock (fake in tests) is not used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
from pydantic import ValidationError

from .._signatures import SIGNATURE, TIMESTAMP
from ..errors import NotSerializableError, explain_validation
from ..kernel import sign
from ..serde import dump_json
from ._asgi import StreamingASGI
from ._errors import (
    RemoteDeadlineError,
    RemoteRefusedError,
    RemoteUnavailableError,
    RemoteVersionError,
)
from ._wire import PROTOCOL_HEADER, Answer, Invocation, Line

__all__ = ["OnLine", "call"]

OnLine = Callable[[Line], Awaitable[None]]

_VERSION_CODES = ("protocol_version_mismatch", "workflow_version_mismatch")


def _headers(secret: str, body: bytes, protocol: int) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "content-type": "application/json",
        TIMESTAMP: ts,
        SIGNATURE: sign(secret, ts, body),
        PROTOCOL_HEADER: str(protocol),
    }


async def call(
    url: str,
    secret: str,
    inv: Invocation,
    on_line: OnLine,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Answer:
    """Send `inv` and return the tenant's answer; each line before it goes to
    `on_line` as it arrives (and is recorded before the next one is read).

    `RemoteRefusedError` for a refusal, `RemoteUnavailableError` (or its
    `RemoteDeadlineError`) when no answer came, by the deadline at the latest. The
    deadline cuts only the reading: every line received whole before it is recorded
    (a line cut in two is not), its recording never cut short.
    """
    body = inv.model_dump_json().encode()
    remaining = inv.deadline - time.time()
    if remaining <= 0:
        raise RemoteDeadlineError(
            f"invocation {inv.invocation}: its deadline passed before it was sent"
        )
    if isinstance(transport, httpx.ASGITransport):  # httpx's answers only once whole
        transport = StreamingASGI(transport)
    cut = asyncio.get_running_loop().time() + remaining
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            return await _exchange(client, url, secret, inv, body, on_line, cut)
    except httpx.HTTPError as exc:
        raise RemoteUnavailableError(
            f"invocation {inv.invocation}: {url} unreachable: {type(exc).__name__}: {exc}"
        ) from None


async def _exchange(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    inv: Invocation,
    body: bytes,
    on_line: OnLine,
    cut: float,
) -> Answer:
    request = client.build_request(
        "POST", url, content=body, headers=_headers(secret, body, inv.protocol), timeout=None
    )
    late = RemoteDeadlineError(f"invocation {inv.invocation}: no answer from {url} by its deadline")
    try:
        async with asyncio.timeout_at(cut):
            resp = await client.send(request, stream=True)
    except TimeoutError:
        raise late from None
    try:
        if resp.status_code != 200:
            try:
                async with asyncio.timeout_at(cut):
                    text = await resp.aread()
            except TimeoutError:
                raise late from None
            raise _refusal(url, resp.status_code, text, inv.invocation)
        return await _read(resp, url, inv, on_line, cut, late)
    finally:
        await resp.aclose()


async def _read(
    resp: httpx.Response,
    url: str,
    inv: Invocation,
    on_line: OnLine,
    cut: float,
    late: RemoteDeadlineError,
) -> Answer:
    """The answer line, each line before it handed to `on_line` once received whole;
    only waiting for more is cut at the deadline."""
    chunks, pending = resp.aiter_bytes(), bytearray()
    while True:
        try:
            async with asyncio.timeout_at(cut):
                chunk = await anext(chunks, None)
        except TimeoutError:
            raise late from None  # what is pending is part of a line: not recorded
        if chunk is None:
            break
        # only the new chunk is searched for line ends: a long line arriving in many
        # chunks was copied and split again whole for each one (quadratic: a 16 MB
        # result in 4 KB chunks took 15 s, past the deadline, and ran again each time)
        if b"\n" not in chunk:
            pending += chunk
            continue
        first, *whole, rest = chunk.split(b"\n")
        for raw in (bytes(pending + first), *whole):
            answer = await _line(raw, url, inv, on_line)
            if answer is not None:
                return answer
        pending = bytearray(rest)
    if pending.strip():  # a last line without its newline: whole if it parses
        with contextlib.suppress(RemoteRefusedError):
            answer = await _line(bytes(pending), url, inv, on_line)
            if answer is not None:
                return answer
        raise RemoteUnavailableError(
            f"invocation {inv.invocation}: {url} ended its answer in the middle of a line"
        )
    raise RemoteUnavailableError(
        f"invocation {inv.invocation}: {url} ended its answer without a status"
    )


async def _line(raw: bytes, url: str, inv: Invocation, on_line: OnLine) -> Answer | None:
    """The answer if `raw` is it; any other line goes to `on_line`."""
    if not raw.strip():
        return None
    try:
        line = Line.model_validate_json(raw)
        _check_json("the line", raw)  # a key, a name or an error the store cannot keep
        _check_event(line.event)
        for where, text in _json_texts(line):
            _check_json(where, text)
    except (ValidationError, ValueError) as exc:
        why = explain_validation(exc) if isinstance(exc, ValidationError) else str(exc)
        text = raw[:200].decode(errors="replace")
        raise RemoteRefusedError(
            url, 200, "invalid_answer", f"not a protocol line ({why[:300]}): {text!r}", None
        ) from None
    if line.type == "answer" and line.answer is not None:
        return line.answer
    if line.type == "aborted":
        what = RemoteDeadlineError if "deadline" in (line.reason or "") else RemoteUnavailableError
        raise what(f"invocation {inv.invocation}: the tenant stopped: {line.reason}")
    await on_line(line)
    return None


def _check_json(where: str, text: str | bytes) -> None:
    """`ValueError` unless `text` is JSON the store can keep: Python's parser takes
    NaN, Infinity, a NUL character and a lone surrogate, which PostgreSQL refuses
    (the write failed on every drive and the run stayed running for good), and a
    value nested past the recursion limit raised RecursionError, not a protocol
    error."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{where} is nested too deep") from None
    except ValueError:
        raise ValueError(f"{where} is not JSON text") from None
    try:
        dump_json(value, what=where)
    except NotSerializableError as exc:
        raise ValueError(str(exc)) from None


def _check_event(event: dict[str, Any] | None) -> None:
    """An event line names its type (a non-empty string) and a message string or
    none: ``{"type": 5}`` was recorded as an event of type ``"5"``."""
    if event is None:
        return
    kind, message, detail = event.get("type"), event.get("message"), event.get("detail")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"event.type must be a non-empty string, got {kind!r}"[:200])
    if not isinstance(message, str | None) or not isinstance(detail, str | None):
        raise ValueError("event.message and event.detail must be strings (detail JSON text)")


def _json_texts(line: Line) -> Iterator[tuple[str, str]]:
    """The line's fields that carry JSON text, by where they are."""
    if line.step is not None:
        yield "step.result", line.step.result
        for event in line.step.events or ():
            if isinstance(event.get("detail"), str):
                yield "step.events[].detail", event["detail"]
    if line.event is not None and isinstance(line.event.get("detail"), str):
        yield "event.detail", line.event["detail"]
    if line.state is not None:
        yield "state", line.state
    answer = line.answer
    if answer is not None and answer.output is not None:
        yield "answer.output", answer.output
    points = [*(answer.waitpoints if answer else ()), *(p for p in (line.child, line.wait) if p)]
    for wp in points:
        for name, text in (("input", wp.input), ("match", wp.match)):
            if text is not None:
                yield f"waitpoint {wp.key!r} {name}", text


def _refusal(url: str, status: int, body: bytes, invocation: int) -> Exception:
    try:
        error: Any = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code", "http_error"))
    message = str(error.get("message", body[:200].decode(errors="replace")))
    if status >= 500:
        return RemoteUnavailableError(
            f"invocation {invocation}: {url} answered {status}: {message}"
        )
    if status == 408 or code == "deadline_exceeded":
        return RemoteDeadlineError(f"invocation {invocation}: {url}: {message}")
    kind = RemoteVersionError if code in _VERSION_CODES else RemoteRefusedError
    return kind(url, status, code, message, error.get("details"))
