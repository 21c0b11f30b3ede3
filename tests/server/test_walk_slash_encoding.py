"""The API walked with what HTTP tools send unasked, against a real `tether serve`: the
list's address with a trailing slash (``/api/v1/runs/``), and a compressed body."""

from __future__ import annotations

import gzip
import json

import httpx

from ._serve import Served

JSON = {"Content-Type": "application/json"}


def test_the_runs_list_with_a_trailing_slash_goes_to_the_list(served: Served) -> None:
    """``/runs/`` was read as the record of run "" (a 422 asking for a workflow id) and a
    POST to it as a 405 saying the path takes GET alone; every other route's address
    with a trailing slash is redirected to the one without, and so is this one."""
    api = served.url + "/api/v1"
    started = httpx.post(
        api + "/runs/", json={"workflow": "counts", "input": 1}, follow_redirects=True
    )
    assert started.status_code == 201, started.text
    wid = started.json()["workflow_id"]
    listed = httpx.get(api + "/runs/", follow_redirects=True)
    assert listed.status_code == 200, listed.text
    assert [r["workflow_id"] for r in listed.json()["runs"]] == [wid]
    for method in ("GET", "HEAD", "POST"):
        moved = httpx.request(method, api + "/runs/")
        assert moved.status_code == 307, (method, moved.text)
        assert moved.headers["location"] == api + "/runs"
    # a run's own address is unchanged, the queues' redirect too
    assert httpx.get(f"{api}/runs/{wid}").json()["workflowId"] == wid
    assert httpx.get(api + "/queues/").headers["location"] == api + "/queues"


def test_a_compressed_body_is_refused_as_such(served: Served) -> None:
    """Nothing in the server decodes a ``Content-Encoding``: a gzipped JSON body was
    read as its raw bytes ("not valid JSON at character 0"), and a plain one labelled
    gzip was taken as sent. Now a 415 names the encoding and the one taken."""
    api = served.url + "/api/v1"
    body = gzip.compress(json.dumps({"workflow": "counts", "input": 1}).encode())
    for key in (None, "k-gzip"):  # before the key is looked at: nothing was done
        headers = JSON | {"Content-Encoding": "gzip"}
        if key is not None:
            headers["Idempotency-Key"] = key
        refused = httpx.post(api + "/runs", content=body, headers=headers)
        assert refused.status_code == 415, refused.text
        assert refused.headers["accept-encoding"] == "identity"
        error = refused.json()["error"]
        assert error["code"] == "unsupported_content_encoding"
        assert "'gzip'" in error["message"] and "uncompressed" in error["message"]
    assert httpx.get(api + "/runs").json()["runs"] == []
    plain = json.dumps({"workflow": "counts", "input": 1})
    sent = httpx.post(
        api + "/runs",
        content=plain,
        headers=JSON | {"Content-Encoding": "identity", "Idempotency-Key": "k-gzip"},
    )
    assert sent.status_code == 201, sent.text


def test_a_token_of_too_low_a_scope_is_told_which_it_has_and_which_to_send(
    secured: tuple[Served, dict[str, str]],
) -> None:
    """A 403 for a token of too low a scope said only the scope needed: not the one the
    token sent has, nor how to get one of the scope needed."""
    served, tokens = secured
    api = served.url + "/api/v1"
    for scope, method, path, needed in (
        ("read", "POST", "/events", "write"),
        ("write", "GET", "/api-tokens", "admin"),
    ):
        body = {"type": "x"} if method == "POST" else None
        refused = httpx.request(
            method, api + path, json=body, headers={"Authorization": f"Bearer {tokens[scope]}"}
        )
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "insufficient_scope"
        assert error["details"] == {"needed": needed, "granted": scope}
        assert f"the one sent is {scope!r}" in error["message"]
        assert f"tether tokens create --scope {needed}" in error["message"]
