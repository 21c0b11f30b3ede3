"""The orchestrator's side of one invocation: sign, send, read the streamed answer.

Wire timestamps and deadlines are wall-clock unix seconds (`time.time()`), the
time two machines share; the App's clock (fake in tests) is not used here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import ValidationError

from .._signatures import SIGNATURE, TIMESTAMP
from ..kernel import sign
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
    `RemoteDeadlineError`) when no answer came, by the deadline at the latest.
    """
    body = inv.model_dump_json().encode()
    remaining = inv.deadline - time.time()
    if remaining <= 0:
        raise RemoteDeadlineError(
            f"invocation {inv.invocation}: its deadline passed before it was sent"
        )
    try:
        async with asyncio.timeout(remaining), httpx.AsyncClient(transport=transport) as client:
            return await _exchange(client, url, secret, inv, body, on_line)
    except TimeoutError:
        raise RemoteDeadlineError(
            f"invocation {inv.invocation}: no answer from {url} by its deadline"
        ) from None
    except httpx.HTTPError as exc:
        raise RemoteUnavailableError(
            f"invocation {inv.invocation}: {url} unreachable: {type(exc).__name__}: {exc}"
        ) from None


async def _exchange(
    client: httpx.AsyncClient, url: str, secret: str, inv: Invocation, body: bytes, on_line: OnLine
) -> Answer:
    headers = _headers(secret, body, inv.protocol)
    async with client.stream("POST", url, content=body, headers=headers, timeout=None) as resp:
        if resp.status_code != 200:
            raise _refusal(url, resp.status_code, await resp.aread(), inv.invocation)
        async for raw in resp.aiter_lines():
            if not raw.strip():
                continue
            try:
                line = Line.model_validate_json(raw)
            except ValidationError:
                raise RemoteRefusedError(
                    url, 200, "invalid_answer", f"not a protocol line: {raw[:200]!r}", None
                ) from None
            if line.type == "answer" and line.answer is not None:
                return line.answer
            if line.type == "aborted":
                what = (
                    RemoteDeadlineError
                    if "deadline" in (line.reason or "")
                    else RemoteUnavailableError
                )
                raise what(f"invocation {inv.invocation}: the tenant stopped: {line.reason}")
            await on_line(line)
    raise RemoteUnavailableError(
        f"invocation {inv.invocation}: {url} ended its answer without a status"
    )


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
