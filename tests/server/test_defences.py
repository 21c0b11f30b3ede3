"""What keeps other sites and other credentials out: pages of other sites while no
token exists, and the answers an Idempotency-Key keeps (for whom, and with what)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether import Client, RunStatus
from tether.testing import eventually_sync

from ._serve import Served, start
from .conftest import make_token

ORIGIN = "https://app.example"


def _port(served: Served) -> str:
    return served.url.rsplit(":", 1)[1]


def _parked(served: Served) -> str:
    with Client(served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
    return wid


def test_without_a_token_a_page_of_another_site_gets_nothing(served: Served) -> None:
    """Before, while no token existed, any web page the developer opened could act
    through their browser: a cross-site POST (a "simple" request, no preflight)
    cancelled a run, and after DNS rebinding (the page's own name resolving to
    127.0.0.1, sent as Host) it read every run and minted an admin token."""
    wid = _parked(served)
    cancel = f"{served.url}/api/v1/runs/{wid}/cancel"
    cross = httpx.post(cancel, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 401, cross.text
    error = cross.json()["error"]
    assert error["code"] == "unauthenticated"
    assert "evil.example" in error["message"] and "tether tokens create" in error["message"]
    rebound = {"Host": f"evil.example:{_port(served)}"}
    listed = httpx.get(f"{served.url}/api/v1/runs", headers=rebound)
    assert listed.status_code == 401 and "Host" in listed.json()["error"]["message"]
    mint = httpx.post(
        f"{served.url}/api/v1/api-tokens",
        json={"scope": "admin", "name": "attacker"},
        headers={**rebound, "Origin": f"http://evil.example:{_port(served)}"},
    )
    assert mint.status_code == 401
    page = httpx.get(f"{served.url}/runs", headers=rebound)  # the dashboard's pages too
    assert page.status_code == 401 and "tether tokens create" in page.text
    # nothing was done, and this machine's own clients still need no token
    with Client(served.url) as client:
        assert client.get_record(wid).status is RunStatus.WAITING
        assert client.list_api_tokens() == []
    port = _port(served)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LocalHost"):
        assert httpx.get(f"{served.url}/api/v1/runs", headers={"Host": host}).status_code == 200
    here = httpx.post(cancel, headers={"Origin": f"http://localhost:{port}"})
    assert here.status_code == 200, here.text


def test_a_replay_of_a_tokenless_request_follows_the_same_rule(served: Served) -> None:
    url, key = f"{served.url}/api/v1/events", {"Idempotency-Key": "e-1"}
    assert httpx.post(url, json={"type": "x"}, headers=key).status_code == 200
    rebound = httpx.post(
        url, json={"type": "x"}, headers={**key, "Host": f"evil.example:{_port(served)}"}
    )
    assert rebound.status_code == 401 and "idempotent-replayed" not in rebound.headers
    again = httpx.post(url, json={"type": "x"}, headers=key)
    assert again.headers["idempotent-replayed"] == "true"


def test_a_new_tokens_secret_is_never_kept_for_a_replay(
    secured: tuple[Served, dict[str, str]],
) -> None:
    """Before, a token made with an Idempotency-Key had its secret stored in plain text
    (the answer kept for a replay) for 24 hours; now the key is refused there."""
    served, tokens = secured
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    made = httpx.post(
        f"{served.url}/api/v1/api-tokens",
        json={"scope": "admin", "name": "ci"},
        headers={**admin, "Idempotency-Key": "mint-ci"},
    )
    assert made.status_code == 422, made.text
    error = made.json()["error"]
    assert error["code"] == "idempotency_key_refused"
    assert "without it" in error["message"] and "secret" in error["message"]
    listed = httpx.get(f"{served.url}/api/v1/api-tokens", headers=admin).json()
    assert "ci" not in {t["name"] for t in listed}  # nothing was made
    with sqlite3.connect(served.db.removeprefix("sqlite:///")) as db:
        kept = db.execute("SELECT response FROM api_idempotency").fetchall()
    assert not any("tth_" in str(row) for row in kept)
    plain = httpx.post(f"{served.url}/api/v1/api-tokens", json={"scope": "read"}, headers=admin)
    assert plain.status_code == 201  # without a key, as always


def test_a_replay_is_only_for_a_token_still_valid(
    secured: tuple[Served, dict[str, str]],
) -> None:
    """Before, the kept answer was sent before any check of the token: a revoked
    token's retried POST still got it."""
    served, tokens = secured
    with Client(served.url, tokens["admin"]) as admin:
        made = admin.create_api_token("write", "retrier")
        sent = {"Authorization": f"Bearer {made.token}", "Idempotency-Key": "e-1"}
        url = f"{served.url}/api/v1/events"
        assert httpx.post(url, json={"type": "x"}, headers=sent).status_code == 200
        admin.revoke_api_token(made.info.id)
    again = httpx.post(url, json={"type": "x"}, headers=sent)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_token"
    assert "idempotent-replayed" not in again.headers
    wrong = {**sent, "Authorization": "Bearer tth_not-a-token"}
    assert httpx.post(url, json={"type": "x"}, headers=wrong).status_code == 401


def test_a_key_belongs_to_the_token_however_its_scheme_is_spelled(
    secured: tuple[Served, dict[str, str]],
) -> None:
    """Before, keys were scoped by the raw Authorization header: a retry that spelt
    the scheme ``bearer`` started a second run."""
    served, tokens = secured
    body = {"workflow": "counts", "input": 1}
    ids = set()
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} {tokens['write']}", "Idempotency-Key": "k"}
        sent = httpx.post(f"{served.url}/api/v1/runs", json=body, headers=headers)
        assert sent.status_code == 201, sent.text
        ids.add(sent.json()["workflow_id"])
    assert len(ids) == 1
    # another credential's key is its own: a run of its own
    other = {"Authorization": f"Bearer {tokens['admin']}", "Idempotency-Key": "k"}
    theirs = httpx.post(f"{served.url}/api/v1/runs", json=body, headers=other)
    assert theirs.status_code == 201 and theirs.json()["workflow_id"] not in ids
    with Client(served.url, tokens["read"]) as reader:
        assert len(reader.list_runs(workflow="counts").runs) == 2


@pytest.fixture
def cors(tmp_path: Path) -> Iterator[tuple[Served, str]]:
    """`tether serve --cors-origin`, a small body limit, and a token of scope write."""
    db = f"sqlite:///{tmp_path}/t.db"
    token = make_token(tmp_path, db, "write")
    s = start(tmp_path, db, "--cors-origin", ORIGIN, "--max-body", "2000")
    yield s, token
    s.stop()


def test_answers_of_the_edge_carry_cors_headers_and_a_replay_the_firsts(
    cors: tuple[Served, str],
) -> None:
    """Before, the Idempotency-Key's and the body limit's own answers (a replay, 409,
    413) had no CORS headers (a page of the allowed origin could not read them), and
    a replay had the first answer's body but none of its headers but content-type."""
    served, token = cors
    headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN, "Idempotency-Key": "k"}
    url, body = f"{served.url}/api/v1/runs", {"workflow": "greet", "input": {"name": "Ada"}}
    first = httpx.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    wid = first.json()["workflow_id"]
    assert first.headers["location"] == f"/api/v1/runs/{wid}"
    again = httpx.post(url, json=body, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == first.headers["content-type"]
    other = httpx.post(url, json={**body, "input": {"name": "Bo"}}, headers=headers)
    assert other.status_code == 409
    big = httpx.post(url, json={**body, "tags": ["a" * 3000]}, headers=headers)
    assert big.status_code == 413
    for answer in (first, again, other, big):
        assert answer.headers.get("access-control-allow-origin") == ORIGIN, answer.status_code


def test_a_cors_preflight_is_the_cors_answer_and_a_plain_options_the_allow(
    cors: tuple[Served, str],
) -> None:
    """A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered by
    the CORS middleware, before the server's own answer to OPTIONS (204 with Allow)."""
    served, _ = cors
    url = f"{served.url}/api/v1/runs"
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    preflight = httpx.options(
        url, headers=ask | {"Access-Control-Request-Headers": "authorization"}
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    stranger = httpx.options(url, headers=ask | {"Origin": "https://elsewhere.example"})
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    plain = httpx.options(url, headers={"Origin": ORIGIN})
    assert plain.status_code == 204
    assert plain.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert plain.headers["access-control-allow-origin"] == ORIGIN
