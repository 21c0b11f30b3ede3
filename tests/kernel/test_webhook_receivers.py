"""`WebhookSink` against receivers that misbehave: every answer but a 2xx fails the
delivery with an error naming the webhook, within the sink's timeout in all, and a
run whose id is no plain ASCII is delivered like any other."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from tether.errors import InvalidArgumentError
from tether.kernel import OutboxEvent, WebhookSink

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class _Receiver(http.server.BaseHTTPRequestHandler):
    """/ok answers 200; /trickle sends its status line, then a header line every
    0.1 s until the test is done (at most 5 s); /garbage answers no HTTP at all."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, str]]] = []
    done = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Receiver.seen.append(dict(self.headers))
        if self.path == "/trickle":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(50):
                self.wfile.flush()
                if _Receiver.done.wait(0.1):
                    break
                self.wfile.write(b"X-Wait: still\r\n")
            self.wfile.write(b"Content-Length: 0\r\n\r\n")
        elif self.path == "/garbage":
            self.wfile.write(b"\x00\xffnot http at all\r\n\r\n")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.seen = []
    _Receiver.done = threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Receiver.done.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize("wid", ["run-😀", "café", "two\nlines", "100%:x"])
async def test_a_run_id_of_any_text_is_delivered_and_named_in_the_header(
    receiver: str, wid: str
) -> None:
    """http.client sends headers as latin-1 and refuses line breaks: a run id with an
    emoji once failed every delivery of its run until it was dead-lettered."""
    await WebhookSink(f"{receiver}/ok", "s").publish(
        OutboxEvent(wid, 7, "step.completed", "ünï ☃", {"u": "😀"}, T0, 1)
    )
    (headers,) = _Receiver.seen
    delivery = headers["X-Tether-Delivery"]
    assert delivery.isascii() and delivery.isprintable()
    assert urllib.parse.unquote(delivery) == f"{wid}:7"


async def test_a_trickling_receiver_fails_the_delivery_within_the_timeout(
    receiver: str,
) -> None:
    """The socket's timeout bounds each read; a receiver sending a header line now and
    then once held a delivery (and the outbox's chore lock) for as long as it went on."""
    sink = WebhookSink(f"{receiver}/trickle", "s", timeout=0.5)
    with pytest.raises(ConnectionError, match=r"/trickle did not answer within 0\.5 s"):
        await sink.publish(OutboxEvent("r", 1, "step.completed", None, None, T0, 1))
    assert len(_Receiver.seen) == 1


async def test_a_receiver_answering_garbage_fails_naming_the_webhook(receiver: str) -> None:
    sink = WebhookSink(f"{receiver}/garbage", "s")
    with pytest.raises(
        ConnectionError, match=r"webhook .*/garbage answered something that is not HTTP"
    ):
        await sink.publish(OutboxEvent("r", 1, "step.completed", None, None, T0, 1))


async def test_extra_headers_are_sent_and_unsendable_ones_refused_when_built(
    receiver: str,
) -> None:
    """http.client refuses a line break in a header and sends values as latin-1: such a
    header once failed every delivery with a bare ValueError naming no webhook, until
    each event was dead-lettered. It is refused when the sink is built, the value not
    shown (it may be a credential); a latin-1 value is delivered as given."""
    sink = WebhookSink(f"{receiver}/ok", "s", headers={"X-Team": "café\tops"})
    await sink.publish(OutboxEvent("r", 1, "step.completed", None, None, T0, 1))
    (headers,) = _Receiver.seen
    assert headers["X-Team"] == "café\tops"
    bad: list[tuple[object, str]] = [
        ({"Authorization": "Bearer s3cret\r\nX-Evil: 1"}, r"'Authorization'.*U\+000D"),
        ({"X-Team": "€"}, r"'X-Team'.*outside latin-1"),
        ({"X Team": "a"}, r"'X Team' is not an HTTP header name"),
        ({"X-Count": 5}, r"'X-Count' must be a str"),
        (["X-Team"], "must be a mapping"),
    ]
    for headers_, message in bad:
        with pytest.raises(InvalidArgumentError, match=message) as refused:
            WebhookSink(f"{receiver}/ok", "s", headers=headers_)  # type: ignore[arg-type]
        assert "s3cret" not in str(refused.value)
    assert len(_Receiver.seen) == 1
