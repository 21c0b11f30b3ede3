"""The outbox and its webhooks as a new user meets them, against a real local receiver
and a real SQLite file or PostgreSQL: a receiver asking to be left alone (429 with
Retry-After) is not tried again before then; a refusing receiver's answer is quoted in
the error; `sign`, the receivers' helper, refuses an empty secret and wrong types."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import ClassVar

import pytest

from tether import App, FakeClock
from tether.errors import InvalidArgumentError
from tether.kernel import OutboxEvent, OutboxFlush, OutboxFlushed, WebhookSink, sign
from tether.store import NewEvent, NewRun

from .._loopback import loopback
from .._sql import execute

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """/busy answers 429 with `retry_after` as its Retry-After while `busy` is set, 200
    after; /bad answers 400 with a JSON reason; /huge answers 500 with a 50 MB body."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []
    retry_after = "120"
    busy = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Receiver.seen.append(self.path)
        if self.path == "/busy" and _Receiver.busy.is_set():
            self._answer(429, b'{"error":"rate limited"}', _Receiver.retry_after)
        elif self.path == "/bad":
            self._answer(400, b'{"error": "bad signature:\n timestamp too old"}')
        elif self.path == "/huge":
            self.send_response(500)
            self.send_header("Content-Length", str(50_000_000))
            self.end_headers()
            try:
                for _ in range(500):
                    self.wfile.write(b"x" * 100_000)
            except OSError:  # the sink read its start and hung up
                pass
        else:
            self._answer(200, b"")

    def _answer(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.seen = []
    _Receiver.busy = threading.Event()
    with loopback(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)) as url:
        yield url


async def _flush(app: App) -> OutboxFlushed:
    result = await app.kernel.adispatch(OutboxFlush())
    assert isinstance(result, OutboxFlushed)
    return result


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
async def test_a_receiver_answering_429_with_retry_after_is_not_tried_before_then(
    receiver: str, database_url: str, as_date: bool
) -> None:
    """The outbox retried a 429 after its own back-off (1 s, 2 s, ...), each attempt
    refused again and counted, so a receiver asking for two minutes had the event
    dead-lettered within them. The next attempt now waits as long as Retry-After asks
    (seconds or an HTTP date), and the error says what the receiver answered."""
    wall = 1_800_000_000.0
    _Receiver.retry_after = (
        format_datetime(datetime.fromtimestamp(wall + 120, UTC), usegmt=True) if as_date else "120"
    )
    _Receiver.busy.set()
    clock = FakeClock(T0)
    sink = WebhookSink(f"{receiver}/busy", "s", clock=lambda: wall)
    app = App(database_url, clock=clock, sinks=[sink])
    try:
        await app.store.create_run(NewRun("r", "wf", state="null"), clock.now())
        await app.store.claim_run("r", "owner", clock.now(), NewEvent("workflow.running"))
        assert (await _flush(app)).failed == 1
        [(error,)] = execute(database_url, "SELECT last_error FROM events WHERE run_id = 'r'")
        assert (
            error
            == f'ConnectionError: webhook {receiver}/busy answered HTTP 429: {{"error":"rate limited"}}'
        )
        for seconds in (1, 2, 4, 8, 60, 118):  # the back-off's retries, and more
            clock.set(T0 + timedelta(seconds=seconds))
            assert (await _flush(app)).failed == 0
        assert _Receiver.seen == ["/busy"]
        _Receiver.busy.clear()
        clock.set(T0 + timedelta(seconds=121))
        assert (await _flush(app)).delivered == 1
        assert _Receiver.seen == ["/busy", "/busy"]
    finally:
        await app.aclose()


async def test_a_refusing_receivers_answer_is_quoted_in_the_error(receiver: str) -> None:
    """A bare "answered HTTP 400" left the operator guessing what the receiver disliked
    (its signature check, its schema): the start of its answer is quoted, on one line,
    and only the start of a huge one is read."""
    event = OutboxEvent("r", 1, "step.completed", None, None, T0, 1)
    with pytest.raises(ConnectionError) as bad:
        await WebhookSink(f"{receiver}/bad", "s").publish(event)
    assert str(bad.value) == (
        f'webhook {receiver}/bad answered HTTP 400: {{"error": "bad signature: timestamp too old"}}'
    )
    with pytest.raises(ConnectionError) as huge:
        await WebhookSink(f"{receiver}/huge", "s", timeout=5).publish(event)
    assert str(huge.value) == f"webhook {receiver}/huge answered HTTP 500: {'x' * 199}…"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "1700000000", b"{}"), "secret must be a non-empty str or bytes"),
        ((b"", "1700000000", b"{}"), "secret must be a non-empty str or bytes"),
        (("s", 1700000000, b"{}"), "timestamp must be the X-Tether-Timestamp header's text"),
        (("s", "1700000000", "{}"), "body must be the request's raw bytes as received"),
    ],
)
def test_sign_refuses_an_empty_secret_and_says_what_to_pass(
    args: tuple[object, object, object], message: str
) -> None:
    """A receiver verifying with `sign` whose secret was left unset (an empty env var)
    accepted any request signed with the empty key; an int timestamp or a str body
    raised a bare AttributeError or TypeError."""
    with pytest.raises(InvalidArgumentError, match=message):
        sign(*args)  # type: ignore[arg-type]


def test_sign_matches_what_the_webhook_sends(receiver: str) -> None:
    """What a receiver recomputes (the header's timestamp, the raw body) is what the
    webhook signed, with a str or bytes secret alike."""
    sink = WebhookSink(f"{receiver}/ok", b"k3y", clock=lambda: 1_700_000_000.9)
    req = sink.request(OutboxEvent("r", 1, "step.completed", None, {"a": 1}, T0, 1))
    body = req.data
    assert isinstance(body, bytes)
    assert req.get_header("X-tether-timestamp") == "1700000000"
    assert req.get_header("X-tether-signature") == sign("k3y", "1700000000", body)
    assert sign("k3y", "1700000000", bytearray(body)) == sign(b"k3y", "1700000000", body)


def test_a_webhook_given_a_clock_object_is_refused_when_built(receiver: str) -> None:
    """`clock=` takes a function of unix seconds; the App's `FakeClock` given there was
    taken, and every delivery then raised "'FakeClock' object is not callable" until each
    event was dead-lettered."""
    with pytest.raises(InvalidArgumentError, match=r"clock must be a function returning unix"):
        WebhookSink(f"{receiver}/ok", "s", clock=FakeClock(T0))  # type: ignore[arg-type]
    clock = FakeClock(T0)
    sink = WebhookSink(f"{receiver}/ok", "s", clock=lambda: clock.now().timestamp())
    req = sink.request(OutboxEvent("r", 1, "step.completed", None, None, T0, 1))
    assert req.get_header("X-tether-timestamp") == str(int(T0.timestamp()))
