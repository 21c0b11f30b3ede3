"""`POST /api/v1/runs/{id}/retry-compensations` (and `Client.retry_compensations`): an
operator's second try at the undo of a compensation_failed run, from the API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tether import Client, RunStatus
from tether.server import ApiError
from tether.testing import eventually_sync

from ._serve import Served


def _in(client: Client, wid: str, status: RunStatus) -> None:
    def there() -> bool:
        return client.get_record(wid).status is status

    eventually_sync(there, timeout=30)


def test_a_failed_undo_is_tried_again_once_fixed(served: Served, tmp_path: Path) -> None:
    fixed = tmp_path / "refunds-up"
    with Client(served.url) as client:
        wid = client.start("refunds", str(fixed))
        _in(client, wid, RunStatus.COMPENSATION_FAILED)
        assert client.retry_compensations(wid) == ["compensate:charge"]
        _in(client, wid, RunStatus.COMPENSATION_FAILED)  # the service is still down
        fixed.touch()
        assert client.retry_compensations(wid) == ["compensate:charge"]
        _in(client, wid, RunStatus.COMPENSATED)
        events = [e.type for e in client.events(wid)]
        assert events.count("run.compensations_retried") == 2
        with pytest.raises(ApiError) as refused:
            client.retry_compensations(wid)
        assert refused.value.status == 409
        assert refused.value.code == "run_not_compensation_failed"
        assert f"run {wid!r} is compensated" in refused.value.message
    missing = httpx.post(f"{served.url}/api/v1/runs/none/retry-compensations")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"
