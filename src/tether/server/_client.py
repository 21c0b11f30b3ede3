"""`Client` and `AsyncClient`: the typed Python clients of `tether serve`.

Each call of the API is written once, in `_wire.Calls`, under its method's name,
arguments and docs: it builds the request and reads the answer without I/O.
`_Sent` makes it a method of both classes, which add only the sending. Errors
the server answers raise `ApiError` (status, code, message, details); no answer
at all raises `ApiUnreachable`. POSTs accept `idempotency_key`: the same key and
request, sent again after a lost answer, acts once.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from urllib.parse import urlsplit

import httpx

from ..errors import InvalidArgumentError, NotSerializableError
from ..serde import dump_json
from ._errors import ApiUnreachable
from ._models import Event, RunSummary
from ._wire import Call, Calls, SSEParser, error_of, not_tether

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
P = ParamSpec("P")
_CALLS = Calls()


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("TETHER_TOKEN") or None
    return {} if token is None else {"Authorization": f"Bearer {token}"}


_STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)  # events come as long as the run lasts


@contextmanager
def _reaching(base_url: str, body: Any = None) -> Iterator[None]:
    """No answer at all (refused, reset, timed out) raised as `ApiUnreachable`, and a
    request that cannot be written (`_unsendable`) as `InvalidArgumentError`, or (its
    `body` not JSON, `_unwritable`) as `NotSerializableError`, for the blocking and the
    async client alike."""
    try:
        yield
    except (UnicodeEncodeError, httpx.LocalProtocolError) as exc:
        raise _unsendable(exc) from None
    except httpx.TransportError as exc:
        raise _unanswered(base_url, exc) from None
    except ValueError:
        refused = _unwritable(body)
        if refused is None:
            raise
        raise refused from None


# the request was never sent: nothing can have been done
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_TIMEOUTS: dict[type[httpx.TransportError], str] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}


def _unanswered(base_url: str, exc: httpx.TransportError) -> ApiUnreachable:
    """`exc` as `ApiUnreachable`. A request sent whose answer never came (a read timed
    out, the connection cut) was said to be one that could not reach the server, though
    the server may have acted on it (a POST started a run, and a retry started another)."""
    reason = str(exc) or type(exc).__name__
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # raised before any request was made
        request = None
    kind = _TIMEOUTS.get(type(exc))
    if request is not None and kind is not None:
        limit = request.extensions.get("timeout", {}).get(kind)
        if limit is not None:
            reason = f"{kind} timed out after {limit} s"
    if request is None or isinstance(exc, _NOT_SENT):
        return ApiUnreachable(base_url, reason)
    return ApiUnreachable(base_url, reason, sent=f"{request.method} {request.url.path}")


def _unwritable(body: Any) -> NotSerializableError | None:
    """Why `body` cannot be written as JSON (a NaN or an infinity, an int too long for
    text), with where in it, as the server refuses such a value (422
    ``not_serializable``): it was raised bare, as ``json.dumps`` words it ("Out of
    range float values are not JSON compliant"), naming no value. None if it can be."""
    if body is None:
        return None
    try:
        dump_json(body, what="the request body")
    except NotSerializableError as exc:
        return exc
    return None


def _unsendable(exc: UnicodeEncodeError | httpx.LocalProtocolError) -> InvalidArgumentError:
    """Why a request was never sent: text UTF-8 cannot write (a lone surrogate) in an
    id or a body, or a token or Idempotency-Key no HTTP header can carry. Each was
    raised bare (UnicodeEncodeError), or as the server unreachable (a newline)."""
    if isinstance(exc, httpx.LocalProtocolError) or exc.encoding == "ascii":
        return InvalidArgumentError(
            f"the API token or Idempotency-Key cannot be sent in an HTTP header ({exc}); "
            "pass the token as `tether tokens create` printed it, and a key of printable "
            "ASCII (a hash of another, say)"
        )
    bad = exc.object[exc.start : exc.end]
    return InvalidArgumentError(
        f"cannot send {bad!r} (in {exc.object[:60]!r}): a lone surrogate is not text UTF-8 "
        "can write; pass valid text (bytes decoded with errors='replace', say)"
    )


def _read(base_url: str, call: Call[T], resp: httpx.Response) -> T:
    if resp.status_code >= 400:
        raise _refused(resp, resp.text)
    try:  # pydantic's ValidationError is a ValueError; a record's reader raises the others
        return call.read(resp.json())
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _foreign(base_url, resp, resp.text) from exc


def _refused(resp: httpx.Response, text: str) -> Exception:
    """The error of an error answer (`text`: its body, decoded come what may: a proxy's
    page in Latin-1 raised a bare UnicodeDecodeError from a stream)."""
    at = f"{resp.request.method} {resp.request.url}"
    return error_of(resp.status_code, text, resp.headers.get("content-type"), at)


def _foreign(base_url: str, resp: httpx.Response, text: str) -> Exception:
    return not_tether(base_url, resp.status_code, resp.headers.get("content-type"), text)


def _not_events(resp: httpx.Response) -> bool:
    """Whether a stream's answer is not Server-Sent Events: read as events, the lines
    of a web page were none, and the run seemed to have ended without any."""
    kind: str = resp.headers.get("content-type", "").partition(";")[0].strip().lower()
    return kind != "text/event-stream"


class _Sent(Generic[P, T]):
    """One call of the API (a method of `Calls`) as a method of both clients: on a
    `Client` it sends the call and returns the answer; on an `AsyncClient` it is a
    coroutine function that does the same. Name, signature and docs are the
    `Calls` method's."""

    def __init__(self, build: Callable[Concatenate[Calls, P], Call[T]]) -> None:
        @functools.wraps(build)
        def blocking(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
            with _reaching(self.base_url):  # an id's path segment may not be writable
                call = build(_CALLS, *args, **kwargs)
            return self._send(call)

        @functools.wraps(build)
        async def awaited(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
            with _reaching(self.base_url):
                call = build(_CALLS, *args, **kwargs)
            return await self._send(call)

        # as `help` shows it: the answer's type, not the `Call` that reads it
        signature = inspect.signature(build)
        answer = str(signature.return_annotation).removeprefix("Call[").removesuffix("]")
        for method in (blocking, awaited):
            method.__module__ = __name__
            setattr(method, "__signature__", signature.replace(return_annotation=answer))  # noqa: B010
        self._blocking, self._awaited = blocking, awaited

    def __set_name__(self, owner: type, name: str) -> None:
        for method in (self._blocking, self._awaited):
            method.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, client: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: object, owner: type) -> Callable[..., Any]:
        method = self._awaited if issubclass(owner, AsyncClient) else self._blocking
        return method if client is None else MethodType(method, client)


H = TypeVar("H", bound=httpx.Client | httpx.AsyncClient)
X = TypeVar("X", bound=httpx.BaseTransport | httpx.AsyncBaseTransport)


class _Calls(Generic[H, X]):
    """What both clients share: the calls they make, and how they connect (over
    `_HTTP`, an ``httpx`` client of their kind). `Client` and `AsyncClient` add
    the sending."""

    _HTTP: Callable[..., H]

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: X | None = None,
    ) -> None:
        if urlsplit(base_url).scheme.lower() not in ("http", "https"):
            raise InvalidArgumentError(
                f"the server's URL must start with http:// or https://, got {base_url!r}; "
                "e.g. http://127.0.0.1:8000"
            )
        self.base_url = base_url.rstrip("/")
        with _reaching(self.base_url):  # a token no header can carry
            self._http: H = self._HTTP(
                base_url=self.base_url,
                headers=_headers(token),
                timeout=timeout,
                transport=transport,
            )

    list_runs = _Sent(Calls.list_runs)
    get_record = _Sent(Calls.get_record)
    events = _Sent(Calls.events)
    waits = _Sent(Calls.waits)
    start = _Sent(Calls.start)
    cancel = _Sent(Calls.cancel)
    signal = _Sent(Calls.signal)
    send_event = _Sent(Calls.send_event)
    complete_token = _Sent(Calls.complete_token)
    rerun_from = _Sent(Calls.rerun_from)
    retry_compensations = _Sent(Calls.retry_compensations)
    usage = _Sent(Calls.usage)
    ai_calls = _Sent(Calls.ai_calls)
    queues = _Sent(Calls.queues)
    workers = _Sent(Calls.workers)
    list_api_tokens = _Sent(Calls.list_api_tokens)
    create_api_token = _Sent(Calls.create_api_token)
    revoke_api_token = _Sent(Calls.revoke_api_token)
    openapi = _Sent(Calls.openapi)


class Client(_Calls[httpx.Client, httpx.BaseTransport]):
    """A blocking client of a tether server at `base_url` (e.g. ``http://127.0.0.1:8000``).

    `token` is an API token (default: $TETHER_TOKEN); `transport` replaces the
    network (``httpx.ASGITransport(app.asgi())`` or a `MockTransport` in tests).
    """

    _HTTP = httpx.Client

    def _send(self, call: Call[T]) -> T:
        with _reaching(self.base_url, call.body):
            resp = self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers=call.headers
            )
        return _read(self.base_url, call, resp)

    def iter_runs(self, **filters: Any) -> Iterator[RunSummary]:
        """Every run that matches, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_runs(**filters, cursor=cursor)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def stream_events(self, workflow_id: str, *, after: int = 0) -> Iterator[Event]:
        """The run's events as they happen (after seq `after`), until the run ends,
        or the server stops (then the iteration ends early: continue with `after`
        the last event's seq once it is back)."""
        parser = SSEParser()
        with _reaching(self.base_url):
            call = _CALLS.stream(workflow_id, after)
            with self._http.stream(
                "GET", call.path, params=call.params, timeout=_STREAM_TIMEOUT
            ) as resp:
                if resp.status_code >= 400:
                    raise _refused(resp, resp.read().decode(errors="replace"))
                if _not_events(resp):
                    raise _foreign(self.base_url, resp, resp.read().decode(errors="replace"))
                for event in parser.feed(resp.iter_lines()):
                    yield event
                    if parser.done:
                        return

    def close(self) -> None:
        """Close the connections (a `with Client(...)` block does it at its end)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Calls[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The async twin of `Client`: the same methods, awaited."""

    _HTTP = httpx.AsyncClient

    async def _send(self, call: Call[T]) -> T:
        with _reaching(self.base_url, call.body):
            resp = await self._http.request(
                call.method, call.path, params=call.params, json=call.body, headers=call.headers
            )
        return _read(self.base_url, call, resp)

    async def iter_runs(self, **filters: Any) -> AsyncIterator[RunSummary]:
        """Every run that matches, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_runs(**filters, cursor=cursor)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def stream_events(self, workflow_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """The run's events as they happen (after seq `after`), until the run ends,
        or the server stops (then the iteration ends early: continue with `after`
        the last event's seq once it is back)."""
        parser = SSEParser()
        with _reaching(self.base_url):
            call = _CALLS.stream(workflow_id, after)
            async with self._http.stream(
                "GET", call.path, params=call.params, timeout=_STREAM_TIMEOUT
            ) as resp:
                if resp.status_code >= 400:
                    raise _refused(resp, (await resp.aread()).decode(errors="replace"))
                if _not_events(resp):
                    text = (await resp.aread()).decode(errors="replace")
                    raise _foreign(self.base_url, resp, text)
                async for line in resp.aiter_lines():
                    for event in parser.feed([line]):
                        yield event
                    if parser.done:
                        return

    async def aclose(self) -> None:
        """Close the connections (an `async with AsyncClient(...)` block does it at its end)."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
