"""`tether.kernel.verify`: a receiver of `WebhookSink` checks what it was sent with
one call, and everything a forger or a replayer could change is refused with a
code it can answer."""

from __future__ import annotations

import http.server
import json
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from tests._loopback import loopback
from tether import TetherError, WebhookSignatureError
from tether.errors import InvalidArgumentError
from tether.kernel import OutboxEvent, WebhookSink, check_signed, sign, verify

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = 1_790_000_000.0


class _Checker(http.server.BaseHTTPRequestHandler):
    """Answers 204 to a delivery `verify` accepts, 401 with its code otherwise."""

    protocol_version = "HTTP/1.1"
    secrets: ClassVar[tuple[str, ...]] = ("new-secret", "old-secret")
    accepted: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = verify(self.secrets, dict(self.headers), body, now=NOW)
        except WebhookSignatureError as exc:
            self.send_response(401)
            self.send_header("X-Code", exc.code)
        else:
            _Checker.accepted.append(event)
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_a_receiver_accepts_what_a_webhook_sink_sends_under_a_rotated_secret() -> None:
    _Checker.accepted = []
    with loopback(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Checker)) as url:
        event = OutboxEvent("run-1", 3, "run.completed", "done", {"n": 1}, T0, 1)
        await WebhookSink(url, "old-secret", clock=lambda: NOW + 5).publish(event)
        with pytest.raises(ConnectionError, match="401"):
            await WebhookSink(url, "not-the-secret", clock=lambda: NOW).publish(event)
    assert _Checker.accepted == [event.to_dict()]


def _signed(body: bytes, secret: str = "s", at: float = NOW) -> dict[str, str]:
    ts = str(int(at))
    return {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(secret, ts, body)}


def test_headers_are_matched_in_any_case() -> None:
    body = b'{"seq":1}'
    lower = {k.lower(): v for k, v in _signed(body).items()}
    assert verify("s", lower, body, now=NOW) == {"seq": 1}
    assert verify(b"s", _signed(body), body, now=NOW) == {"seq": 1}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda h, b: (h, b + b" "), "bad_signature"),  # the body re-dumped or altered
        (lambda h, b: ({**h, "X-Tether-Timestamp": str(int(NOW) + 1)}, b), "bad_signature"),
        (lambda h, b: ({"X-Tether-Timestamp": h["X-Tether-Timestamp"]}, b), "signature_missing"),
        (lambda h, b: ({**h, "X-Tether-Timestamp": "1e9"}, b), "bad_timestamp"),
        (lambda h, b: ({**h, "X-Tether-Signature": "sha256=é"}, b), "bad_signature"),
    ],
)
def test_what_a_forger_changes_is_refused_with_its_code(change: object, code: str) -> None:
    body = b'{"seq":1}'
    headers, sent = change(_signed(body), body)  # type: ignore[operator]
    with pytest.raises(WebhookSignatureError) as caught:
        verify("s", headers, sent, now=NOW)
    assert caught.value.code == code
    assert isinstance(caught.value, TetherError)


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_a_timestamp_outside_the_window_either_way_is_stale(skew: float) -> None:
    body = b"{}"
    with pytest.raises(WebhookSignatureError, match="300s") as caught:
        verify("s", _signed(body, at=NOW + skew), body, now=NOW)
    assert caught.value.code == "stale_timestamp"
    assert verify("s", _signed(body, at=NOW + skew), body, now=NOW, tolerance=400) == {}


def test_a_huge_timestamp_is_stale_not_an_overflow() -> None:
    body = b"{}"
    ts = "9" * 400
    headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign("s", ts, body)}
    with pytest.raises(WebhookSignatureError) as caught:
        verify("s", headers, body, now=NOW)
    assert caught.value.code == "stale_timestamp"


def test_a_signed_body_that_is_no_event_object_is_refused() -> None:
    for body in (b"[1, 2]", b"\xff not json"):
        with pytest.raises(WebhookSignatureError) as caught:
            verify("s", _signed(body), body, now=NOW)
        assert caught.value.code == "bad_body"


@pytest.mark.parametrize("secret", ["", b"", [], ["ok", ""], None])
def test_an_unset_secret_accepts_nothing(secret: object) -> None:
    """A receiver whose secret env var was empty must fail loudly, not accept a
    request signed with the empty key."""
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        verify(secret, _signed(b"{}", secret="x"), b"{}", now=NOW)  # type: ignore[arg-type]


def test_check_signed_returns_the_signature_for_a_replay_check() -> None:
    body = json.dumps({"any": "payload"}).encode()
    headers = _signed(body)
    assert check_signed(("s",), headers, body, now=NOW) == headers["X-Tether-Signature"]
    with pytest.raises(InvalidArgumentError, match="tolerance"):
        check_signed(("s",), headers, body, now=NOW, tolerance=float("nan"))
