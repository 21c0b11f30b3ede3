"""A receiver checking deliveries with `check_signed` and `verify`, as the README shows
it: one secret as a str, headers as its framework hands them (bytes in an ASGI
scope), its own clock; tampered, stale and malformed requests refused with a code,
arguments that cannot be checked refused saying what to pass."""

from __future__ import annotations

import http.server
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

from tether.clock import SystemClock
from tether.errors import InvalidArgumentError, WebhookSignatureError
from tether.kernel import Kernel, OutboxFlushed, RunCreate, WebhookSink, check_signed, sign
from tether.kernel import verify as verify_event
from tether.store import Store, open_store

from .._loopback import loopback
from .test_kernel_walk42 import _Host, _Registry

SECRET = "whsec-walk42"
BODY = b'{"workflowId":"r1","seq":1}'


def _signed(secret: str | bytes = SECRET, *, at: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    return {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(secret, ts, BODY)}


def test_one_secret_given_as_a_str_is_one_secret() -> None:
    # check_signed took `secrets` as a tuple and iterated a str: each of its characters
    # was a secret, so a request signed with the key "w" passed, the real one did not
    assert check_signed(SECRET, _signed(), BODY) == _signed()["X-Tether-Signature"]
    assert check_signed(SECRET.encode(), _signed(), BODY)
    with pytest.raises(WebhookSignatureError) as refused:
        check_signed(SECRET, _signed("w"), BODY)
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("secrets", [(), ("",), [], None])
def test_check_signed_with_no_secret_says_so(secrets: Any) -> None:
    # none: "the signature does not match" (or a bare TypeError), the cause unsaid
    with pytest.raises(InvalidArgumentError, match="secret must be a non-empty str or bytes"):
        check_signed(secrets, _signed(), BODY)


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"now": math.nan}, "now must be the receiver's clock in unix seconds"),
        ({"now": "1700000000"}, "now must be the receiver's clock"),
        ({"tolerance": "300"}, "tolerance must be a number of seconds > 0"),
        ({"tolerance": True}, "tolerance must be a number of seconds > 0"),
    ],
)
def test_a_clock_or_window_that_is_no_number_is_refused(options: Any, what: str) -> None:
    # a NaN `now` let a request a day old pass (no timestamp is "far" from NaN); a
    # str was a bare TypeError; True was a window of one second
    stale = _signed(at=time.time() - 86400)
    with pytest.raises(InvalidArgumentError, match=what):
        verify_event(SECRET, stale, BODY, **options)


def test_headers_as_an_asgi_scope_holds_them_are_read() -> None:
    raw = {name.lower().encode(): value.encode() for name, value in _signed().items()}
    assert verify_event(SECRET, raw, BODY) == {"workflowId": "r1", "seq": 1}


@pytest.mark.parametrize(
    ("headers", "what"),
    [
        (list(_signed().items()), "headers must be the request's headers as a mapping"),
        (None, "headers must be the request's headers as a mapping"),
        ({k: [v] for k, v in _signed().items()}, "as str .or bytes., got 'X-Tether-Timest"),
    ],
)
def test_headers_that_are_no_mapping_of_text_are_refused(headers: Any, what: str) -> None:
    # a bare AttributeError ('list' object has no attribute 'items' / 'isascii')
    with pytest.raises(InvalidArgumentError, match=what):
        verify_event(SECRET, headers, BODY)


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({}, BODY, "signature_missing"),
        ({**_signed(), "X-Tether-Timestamp": "12.5"}, BODY, "bad_timestamp"),
        (_signed(), BODY + b" ", "bad_signature"),
        (_signed(at=time.time() - 3600), BODY, "stale_timestamp"),
        (_signed(at=time.time() + 3600), BODY, "stale_timestamp"),
    ],
)
def test_tampered_stale_and_malformed_requests_are_refused(
    headers: dict[str, str], body: bytes, code: str
) -> None:
    with pytest.raises(WebhookSignatureError) as refused:
        verify_event(SECRET, headers, body)
    assert refused.value.code == code


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Checks each delivery as the README's receiver does: 204 if signed, else 401."""

    protocol_version = "HTTP/1.1"
    got: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            check_signed(SECRET, dict(self.headers), body)
        except WebhookSignatureError as exc:
            _Receiver.got.append(f"refused: {exc.code}")
            self.send_response(401)
        else:
            _Receiver.got.append(self.headers["X-Tether-Event"])
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got = []
    with loopback(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)) as url:
        yield f"{url}/hook"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    the_store = open_store(database_url)
    yield the_store
    await the_store.close()


async def test_a_kernels_webhook_deliveries_pass_the_receivers_check(
    store: Store, receiver: str
) -> None:
    sink = WebhookSink(receiver, SECRET)
    kernel = Kernel(store, SystemClock(), _Registry(), _Host(), sinks=[sink])
    try:
        await kernel.adispatch(RunCreate(workflow="double", input=1, queue="q"))
        flushed = await kernel.adispatch({"type": "outbox.flush"})
        assert isinstance(flushed, OutboxFlushed)
        assert flushed.delivered >= 1 and (flushed.failed, flushed.dead) == (0, 0)
        assert len(_Receiver.got) == flushed.delivered
        assert not [seen for seen in _Receiver.got if seen.startswith("refused")]
    finally:
        await kernel.aclose()
