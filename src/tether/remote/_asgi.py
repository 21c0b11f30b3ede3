"""An in-process ASGI transport that streams the answer as the tenant sends it.

`httpx.ASGITransport` hands a response over only once the application has sent
all of it, so a tenant served in-process (tests, a tenant in the orchestrator's
own process) would have every line of an invocation cut by its deadline lost,
steps it completed included. `call` serves such a transport through this one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx

__all__ = ["StreamingASGI"]

Message = MutableMapping[str, Any]


class StreamingASGI(httpx.AsyncBaseTransport):
    """The application of `inner` (an `httpx.ASGITransport`), its body streamed."""

    def __init__(self, inner: httpx.ASGITransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        closed = asyncio.Event()
        body = request.stream.__aiter__()  # type: ignore[union-attr]
        read = [False]  # the request's body was read whole

        async def receive() -> Message:
            if not read[0]:
                with contextlib.suppress(StopAsyncIteration):
                    chunk = await body.__anext__()
                    return {"type": "http.request", "body": chunk, "more_body": True}
                read[0] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await sent.put(message)

        async def serve() -> None:
            try:
                await self._inner.app(_scope(self._inner, request), receive, send)
            except Exception as exc:  # handed to the reader
                await sent.put(exc)
            await sent.put({"type": "http.response.body", "more_body": False})

        task = asyncio.create_task(serve())
        try:
            start = await _next(sent)
        except BaseException:
            closed.set()
            task.cancel()
            raise
        return httpx.Response(
            start.get("status", 500),
            headers=start.get("headers", []),
            stream=_Body(sent, closed, task),
        )


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, sent: asyncio.Queue[Message | BaseException], closed: asyncio.Event, task: Any
    ) -> None:
        self._sent, self._closed, self._task = sent, closed, task

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await _next(self._sent)
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return

    async def aclose(self) -> None:
        """The client is done (or cut it short): the application sees a disconnect."""
        self._closed.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


async def _next(sent: asyncio.Queue[Message | BaseException]) -> Message:
    message = await sent.get()
    if isinstance(message, BaseException):
        raise message
    return message


def _scope(inner: httpx.ASGITransport, request: httpx.Request) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
        "scheme": request.url.scheme,
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?")[0],
        "query_string": request.url.query,
        "server": (request.url.host, request.url.port),
        "client": inner.client,
        "root_path": inner.root_path,
    }
