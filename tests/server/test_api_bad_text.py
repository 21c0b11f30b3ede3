"""Text the database cannot store, sent where the API passed it on unchecked: a 422
saying what was wrong, never the server's 500 or the store's 503 (retry later)."""

from __future__ import annotations

import json

import httpx
import pytest

from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from ._serve import Served


@pytest.mark.parametrize("step", ["ok\x00", "   "])
def test_a_rerun_from_a_step_no_database_can_name_is_a_422(
    either_served: Served, step: str
) -> None:
    """Before, the kernel's command refused the name: a 500 ``internal``, a bug."""
    with Client(either_served.url) as client:
        wid = client.start("greet", {"name": "Ada"})
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.COMPLETED, timeout=30)
        with pytest.raises(ApiError) as caught:
            client.rerun_from(wid, step)
        assert (caught.value.status, caught.value.code) == (422, "invalid_argument")
        assert "step" in caught.value.message
        assert client.get_record(wid).status is RunStatus.COMPLETED  # nothing was done


def test_revoking_a_token_id_with_a_nul_is_a_422(either_served: Served) -> None:
    """Before, PostgreSQL refused the id: a 503 ``store_unavailable``, as if the
    database were down and the request worth sending again."""
    answer = httpx.delete(f"{either_served.url}/api/v1/api-tokens/a%00b", timeout=30)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and "token_id" in error["message"]


@pytest.mark.parametrize("reason", ["a\x00b", "\ud800"])
def test_a_cancel_reason_no_database_can_store_is_a_422(either_served: Served, reason: str) -> None:
    """Before, a NUL was PostgreSQL's 503 (and kept by SQLite), a lone surrogate the
    server's 500; the run stays as it was."""
    with Client(either_served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        body = f'{{"reason": {json.dumps(reason)}}}'
        answer = httpx.post(
            f"{either_served.url}/api/v1/runs/{wid}/cancel",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 422, answer.text
        assert "body.reason" in answer.json()["error"]["message"]
        assert client.get_record(wid).status is RunStatus.WAITING
