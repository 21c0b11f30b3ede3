"""Requests a user sends by hand (curl, plain HTTP): a JSON body sent without its
Content-Type is told to send it, a body that is not JSON says why and where, a path
no route takes says so, and a run id already taken by another workflow is a conflict
with what is recorded (409), not a malformed request."""

from __future__ import annotations

import httpx
import pytest

from ._serve import Served

BODY = b'{"workflow": "counts", "input": 2}'


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        (None, "no Content-Type"),
        # curl -d sends a form's type
        ("application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
        ("text/plain", "Content-Type 'text/plain'"),
    ],
)
def test_a_json_body_without_its_content_type_is_told_to_send_it(
    served: Served, content_type: str | None, said: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    refused = httpx.post(f"{served.url}/api/v1/runs", content=BODY, headers=headers)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_request"
    assert "must be JSON sent with Content-Type: application/json" in error["message"]
    assert f"it came with {said}" in error["message"]
    assert error["details"][0]["field"] == "body"
    sent = httpx.post(
        f"{served.url}/api/v1/runs", content=BODY, headers={"content-type": "application/json"}
    )
    assert sent.status_code == 201, sent.text


def test_a_body_of_json_that_is_no_object_is_still_said_so(served: Served) -> None:
    refused = httpx.post(f"{served.url}/api/v1/runs", json=[1])
    assert refused.status_code == 422
    assert "the body must be a JSON object" in refused.json()["error"]["message"]


def test_a_run_id_of_another_workflow_is_a_conflict(either_served: Served) -> None:
    runs = f"{either_served.url}/api/v1/runs"
    first = httpx.post(runs, json={"workflow": "counts", "input": 1, "workflow_id": "taken"})
    assert first.status_code == 201, first.text
    again = httpx.post(runs, json={"workflow": "counts", "input": 1, "workflow_id": "taken"})
    assert again.status_code == 200 and again.json() == {"workflow_id": "taken"}
    other = httpx.post(runs, json={"workflow": "waits", "workflow_id": "taken"})
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "workflow_id_taken"
    assert "already names a run of workflow 'counts', not 'waits'" in error["message"]
    assert error["details"] == {"workflow_id": "taken", "workflow": "counts"}


def test_a_body_that_is_not_json_says_why_and_where(served: Served) -> None:
    # FastAPI's own: "body.30: JSON decode error", naming a field "30" and no reason
    refused = httpx.post(
        f"{served.url}/api/v1/runs",
        content=b'{"workflow": "counts" "input": 2}',
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422
    (problem,) = refused.json()["error"]["details"]
    assert problem["field"] == "body"
    assert problem["message"] == (
        "not valid JSON: Expecting ',' delimiter at character 22 of the body; send valid JSON"
    )


def test_a_path_no_route_takes_says_which_and_where_the_routes_are(served: Served) -> None:
    # Starlette's "Not Found" could not be told from a run or a token not found
    missing = httpx.post(f"{served.url}/api/v1/wait-token/abc/complete", json={})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"] == (
        "no route takes POST /api/v1/wait-token/abc/complete; the API's routes are under "
        "/api/v1/ and listed in /api/v1/openapi.json"
    )
