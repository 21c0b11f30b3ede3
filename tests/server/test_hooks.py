"""Webhooks in: signed as `WebhookSink` signs, checked for freshness and replay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether import Client, RunStatus
from tether.kernel import sign
from tether.testing import eventually_sync

from ._serve import Served, start

SECRET = "s3cret"


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[Served]:
    s = start(
        tmp_path,
        f"sqlite:///{tmp_path}/t.db",
        "--webhook",
        "github",
        env={"TETHER_WEBHOOK_SECRET_GITHUB": f"old,{SECRET}"},
    )
    yield s
    s.stop()


def _post(url: str, body: bytes, ts: int, secret: str = SECRET) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "X-Tether-Timestamp": str(ts),
        "X-Tether-Signature": sign(secret, str(ts), body),
    }
    return httpx.post(url + "/hooks/github", content=body, headers=headers)


def test_a_signed_webhook_wakes_the_waiting_run_once(hooked: Served) -> None:
    with Client(hooked.url) as client:
        wid = client.start("hooked")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        body = json.dumps({"action": "opened"}).encode()
        now = int(time.time())
        ok = _post(hooked.url, body, now)
        assert ok.status_code == 200 and ok.json() == {"event": "github", "woken": [wid]}
        eventually_sync(lambda: client.get_record(wid).output == {"action": "opened"}, timeout=30)
        replayed = _post(hooked.url, body, now)
        assert replayed.status_code == 409 and replayed.json()["error"]["code"] == "replayed"
    assert _post(hooked.url, body, now, secret="old").status_code == 200  # a second secret


def test_tampered_stale_unsigned_and_unknown_are_refused(hooked: Served) -> None:
    body = b'{"action": "opened"}'
    now = int(time.time())
    headers = {
        "X-Tether-Timestamp": str(now),
        "X-Tether-Signature": sign(SECRET, str(now), body),
    }
    tampered = httpx.post(
        hooked.url + "/hooks/github", content=b'{"action": "closed"}', headers=headers
    )
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "bad_signature"
    stale = _post(hooked.url, body, now - 301)
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "stale_timestamp"
    unsigned = httpx.post(hooked.url + "/hooks/github", content=body)
    assert unsigned.status_code == 401
    assert _post(hooked.url, body, now).status_code == 200  # the untampered one passes
    unknown = httpx.post(hooked.url + "/hooks/gitlab", content=body, headers=headers)
    assert unknown.status_code == 404


def test_tether_delivers_its_own_events_to_another_tether(hooked: Served) -> None:
    """A `WebhookSink` request is accepted as it is sent: one signature format."""
    from datetime import UTC, datetime

    from tether.kernel import OutboxEvent, WebhookSink

    sink = WebhookSink(hooked.url + "/hooks/github", SECRET)
    event = OutboxEvent("run-1", 1, "workflow.completed", None, None, datetime.now(UTC), 1)
    req = sink.request(event)
    resp = httpx.post(req.full_url, content=req.data, headers=dict(req.header_items()))
    assert resp.status_code == 200, resp.text


def test_a_signed_timestamp_too_large_for_a_number_is_stale(hooked: Served) -> None:
    """Four hundred 9s, correctly signed: a 500 (OverflowError) before."""
    body = b'{"a": 1}'
    for ts in ("9" * 400, "9" * 5000):
        resp = httpx.post(
            hooked.url + "/hooks/github",
            content=body,
            headers={"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(SECRET, ts, body)},
        )
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "stale_timestamp"
    for ts, signature, code in (
        ("\u00b9\u00b2", "sha256=00", "bad_timestamp"),  # digits, but not ASCII ones
        (str(int(time.time())), "sha256=\u00e9", "bad_signature"),
    ):
        headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": signature}
        raw = {k: v.encode("latin-1") for k, v in headers.items()}
        resp = httpx.post(hooked.url + "/hooks/github", content=body, headers=raw)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == code, resp.text
    assert "Traceback" not in hooked.log


def test_a_signed_webhook_nested_too_deeply_is_a_422_saying_so(hooked: Served) -> None:
    now = int(time.time())
    deep = _post(hooked.url, b"[" * 100_000 + b"]" * 100_000, now)  # under --max-body
    assert deep.status_code == 422, deep.text
    error = deep.json()["error"]
    assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
    digits = _post(hooked.url, b"1" * 5000, now)
    assert digits.status_code == 422 and "too many digits" in digits.json()["error"]["message"]
    # refused before its signature was remembered: the sender may send it again flattened
    assert _post(hooked.url, b'{"action": "opened"}', now).json() == {
        "event": "github",
        "woken": [],
    }
