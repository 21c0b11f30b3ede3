"""An integrator's walk of the HTTP API (41): a POST to a path with a trailing slash,
sent with an Idempotency-Key, and a value JSON cannot write given to the client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tether import Client, NotSerializableError
from tether.server import AsyncClient

from ._serve import Served


def test_a_redirected_post_keeps_its_idempotency_key_for_the_request_it_is_sent_on_to(
    served: Served,
) -> None:
    """``POST /api/v1/runs/`` is redirected (307) to ``/api/v1/runs``; the redirect was
    kept as the key's answer, so the request the client followed it with, under the
    same key, was refused as another request (409 idempotency_conflict): an integrator
    with a trailing slash and a redirect-following client could start no run."""
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"workflow": "greet", "input": {"name": "ada"}}
    with httpx.Client(base_url=served.url, follow_redirects=True, timeout=60) as http:
        first = http.post("/api/v1/runs/", json=body, headers=key)
        assert [r.status_code for r in first.history] == [307]
        assert first.status_code == 201, first.text
        wid = first.json()["workflow_id"]
        again = http.post("/api/v1/runs/", json=body, headers=key)  # a retry: the same run
        assert again.status_code == 201, again.text
        assert again.json() == {"workflow_id": wid}
        assert again.headers["idempotent-replayed"] == "true"
        other = http.post("/api/v1/runs/", json=body | {"input": {"name": "bob"}}, headers=key)
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_conflict"
        runs = http.get("/api/v1/runs", params={"workflow": "greet"}).json()["runs"]
        assert [r["workflow_id"] for r in runs] == [wid]  # one run, started once


NAN, TOO_LONG = float("nan"), 10**5000
# each call with a value JSON cannot write, and where in the body it is
CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    (r"\$\.input\.name is nan", lambda c: c.start("greet", {"name": NAN})),
    (
        r"\$\.initial_state\[1\] is inf",
        lambda c: c.start("greet", {}, initial_state=[1, float("inf")]),
    ),
    (r"\$\.payload\.x is nan", lambda c: c.signal("some-run", "go", {"x": NAN})),
    (r"\$\.payload", lambda c: c.send_event("github", TOO_LONG)),
    (r"\$\.payload\[0\] is -inf", lambda c: c.complete_token("tok", [float("-inf")])),
]


def test_a_value_json_cannot_write_is_refused_by_the_client_saying_where(served: Served) -> None:
    """A NaN, an infinity or an int too long for text in a body was raised bare from
    the JSON encoder ("Out of range float values are not JSON compliant", a
    ValueError naming no value); the server refuses such a value as
    ``not_serializable`` (422) with its path, and so does the client now."""
    with Client(served.url) as client:
        for where, call in CALLS:
            with pytest.raises(NotSerializableError, match=where):
                call(client)
        assert client.list_runs().runs == []  # nothing reached the server

    async def awaited() -> None:
        async with AsyncClient(served.url) as client:
            for where, call in CALLS:
                with pytest.raises(NotSerializableError, match=where):
                    await call(client)

    asyncio.run(awaited())


def test_a_workflow_id_given_again_for_another_run_is_a_conflict(served: Served) -> None:
    """Another input, or another queue, for a workflow id that names a run was answered
    422 invalid_argument, as if the request were malformed; it conflicts with what is
    recorded (409), as another workflow under the id already did."""
    wid = f"w-{uuid.uuid4().hex[:8]}"
    body = {"workflow": "greet", "workflow_id": wid, "queue": "a", "input": {"name": "ada"}}
    with httpx.Client(base_url=served.url, timeout=60) as http:
        assert http.post("/api/v1/runs", json=body).status_code == 201
        for other, differs in (({"input": {"name": "bob"}}, "input"), ({"queue": "b"}, "queue")):
            answer = http.post("/api/v1/runs", json=body | other)
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert error["code"] == "workflow_id_conflict"
            assert wid in error["message"] and differs in error["message"]
        assert http.post("/api/v1/runs", json=body).status_code == 200  # the same: its run
