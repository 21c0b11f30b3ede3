"""Every run id the App accepts is one run over the API: read, listed by events and
waits, streamed, signalled and cancelled, whatever it holds ('/', a route's own
name, dots, spaces, non-ASCII), on both databases."""

from __future__ import annotations

import httpx

from tether import Client, EndReason, RunStatus
from tether.testing import eventually_sync

from ._serve import Served

IDS = [
    "a/b",
    "x/events",
    "y/waits",
    "z/events/stream",
    "c/cancel",
    "s/signal",
    "w/ai-calls",
    "..",
    ".",
    "../runs",
    "a//b",
    "/lead",
    "trail/",
    "sp ace",
    "ünï/ß",
    "q?x=1#f",
    "pct%2F",
]


def _status(client: Client, wid: str, status: RunStatus) -> None:
    eventually_sync(lambda: client.get_record(wid).status is status, timeout=30)


def test_every_id_is_one_run_on_every_route(either_served: Served) -> None:
    """Before, ``x/events`` was read as the events of run ``x`` (404 naming 'x') and
    ``..`` as the path one step up."""
    with Client(either_served.url) as client:
        for wid in IDS:
            assert client.start("waits", workflow_id=wid) == wid
        for wid in IDS:
            _status(client, wid, RunStatus.WAITING)
            assert client.get_record(wid).workflow_id == wid, wid
            assert client.events(wid)[0].seq == 1
            assert [w.kind for w in client.waits(wid)] == ["signal"]
            assert client.ai_calls(wid) == []
        signalled, cancelled = IDS[: len(IDS) // 2], IDS[len(IDS) // 2 :]
        for wid in signalled:
            assert client.signal(wid, "go", wid) is True
            assert [e.type for e in client.stream_events(wid)][-1] == "workflow.completed"
            assert client.get_record(wid).output == wid
        for wid in cancelled:
            assert client.cancel(wid, "done with it") == [wid]
            assert [e.type for e in client.stream_events(wid)][-1] == "workflow.cancelled"
            assert client.get_record(wid).end_reason is EndReason.CANCELLED


def test_an_encoded_id_is_read_whole_and_a_plain_one_still_works(served: Served) -> None:
    api = f"{served.url}/api/v1/runs"
    with Client(served.url) as client:
        client.start("greet", {"name": "E"}, workflow_id="x/events")
        client.start("greet", {"name": "X"}, workflow_id="x")
        _status(client, "x/events", RunStatus.COMPLETED)
        _status(client, "x", RunStatus.COMPLETED)
    record = httpx.get(f"{api}/x%2Fevents").json()
    assert record["workflowId"] == "x/events" and record["output"] == "hi E"
    events = httpx.get(f"{api}/x%2Fevents/events").json()["events"]
    assert events[-1]["type"] == "workflow.completed"
    assert "workflow id '..'" in httpx.get(f"{api}/%2E%2E").json()["error"]["message"]
    # sent unencoded, a path ending in a route's name is that route of the shorter id
    assert httpx.get(f"{api}/x/events").json()["events"][0]["seq"] == 1
    assert httpx.get(f"{api}/x").json()["workflowId"] == "x"
