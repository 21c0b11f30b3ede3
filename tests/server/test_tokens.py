"""Completing a wait token over HTTP: once it answers the run, again it is a conflict
with what is recorded (409, saying when and with what), not a malformed request."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from ._serve import Served


def _token_of_a_parked_run(client: Client) -> tuple[str, str]:
    """A run of ``tokened`` parked on its token: (run id, token id)."""
    wid = client.start("tokened")

    def parked() -> bool:
        return client.get_record(wid).status is RunStatus.WAITING

    eventually_sync(parked, timeout=30)
    (wait,) = [w for w in client.waits(wid) if w.kind == "token"]
    return wid, wait.id


def test_a_token_completed_twice_is_a_conflict_saying_when_and_with_what(
    either_served: Served,
) -> None:
    with Client(either_served.url) as client:
        wid, token = _token_of_a_parked_run(client)
        url = f"{either_served.url}/api/v1/wait-tokens/{token}/complete"
        assert httpx.post(url, json={"payload": {"ok": 1}}).status_code == 200
        again = httpx.post(url, json={"payload": {"ok": 2}})
        assert again.status_code == 409, again.text
        error = again.json()["error"]
        assert error["code"] == "token_already_completed"
        assert (
            f"token {token!r} of run {wid!r} was already resolved: completed at "
            in error["message"]
        )
        assert re.search(r'with payload \{"ok": ?1\}; a token completes once', error["message"])
        details = error["details"]
        assert (details["token_id"], details["workflow_id"]) == (token, wid)
        assert (details["status"], details["payload"]) == ("resolved", {"ok": 1})
        (wait,) = [w for w in client.waits(wid) if w.id == token]
        assert wait.resolved_at is not None
        assert datetime.fromisoformat(details["completed_at"]) == wait.resolved_at
        with pytest.raises(ApiError) as raised:  # the typed client sees the same answer
            client.complete_token(token, 3)
        assert (raised.value.status, raised.value.code) == (409, "token_already_completed")
        assert raised.value.details["payload"] == {"ok": 1}


def test_an_unknown_token_is_404_and_a_malformed_body_422(served: Served) -> None:
    with Client(served.url) as client:
        _, token = _token_of_a_parked_run(client)
    base = f"{served.url}/api/v1/wait-tokens"
    unknown = httpx.post(f"{base}/nope/complete", json={"payload": 1})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "token_not_found")
    malformed = httpx.post(
        f"{base}/{token}/complete",
        content=b'{"payload": ',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422, malformed.text
    assert malformed.json()["error"]["code"] == "invalid_request"
    extra = httpx.post(f"{base}/{token}/complete", json={"payload": 1, "by": "me"})
    assert extra.status_code == 422 and "body.by" in extra.json()["error"]["message"]


TOKEN_IDS = ["order/42", "x/complete", "a//b", "../up", "pct%2F", "ünï/ß"]


def test_a_token_id_of_the_callers_own_with_a_slash_is_completed(either_served: Served) -> None:
    """``wf.wait_for_token`` takes the caller's own token id, '/' and all; before, the
    route took one segment, and ``order/42`` was answered 404 "no route takes POST"."""
    with Client(either_served.url) as client:
        runs = {token: client.start("awaits", token) for token in TOKEN_IDS}
        for token, wid in runs.items():
            eventually_sync(
                lambda w=wid: client.get_record(w).status is RunStatus.WAITING, timeout=60
            )
            assert client.complete_token(token, {"for": token}) == wid, token
            eventually_sync(
                lambda w=wid: client.get_record(w).status is RunStatus.COMPLETED, timeout=60
            )
            assert client.get_record(wid).output == {"for": token}
        # sent unencoded, as curl would: the route's tail ends the id
        wid = client.start("awaits", "by/hand")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=60)
    done = httpx.post(f"{either_served.url}/api/v1/wait-tokens/by/hand/complete", json={})
    assert (done.status_code, done.json()) == (200, {"workflow_id": wid}), done.text
