"""Webhooks in, as a sender that repeats a header meets them: a real App on a real
SQLite file behind its ASGI application (``POST /hooks/{name}``), signed as tether's
own `WebhookSink` signs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tether import App, FakeClock
from tether.kernel import sign
from tether.server import Webhook

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = str(int(T0.timestamp()))
BODY = b'{"action":"opened"}'


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = App(f"sqlite:///{tmp_path}/hooks.db", clock=FakeClock(T0))
    asgi = app.asgi(allow_unauthenticated=True, webhooks=[Webhook("gh", ("s3cret",))])
    transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://hooks") as client:
            yield client
    finally:
        await app.aclose()


def _headers(first_timestamp: str) -> list[tuple[str, str]]:
    """A valid signed request whose X-Tether-Timestamp is sent twice, `first_timestamp`
    first and the signed one last."""
    return [
        ("Content-Type", "application/json"),
        ("X-Tether-Timestamp", first_timestamp),
        ("X-Tether-Timestamp", NOW),
        ("X-Tether-Signature", sign("s3cret", NOW, BODY)),
    ]


async def test_a_signed_request_with_an_old_timestamp_added_first_is_no_replay_pass(
    hooks: httpx.AsyncClient,
) -> None:
    """The signature was checked against the timestamp header's last value and remembered
    until its first value left the window: an old one sent first had it forgotten at
    once, so the same captured request was accepted again and again."""
    first = await hooks.post("/hooks/gh", content=BODY, headers=_headers("0"))
    assert first.status_code == 200, first.text
    for old in ("0", "1000", NOW):
        again = await hooks.post("/hooks/gh", content=BODY, headers=_headers(old))
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "replayed"


async def test_a_timestamp_header_sent_twice_the_first_not_a_number_is_no_server_error(
    hooks: httpx.AsyncClient,
) -> None:
    """A first value that is not a number failed the request with a ValueError (a 500)
    after its signature checked out; it is read as it was checked."""
    sent = await hooks.post("/hooks/gh", content=BODY, headers=_headers("abc"))
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"event": "gh", "woken": []}
