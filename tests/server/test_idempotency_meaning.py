"""An Idempotency-Key's request is the same by its meaning: a JSON body with its keys
in another order or other spacing is the same request; a key kept by an older
server (a digest of the bytes sent) is still honoured."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime

import httpx

from tether.store import open_store

from ._serve import Served

JSON = {"Content-Type": "application/json"}


def _post(served: Served, path: str, body: bytes, key: str) -> httpx.Response:
    headers = {**JSON, "Idempotency-Key": key}
    return httpx.post(f"{served.url}{path}", content=body, headers=headers)


def test_the_same_json_in_another_order_or_spacing_is_the_same_request(
    either_served: Served,
) -> None:
    """Before, the body's bytes were compared: the same request sent by another client
    library (other key order, other spacing) got 409 idempotency_conflict."""
    served = either_served
    first = _post(
        served,
        "/api/v1/runs",
        b'{"workflow":"greet","input":{"name":"ada"},"tags":["a","b"]}',
        "start-1",
    )
    assert first.status_code == 201, first.text
    again = _post(
        served,
        "/api/v1/runs",
        b'{\n  "tags": [ "a", "b" ],\n  "input": { "name": "ada" },\n  "workflow": "greet"\n}',
        "start-1",
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    runs = httpx.get(f"{served.url}/api/v1/runs", params={"workflow": "greet"}).json()
    assert len(runs["runs"]) == 1  # started once
    other = _post(
        served,
        "/api/v1/runs",
        b'{"input": {"name": "bob"}, "workflow": "greet", "tags": ["a", "b"]}',
        "start-1",
    )
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "idempotency_conflict"


def test_a_key_kept_by_an_older_server_is_still_honoured(either_served: Served) -> None:
    """Keys kept before digested the bytes sent: the request sent again as it was gets
    the kept answer, another request gets 409, as they did then."""
    served = either_served
    body = b'{"type": "deploy",  "payload": {"b": 1, "a": 2}}'
    old_hash = hashlib.sha256(b"POST /api/v1/events?\n" + body).hexdigest()  # as kept before
    kept = {"headers": [["content-type", "application/json"]], "body": '{"delivered": 7}'}

    async def keep() -> None:
        store = open_store(served.db)
        await store.open()
        try:
            now = datetime.now(UTC)
            assert (
                await store.idempotent_begin(
                    "-:old-key", old_hash, at=now, keep=3600, stale_after=600
                )
                is None
            )
            await store.idempotent_finish("-:old-key", 200, json.dumps(kept))
        finally:
            await store.close()

    asyncio.run(keep())
    again = _post(served, "/api/v1/events", body, "old-key")
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {"delivered": 7}
    other = _post(served, "/api/v1/events", b'{"type": "rollback"}', "old-key")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


def test_a_key_of_no_use_is_told_what_to_send(served: Served) -> None:
    """Before, an empty key was told to "send a shorter key"."""
    empty = _post(served, "/api/v1/events", b'{"type": "x"}', "")
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_idempotency_key"
    message = empty.json()["error"]["message"]
    assert "it is empty" in message and "shorter" not in message
    assert "send one" in message and "leave the header out" in message
    long = _post(served, "/api/v1/events", b'{"type": "x"}', "k" * 201)
    message = long.json()["error"]["message"]
    assert long.status_code == 422 and "it has 201" in message and "shorter key" in message
