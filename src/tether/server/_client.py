"""`Client` and `AsyncClient`: the typed Python clients of `tether serve`.

Each method is one call of the API (see `_wire.Calls`, which builds the
request and reads the answer without I/O); the two classes only send. Errors
the server answers raise `ApiError` (status, code, message, details); no
answer at all raises `ApiUnreachable`. POSTs accept `idempotency_key`: the
same key and request, sent again after a lost answer, acts once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import httpx

from ..record import RunRecord
from ._errors import ApiUnreachable
from ._models import (
    AICall,
    ApiTokenCreated,
    ApiTokenInfo,
    Event,
    QueueInfo,
    RunPage,
    RunSummary,
    Scope,
    UsageRow,
    WaitSummary,
    WorkerInfo,
)
from ._wire import UNSET, Call, Calls, SSEParser, error_of

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
_CALLS = Calls()


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("TETHER_TOKEN") or None
    return {} if token is None else {"Authorization": f"Bearer {token}"}


_STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)  # events come as long as the run lasts


@contextmanager
def _reaching(base_url: str) -> Iterator[None]:
    """No answer at all (refused, reset, timed out) raised as `ApiUnreachable`,
    for the blocking and the async client alike."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ApiUnreachable(base_url, str(exc) or type(exc).__name__) from None


def _read(call: Call[T], resp: httpx.Response) -> T:
    if resp.status_code >= 400:
        raise error_of(resp.status_code, resp.text)
    return call.read(resp.json())


class Client:
    """A blocking client of a tether server at `base_url` (e.g. ``http://127.0.0.1:8000``).

    `token` is an API token (default: $TETHER_TOKEN); `transport` replaces the
    network (``httpx.ASGITransport(app.asgi())`` or a `MockTransport` in tests).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(token), timeout=timeout, transport=transport
        )

    def _send(self, call: Call[T]) -> T:
        with _reaching(self.base_url):
            resp = self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers=call.headers
            )
        return _read(call, resp)

    # -- runs -----------------------------------------------------------------------

    def list_runs(self, **filters: Any) -> RunPage:
        """One page of runs, newest first. Filters: `status`, `workflow`, `tag`,
        `tenant`, `created_after`, `created_before`; `limit` (1-500), `cursor`."""
        return self._send(_CALLS.list_runs(**filters))

    def iter_runs(self, **filters: Any) -> Iterator[RunSummary]:
        """Every run that matches, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_runs(**filters, cursor=cursor)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_record(self, workflow_id: str) -> RunRecord:
        return self._send(_CALLS.get_record(workflow_id))

    def events(self, workflow_id: str, *, after: int = 0) -> list[Event]:
        return self._send(_CALLS.events(workflow_id, after))

    def stream_events(self, workflow_id: str, *, after: int = 0) -> Iterator[Event]:
        """The run's events as they happen (after seq `after`), until the run ends."""
        call, parser = _CALLS.stream(workflow_id, after), SSEParser()
        with (
            _reaching(self.base_url),
            self._http.stream(
                "GET", call.path, params=call.params, timeout=_STREAM_TIMEOUT
            ) as resp,
        ):
            if resp.status_code >= 400:
                raise error_of(resp.status_code, resp.read().decode())
            for event in parser.feed(resp.iter_lines()):
                yield event
                if parser.done:
                    return

    def waits(self, workflow_id: str) -> list[WaitSummary]:
        return self._send(_CALLS.waits(workflow_id))

    def start(
        self,
        workflow: str,
        input: Any = UNSET,
        *,
        idempotency_key: str | None = None,
        workflow_id: str | None = None,
        queue: str | None = None,
        tags: list[str] | None = None,
        tenant: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
        max_attempts: int | None = None,
        run_after: datetime | None = None,
        initial_state: Any = None,
    ) -> str:
        """Start a run of `workflow` on the server (with `queue`: queue it for
        workers); its id. Options as `App.start` / `App.submit`."""
        options = dict(locals())
        for name in ("self", "workflow", "input", "idempotency_key"):
            options.pop(name)
        return self._send(_CALLS.start(workflow, input, idempotency_key, **options))

    def cancel(
        self,
        workflow_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        idempotency_key: str | None = None,
    ) -> list[str]:
        return self._send(_CALLS.cancel(workflow_id, reason, compensate, idempotency_key))

    def signal(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        return self._send(_CALLS.signal(workflow_id, name, payload, idempotency_key))

    def send_event(
        self, event_type: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> list[str]:
        return self._send(_CALLS.send_event(event_type, payload, idempotency_key))

    def complete_token(
        self, token_id: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> str:
        return self._send(_CALLS.complete_token(token_id, payload, idempotency_key))

    def rerun_from(
        self, workflow_id: str, step: str, *, idempotency_key: str | None = None
    ) -> list[str]:
        return self._send(_CALLS.rerun_from(workflow_id, step, idempotency_key))

    # -- usage, queues, workers, tokens ----------------------------------------------

    def usage(self, **filters: Any) -> list[UsageRow]:
        """As `App.usage`: `workflow`, `tag`, `since`, `until`, `group_by`, `run`, `children`."""
        return self._send(_CALLS.usage(**filters))

    def ai_calls(self, workflow_id: str, *, children: bool = False) -> list[AICall]:
        return self._send(_CALLS.ai_calls(workflow_id, children))

    def queues(self) -> list[QueueInfo]:
        return self._send(_CALLS.queues())

    def workers(self) -> list[WorkerInfo]:
        return self._send(_CALLS.workers())

    def list_api_tokens(self) -> list[ApiTokenInfo]:
        return self._send(_CALLS.list_api_tokens())

    def create_api_token(self, scope: Scope, name: str | None = None) -> ApiTokenCreated:
        return self._send(_CALLS.create_api_token(scope, name))

    def revoke_api_token(self, token_id: str) -> list[ApiTokenInfo]:
        return self._send(_CALLS.revoke_api_token(token_id))

    def openapi(self) -> dict[str, Any]:
        return self._send(_CALLS.openapi())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The async twin of `Client`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(token), timeout=timeout, transport=transport
        )

    async def _send(self, call: Call[T]) -> T:
        with _reaching(self.base_url):
            resp = await self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers=call.headers
            )
        return _read(call, resp)

    async def list_runs(self, **filters: Any) -> RunPage:
        return await self._send(_CALLS.list_runs(**filters))

    async def iter_runs(self, **filters: Any) -> AsyncIterator[RunSummary]:
        cursor: str | None = None
        while True:
            page = await self.list_runs(**filters, cursor=cursor)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_record(self, workflow_id: str) -> RunRecord:
        return await self._send(_CALLS.get_record(workflow_id))

    async def events(self, workflow_id: str, *, after: int = 0) -> list[Event]:
        return await self._send(_CALLS.events(workflow_id, after))

    async def stream_events(self, workflow_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        call, parser = _CALLS.stream(workflow_id, after), SSEParser()
        with _reaching(self.base_url):
            async with self._http.stream(
                "GET", call.path, params=call.params, timeout=_STREAM_TIMEOUT
            ) as resp:
                if resp.status_code >= 400:
                    raise error_of(resp.status_code, (await resp.aread()).decode())
                async for line in resp.aiter_lines():
                    for event in parser.feed([line]):
                        yield event
                    if parser.done:
                        return

    async def waits(self, workflow_id: str) -> list[WaitSummary]:
        return await self._send(_CALLS.waits(workflow_id))

    async def start(
        self,
        workflow: str,
        input: Any = UNSET,
        *,
        idempotency_key: str | None = None,
        workflow_id: str | None = None,
        queue: str | None = None,
        tags: list[str] | None = None,
        tenant: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
        max_attempts: int | None = None,
        run_after: datetime | None = None,
        initial_state: Any = None,
    ) -> str:
        options = dict(locals())
        for name in ("self", "workflow", "input", "idempotency_key"):
            options.pop(name)
        return await self._send(_CALLS.start(workflow, input, idempotency_key, **options))

    async def cancel(
        self,
        workflow_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        idempotency_key: str | None = None,
    ) -> list[str]:
        return await self._send(_CALLS.cancel(workflow_id, reason, compensate, idempotency_key))

    async def signal(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        return await self._send(_CALLS.signal(workflow_id, name, payload, idempotency_key))

    async def send_event(
        self, event_type: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> list[str]:
        return await self._send(_CALLS.send_event(event_type, payload, idempotency_key))

    async def complete_token(
        self, token_id: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> str:
        return await self._send(_CALLS.complete_token(token_id, payload, idempotency_key))

    async def rerun_from(
        self, workflow_id: str, step: str, *, idempotency_key: str | None = None
    ) -> list[str]:
        return await self._send(_CALLS.rerun_from(workflow_id, step, idempotency_key))

    async def usage(self, **filters: Any) -> list[UsageRow]:
        return await self._send(_CALLS.usage(**filters))

    async def ai_calls(self, workflow_id: str, *, children: bool = False) -> list[AICall]:
        return await self._send(_CALLS.ai_calls(workflow_id, children))

    async def queues(self) -> list[QueueInfo]:
        return await self._send(_CALLS.queues())

    async def workers(self) -> list[WorkerInfo]:
        return await self._send(_CALLS.workers())

    async def list_api_tokens(self) -> list[ApiTokenInfo]:
        return await self._send(_CALLS.list_api_tokens())

    async def create_api_token(self, scope: Scope, name: str | None = None) -> ApiTokenCreated:
        return await self._send(_CALLS.create_api_token(scope, name))

    async def revoke_api_token(self, token_id: str) -> list[ApiTokenInfo]:
        return await self._send(_CALLS.revoke_api_token(token_id))

    async def openapi(self) -> dict[str, Any]:
        return await self._send(_CALLS.openapi())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
