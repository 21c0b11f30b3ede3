"""Addresses and refusals a new user meets first, against `tether serve`: the
dashboard's address it prints (``/``) dropped the filters it was given, the API's
401 to a caller without a token did not say how to get one, and an Idempotency-Key
out of bounds was told "1-200 chars" (not that the key was the problem's size)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether import Client, RunStatus

from ._serve import Served, start, tether
from .test_dashboard import done

FLOWS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def parked(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go")
    """
)


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    yield s
    s.stop()


def test_the_address_printed_at_start_keeps_its_filters(dash: Served) -> None:
    with Client(dash.url) as client:
        done(client, client.start("parked", workflow_id="later-2"), RunStatus.WAITING)
    home = httpx.get(f"{dash.url}/?status=completed&workflow=parked")
    assert home.status_code == 303
    assert home.headers["location"] == "/runs?status=completed&workflow=parked"
    listed = httpx.get(dash.url + home.headers["location"]).text
    assert "later-2" not in listed  # it is waiting: filtered out
    assert httpx.get(f"{dash.url}/").headers["location"] == "/runs"


def test_a_request_without_a_token_is_told_how_to_get_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    made = tether(tmp_path, db, "tokens", "create", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    served = start(tmp_path, db, flows=FLOWS)
    try:
        refused = httpx.get(f"{served.url}/api/v1/runs")
    finally:
        served.stop()
    assert refused.status_code == 401
    message = refused.json()["error"]["message"]
    assert "Authorization: Bearer <token>" in message and "tether tokens create" in message


def test_a_token_given_to_the_printed_address_signs_in_and_keeps_the_filters(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    made = tether(tmp_path, db, "tokens", "create", "--scope", "read")
    assert made.returncode == 0, made.stderr
    served = start(tmp_path, db, flows=FLOWS)
    try:
        with httpx.Client(base_url=served.url, follow_redirects=True, timeout=60) as web:
            page = web.get(f"/?token={made.stdout.strip()}&status=failed")
    finally:
        served.stop()
    assert page.status_code == 200 and "Sign in" not in page.text
    assert page.url.path == "/runs" and page.url.params.get("status") == "failed"
    assert "token" not in page.url.params  # the address loses it


@pytest.mark.parametrize(("key", "said"), [("k" * 201, "(it has 201)"), ("", "(it is empty)")])
def test_an_idempotency_key_out_of_bounds_is_told_the_bounds(
    served: Served, key: str, said: str
) -> None:
    sent = httpx.post(f"{served.url}/api/v1/runs", json={"workflow": "counts", "input": 1},
                      headers={"Idempotency-Key": key})  # fmt: skip
    assert sent.status_code == 422
    message = sent.json()["error"]["message"]
    assert "give 1 to 200 characters" in message and said in message
