"""``GET /metrics`` on a real `tether serve`: Prometheus text, read scope required."""

from __future__ import annotations

import httpx

from tether import Client
from tether.testing import eventually_sync

from ._serve import Served


def test_metrics_are_served_as_prometheus_text_to_a_reader(
    secured: tuple[Served, dict[str, str]],
) -> None:
    served, tokens = secured
    assert httpx.get(served.url + "/metrics").status_code == 401
    with Client(served.url, tokens["write"]) as client:
        run_id = client.start("counts", 3)
        eventually_sync(lambda: client.get_record(run_id).status.value == "completed", timeout=60)
    got = httpx.get(served.url + "/metrics", headers={"Authorization": f"Bearer {tokens['read']}"})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'tether_runs{workflow="counts",status="completed"} 1' in got.text
    assert "tether_step_seconds_count 3" in got.text
