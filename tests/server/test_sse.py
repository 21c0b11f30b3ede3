"""The live event stream of a running run."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

import httpx

from tether import AsyncClient, Client, RunStatus
from tether.server._wire import SSEParser
from tether.testing import eventually_sync

from ._serve import Served


def _follow(served: Served, wid: str) -> tuple[list[str], threading.Thread]:
    """The types of the run's streamed events, filled by a thread reading the stream
    (started, and streaming, on return) until it ends."""
    seen: list[str] = []
    streaming = threading.Event()

    def follow() -> None:
        with Client(served.url) as reader:
            for event in reader.stream_events(wid):
                seen.append(event.type)
                streaming.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert streaming.wait(30)
    return seen, thread


def test_the_stream_shows_a_parked_run_signalled_to_its_end(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        seen, thread = _follow(served, wid)
        # the recorded events arrive one by one: wait for the park before signalling
        eventually_sync(lambda: "workflow.waiting" in seen, timeout=30)
        before = len(seen)
        assert client.signal(wid, "go", 1)
        thread.join(60)
        assert not thread.is_alive()  # the stream ended with the run
        after = seen[before:]
        assert after[-1] == "workflow.completed"
        assert [e.type for e in client.events(wid)] == seen  # every event, once, in order


def test_the_stream_of_a_run_cancelled_with_compensation_ends_after_the_undo(
    served: Served,
) -> None:
    """The run is `cancelled` first, its compensations still due: the stream goes on
    until they ran (before: it ended at the cancel, without them)."""
    with Client(served.url) as client:
        wid = client.start("undoes")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        seen, thread = _follow(served, wid)
        assert client.cancel(wid, "customer left", compensate=True) == [wid]
        thread.join(60)
        assert not thread.is_alive()
        assert seen[-1] == "workflow.compensated", seen
        assert client.get_record(wid).status is RunStatus.COMPENSATED


async def test_resuming_a_stream_after_a_seq(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        wid = await client.start("counts", 2)
        every = [e async for e in client.stream_events(wid)]
        assert every[-1].type == "workflow.completed"
        tail = [e async for e in client.stream_events(wid, after=every[1].seq)]
        assert tail == every[2:]


def test_the_parser_reads_events_comments_and_the_end() -> None:
    parser = SSEParser()
    lines = [
        ": keep-alive",
        "",
        "id: 1",
        "event: step.started",
        'data: {"seq": 1, "type": "step.started", "at": "2026-01-01T00:00:00Z"}',
        "",
        "event: end",
        'data: {"status": "completed"}',
        "",
    ]
    events = list(parser.feed(lines))
    assert [e.seq for e in events] == [1] and parser.done


def test_a_recorded_event_type_with_a_line_break_stays_one_frame() -> None:
    """An event recorded before types were checked, with a forged frame in its type,
    is sent as one frame whose type is one line: the stream goes on to the run's end."""
    from datetime import UTC, datetime

    from tether.server._models import Event
    from tether.server._sse import sse_frame

    forged = "progress\n\nid: 999\nevent: end\ndata: {}"
    frame = sse_frame(Event(seq=2, type=forged, at=datetime(2026, 1, 1, tzinfo=UTC)))
    parser = SSEParser()
    lines = frame.decode().split("\n")
    assert lines[:2] == ["id: 2", "event: progress  id: 999 event: end data: {}"]
    assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
    events = list(parser.feed(lines))
    assert [e.seq for e in events] == [2] and not parser.done


def test_open_streams_end_cleanly_and_at_once_when_the_server_stops(served: Served) -> None:
    """Before, an open stream held SIGTERM's shutdown up for uvicorn's 10 s grace, then
    was cut (a traceback in the log, `ApiUnreachable` for the client)."""
    with Client(served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
    failed: list[BaseException] = []
    seen: list[str] = []
    streaming = threading.Event()

    def follow() -> None:
        try:
            with Client(served.url) as reader:
                for event in reader.stream_events(wid):
                    seen.append(event.type)
                    streaming.set()
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=follow) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert streaming.wait(30)
    eventually_sync(lambda: seen.count("workflow.waiting") == 2, timeout=30)
    began = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 143
    # under uvicorn's graceful timeout (10 s), with room for a loaded machine: the
    # streams did not hold the shutdown up for the whole of it
    assert time.monotonic() - began < 9
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert failed == []  # a clean end, not ApiUnreachable
    log = served.log
    assert "Cancel" not in log and "Traceback" not in log, log
    assert "workflow.completed" not in seen


def test_a_stream_of_a_run_deleted_meanwhile_ends_with_an_end_event(served: Served) -> None:
    """Before, the stream broke off with a traceback in the server's log, and the
    client took the server for unreachable."""
    with Client(served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
    url = f"{served.url}/api/v1/runs/{wid}/events/stream"
    with httpx.stream("GET", url, timeout=30) as resp:
        lines = resp.iter_lines()
        while next(lines) != "event: workflow.waiting":  # streaming: the run's last event
            pass
        # the run's row goes at once, as another process would delete it: not cancelled
        # first, whose end the stream could see before the delete (and end with)
        with sqlite3.connect(served.db.removeprefix("sqlite:///")) as db:
            assert db.execute("DELETE FROM runs WHERE id = ?", (wid,)).rowcount == 1
        rest = list(lines)  # to the end of the body, which is whole
    assert "event: end" in rest
    end = json.loads(rest[rest.index("event: end") + 1].removeprefix("data: "))
    assert end["status"] == "deleted" and "deleted" in end["message"]
    assert "Traceback" not in served.log
