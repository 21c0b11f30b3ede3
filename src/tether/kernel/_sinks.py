"""The event-sink port and its adapters.

The outbox hands each event to every sink; a sink that raises makes the
delivery fail, and the outbox retries it later with back-off, in order per
run, until it is dead-lettered. Delivery is at least once: a sink may see an
event again after a failure, and should be idempotent on its
`OutboxEvent.delivery_id`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import hashlib
import hmac
import http.client
import inspect
import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from .._iso_time import iso_z
from ..errors import InvalidArgumentError
from ._sink_pool import SinkPool, off_loop

__all__ = [
    "CallableSink",
    "CollectingSink",
    "EventSink",
    "LoggingSink",
    "OutboxEvent",
    "WebhookSink",
    "check_sink",
    "check_sinks",
    "sign",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event as delivered: the run, its order within the run, and what happened."""

    workflow_id: str
    seq: int
    type: str
    message: str | None
    detail: Any
    at: datetime
    attempt: int
    # when the run was created: a run id reused after its run was pruned numbers its
    # events from 1 again, and the new run's events must not pass for the old one's
    run_created: datetime | None = None

    @property
    def delivery_id(self) -> str:
        """The same for every attempt at this event and for no other event: the key to
        drop at-least-once's repeats by (``workflow_id:seq:run`` with the run's creation
        in microseconds since the epoch; ``workflow_id:seq`` when that is not known)."""
        if self.run_created is None:
            return f"{self.workflow_id}:{self.seq}"
        run = (self.run_created - _EPOCH) // timedelta(microseconds=1)
        return f"{self.workflow_id}:{self.seq}:{run}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflowId": self.workflow_id,
            "seq": self.seq,
            "type": self.type,
            "message": self.message,
            "detail": self.detail,
            "at": iso_z(self.at),
            "attempt": self.attempt,
        }


@runtime_checkable
class EventSink(Protocol):
    """Where published events go."""

    async def publish(self, event: OutboxEvent) -> None:
        """Deliver one event; raise to have it retried later."""
        ...


class LoggingSink:
    """Writes each event to a `logging` logger (structured in `extra`)."""

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        level: int | str = logging.INFO,
    ) -> None:
        # checked here: a logger's name or an unknown level was taken, and every
        # delivery then failed (AttributeError, "Level not an integer") until dead-lettered
        if logger is not None and not isinstance(logger, logging.Logger | logging.LoggerAdapter):
            raise InvalidArgumentError(
                f"LoggingSink logger must be a logging.Logger, got {logger!r}; e.g. "
                "LoggingSink(logging.getLogger('myapp.events'))"
            )
        self._log = logger or logging.getLogger("tether.events")
        self._level = _log_level(level)

    async def publish(self, event: OutboxEvent) -> None:
        self._log.log(
            self._level,
            "%s %s#%d %s",
            event.type,
            event.workflow_id,
            event.seq,
            event.message or "",
            extra={"tether_event": event.to_dict()},
        )


def _log_level(level: object) -> int:
    """`level` as the number `Logger.log` takes: a number, or a level's name."""
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.upper())
        if number is not None:
            return number
    elif isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    raise InvalidArgumentError(
        f"LoggingSink level must be a logging level, got {level!r}; e.g. logging.INFO or 'INFO'"
    )


def check_sink(sink: object) -> None:
    """Refuse what cannot take events, when the App is built rather than at every
    delivery until each event is dead-lettered: a sink's class instead of a sink, or a
    sink whose `publish` is a plain function (awaiting its None failed the delivery
    after it ran: each event sent again, 8 times over)."""
    publish = getattr(sink, "publish", None)
    what = (
        f"{sink!r} is not an event sink (it needs an `async def publish(event)`); use a "
        "sink from tether.kernel: LoggingSink(), CallableSink(fn), WebhookSink(url, secret)"
    )
    if isinstance(sink, type):
        raise InvalidArgumentError(
            f"sinks: {sink.__name__} is a class, not a sink: pass an instance, e.g. "
            f"{sink.__name__}(...)"
        )
    if not callable(publish):
        raise InvalidArgumentError(f"sinks: {what}")
    if not _is_async(publish):
        raise InvalidArgumentError(
            f"sinks: {type(sink).__name__}.publish is not async: write it as `async def "
            "publish(self, event)`, or pass a plain function as CallableSink(fn), which "
            "runs it in a thread"
        )


def check_sinks(sinks: object) -> list[EventSink]:
    """The sinks as a list, each checked by `check_sink`."""
    if isinstance(sinks, str | bytes) or not isinstance(sinks, Iterable):
        raise InvalidArgumentError(
            f"sinks must be a list of event sinks, got {sinks!r}; e.g. "
            "sinks=[tether.kernel.LoggingSink()]"
        )
    checked = list(sinks)
    for sink in checked:
        check_sink(sink)
    return checked


class CollectingSink:
    """Keeps every delivered event in `events` (for tests)."""

    def __init__(self) -> None:
        self.events: list[OutboxEvent] = []

    async def publish(self, event: OutboxEvent) -> None:
        self.events.append(event)

    def of(self, workflow_id: str) -> list[OutboxEvent]:
        return [e for e in self.events if e.workflow_id == workflow_id]


class CallableSink:
    """Calls a plain function (sync or async) with each event: the plugin sink.

    A sync function runs in a thread (a few, reused: `SinkPool`): one blocking on a
    broker that never answers held the host's event loop (its claims, its job leases'
    renewals, its signal handlers) and no `OutboxPolicy.delivery_timeout` could end it.
    Given up on, it is left to finish in its daemon thread; `aclose` (the kernel's) and
    a normal exit wait for the calls running then, up to `EXIT_GRACE` seconds, so a
    delivery is not cut off midway, nor a hung one kept waited for."""

    def __init__(self, fn: Callable[[OutboxEvent], Any]) -> None:
        if not callable(fn) or not _takes_one_argument(fn):
            raise InvalidArgumentError(
                f"CallableSink needs a callable taking an OutboxEvent, got {fn!r}; e.g. "
                "CallableSink(lambda event: print(event.type))"
            )
        self._fn = fn
        self._pool = SinkPool("tether-sink")

    async def publish(self, event: OutboxEvent) -> None:
        if _is_async(self._fn):
            await self._fn(event)
            return
        out = await off_loop(self._pool, self._fn, event)
        if inspect.isawaitable(out):  # a sync callable handing back a coroutine
            await out

    async def aclose(self) -> None:
        """Wait (up to `EXIT_GRACE` seconds) for the calls running now to return."""
        await asyncio.to_thread(self._pool.close)


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    """Whether `fn(event)` can be called (True where the signature cannot be read): one
    taking none, or two, failed every delivery with a TypeError until dead-lettered."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: let the call tell
        return True
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True


def _is_async(fn: Callable[..., Any]) -> bool:
    """An async function, or an object whose `__call__` is one."""
    call = vars(type(fn)).get("__call__")
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds).

    HMAC-SHA256 over ``timestamp + "." + body``. A receiver recomputes it from the
    ``X-Tether-Timestamp`` header as sent and the raw body as received (not the JSON
    parsed and dumped again), compares with `hmac.compare_digest` (not ``==``: its
    timing tells the signature away), and refuses a timestamp minutes from its clock
    (a replay). An empty secret is refused: a receiver whose secret was left unset
    would otherwise accept any request signed with an empty key.
    """
    if not isinstance(secret, str | bytes) or not secret:
        raise InvalidArgumentError(
            f"sign: secret must be a non-empty str or bytes, got {secret!r}; is the "
            "webhook's secret set where this reads it?"
        )
    if not isinstance(timestamp, str):
        raise InvalidArgumentError(
            f"sign: timestamp must be the X-Tether-Timestamp header's text, got "
            f"{timestamp!r}; e.g. sign(secret, str(int(time.time())), body)"
        )
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidArgumentError(
            f"sign: body must be the request's raw bytes as received, got "
            f"{type(body).__name__}; a body decoded or parsed and dumped again does not "
            "match its signature"
        )
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + bytes(body), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# printable ASCII but "%": what a header value carries as is (http.client sends latin-1
# and refuses line breaks); the rest is percent-encoded as UTF-8
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _header_text(text: str) -> str:
    """`text` as a header value: a run id may be any text (an emoji, a line break), and
    one http.client cannot send would fail every delivery of its run until dead."""
    return (
        text
        if text.isascii() and text.isprintable() and "%" not in text
        else (urllib.parse.quote(text, safe=_HEADER_SAFE))
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would follow a 301/302/303 as a body-less GET, whose
    200 would count the event as delivered (and send it nowhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """urlopen's handlers (proxies from the environment at first use, as urlopen's)
    without following redirects."""
    return urllib.request.build_opener(_NoRedirect)


def _check_url(url: object) -> str:
    """`url` if a POST to it can work: http(s) in any case, a host, a valid port and
    nothing a request line cannot carry; else say why now, not at every delivery."""
    bad = f"webhook url must be http(s)://host[:port]/path, got {url!r}"
    if not isinstance(url, str):
        raise InvalidArgumentError(bad)
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidArgumentError(f"{bad}: it contains a space or a control character")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"{bad}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgumentError(bad)
    if not parts.hostname:
        raise InvalidArgumentError(f"{bad}: it names no host")
    if port == 0:
        raise InvalidArgumentError(f"{bad}: port 0 cannot be connected to")
    if not (parts.path + parts.query).isascii():
        raise InvalidArgumentError(f"{bad}: percent-encode its non-ASCII characters")
    return url


def _split_credentials(url: str) -> tuple[str, str | None]:
    """`url` without its user and password, and the Basic Authorization header they
    make (None if it has none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    bare = (parts.scheme, host, parts.path, parts.query, parts.fragment)
    return urllib.parse.urlunsplit(bare), f"Basic {token}"


# a header name as HTTP defines it (RFC 9110 token)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_headers(headers: object) -> dict[str, str]:
    """`headers` if every POST can carry them, else say which one and why now: http.client
    refuses a line break and sends values as latin-1, and it raised at every delivery, a
    bare ValueError naming no webhook, until each event was dead-lettered."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidArgumentError(
            f"webhook headers must be a mapping of header names to str values, got {headers!r}"
        )
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidArgumentError(
                f"webhook header name {name!r} is not an HTTP header name: use letters, "
                "digits and '-' (no spaces or colons), e.g. 'X-Team'"
            )
        if not isinstance(value, str):
            raise InvalidArgumentError(
                f"webhook header {name!r} must be a str, got {value!r}; pass str({value!r})"
            )
        why = _unsendable(value)
        if why is not None:  # the value itself is not shown: it may be a credential
            raise InvalidArgumentError(
                f"webhook header {name!r} has a value HTTP cannot send: {why}; send no "
                "line breaks or control characters, only latin-1 (percent-encode the rest "
                "with urllib.parse.quote)"
            )
    return dict(headers)


def _unsendable(value: str) -> str | None:
    """Why http.client cannot send `value` as a header value, or None."""
    for at, ch in enumerate(value):
        if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            return f"a control character (U+{ord(ch):04X}) at position {at}"
        if ord(ch) > 0xFF:
            return f"a character outside latin-1 (U+{ord(ch):04X}) at position {at}"
    return None


_SAID = 200  # characters of a refusing receiver's answer kept in the error


def _said(resp: urllib.error.HTTPError) -> str:
    """The start of a refusing receiver's answer, for the error: a bare "HTTP 400" left
    the operator to guess what it disliked (its signature check, its schema). Only a
    little is read: a huge answer is not taken into memory."""
    try:
        head = resp.read(_SAID * 4)
    except (OSError, http.client.HTTPException):  # it closed mid-answer: say the status
        return ""
    text = " ".join(head.decode("utf-8", "replace").split())
    if not text:
        return ""
    return f": {text[: _SAID - 1] + '…' if len(text) > _SAID else text}"


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date), or
    None if it has none or none that can be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class WebhookSink:
    """POSTs each event as JSON to a URL, signed with HMAC-SHA256.

    Headers: ``X-Tether-Timestamp`` (unix seconds), ``X-Tether-Signature``
    (``sha256=<hex>``, see `sign`), ``X-Tether-Event`` (the type) and
    ``X-Tether-Delivery`` (`OutboxEvent.delivery_id`: ``workflow_id:seq:run``, stable
    across retries, and repeated by no run that reuses the id); these two
    are percent-encoded (UTF-8) where not printable ASCII, or if they hold a ``%``. Any
    non-2xx answer or network error fails the delivery (the error quoting the start of
    the answer); the outbox retries it with back-off, waiting at least as long as a
    ``Retry-After`` asks (up to `OutboxPolicy.max_delay`). Redirects are not followed (a 3xx fails, naming its
    ``Location``): urllib would re-send the event as a GET without its body.
    A user and password in the url (``https://user:pass@host/hook``) are sent as
    Basic auth, and `url` keeps the rest (errors and logs never show the password).
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # credentials in the url (https://user:pass@host/hook) are sent as Basic auth, as
        # curl and requests do: urllib took "user:pass@host" for the host name, failed
        # every delivery ("Name or service not known") and logged the password each time
        self.url, basic = _split_credentials(_check_url(url))
        if not isinstance(secret, str | bytes) or not secret:
            raise InvalidArgumentError(
                f"webhook secret must be a non-empty str or bytes, got {secret!r}"
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise InvalidArgumentError(f"webhook timeout must be seconds > 0, got {timeout!r}")
        self._secret = secret
        self._timeout = timeout
        self._headers = _check_headers(headers)
        if basic is not None:
            if any(name.lower() == "authorization" for name in self._headers):
                raise InvalidArgumentError(
                    "webhook credentials given twice: in the url (user:password@) and in "
                    "an Authorization header; keep one"
                )
            self._headers["Authorization"] = basic
        if not callable(clock):  # e.g. the App's FakeClock: every delivery raised TypeError
            raise InvalidArgumentError(
                f"webhook clock must be a function returning unix seconds, got {clock!r}; "
                "e.g. clock=time.time, or for a tether Clock: clock=lambda: c.now().timestamp()"
            )
        self._clock = clock
        self._pool = SinkPool("tether-webhook")

    def request(self, event: OutboxEvent) -> urllib.request.Request:
        body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
        ts = str(int(self._clock()))
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "tether-webhook/1",
            "X-Tether-Timestamp": ts,
            "X-Tether-Signature": sign(self._secret, ts, body),
            "X-Tether-Event": _header_text(event.type),
            "X-Tether-Delivery": _header_text(event.delivery_id),
        }
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def _send(self, req: urllib.request.Request) -> None:
        try:
            with _opener().open(req, timeout=self._timeout) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            with exc:  # its open response holds the connection
                location = exc.headers.get("Location")
                wait = _retry_after(exc.headers.get("Retry-After"), self._clock())
                said = "" if 300 <= exc.code < 400 else _said(exc)
            refused = ConnectionError(self._refused(exc.code, location) + said)
            refused.retry_after = wait  # type: ignore[attr-defined]  # read by the outbox
            raise refused from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"webhook {self.url} unreachable: {exc}") from None
        except http.client.HTTPException as exc:  # a status line that is no HTTP
            raise ConnectionError(
                f"webhook {self.url} answered something that is not HTTP: "
                f"{type(exc).__name__}: {str(exc)[:200]!r}"
            ) from None
        if not 200 <= status < 300:
            raise ConnectionError(self._refused(status, None))

    def _refused(self, status: int, location: str | None) -> str:
        """Why a delivery failed; for a redirect, where to: the url needs fixing (a
        redirect is not followed, so the events and their signature stay here)."""
        if 300 <= status < 400 and location:
            target = urllib.parse.urljoin(self.url, location)
            return (
                f"webhook {self.url} answered HTTP {status} redirecting to {target}; "
                "redirects are not followed: set the webhook url to the final address"
            )
        return f"webhook {self.url} answered HTTP {status}"

    async def publish(self, event: OutboxEvent) -> None:
        """Fail once `timeout` seconds pass in all: the socket's timeout bounds each read,
        so a receiver trickling its answer would otherwise hold the outbox (and its
        chore lock) for as long as it likes. The request left to finish in its daemon
        thread holds no place in the pool, and an exit at most `EXIT_GRACE` seconds;
        at-least-once covers its POST."""
        req = self.request(event)
        try:
            await asyncio.wait_for(off_loop(self._pool, self._send, req), self._timeout)
        except TimeoutError:
            raise ConnectionError(
                f"webhook {self.url} did not answer within {self._timeout} s"
            ) from None

    async def aclose(self) -> None:
        """Wait (up to `EXIT_GRACE` seconds) for the requests sent now to be answered."""
        await asyncio.to_thread(self._pool.close)
