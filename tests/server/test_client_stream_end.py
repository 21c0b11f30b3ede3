"""The event stream as its users meet it: a run's own events named like the stream's."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tether import AsyncClient, Client
from tether.server._wire import SSEParser

from ._serve import start

ENDS = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def ends(wf: tether.Workflow) -> int:
        await wf.append_event("end", "the first stage ended")
        await wf.step("after", lambda: 1)
        return 1
    """
)


async def test_a_runs_own_end_event_does_not_end_the_stream(tmp_path: Path) -> None:
    """Before, both clients took the run's ``end`` event for the stream's end: they
    stopped there, the run's later events (and its completion) never read."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=ENDS)
    try:
        with Client(served.url) as client:
            wid = client.start("ends")
            streamed = [e.type for e in client.stream_events(wid)]
            assert streamed == [e.type for e in client.events(wid)]
            assert "end" in streamed and streamed[-1] == "workflow.completed"
        async with AsyncClient(served.url) as twin:
            assert [e.type async for e in twin.stream_events(wid)] == streamed
    finally:
        served.stop()


def test_the_parser_ends_at_the_streams_end_alone() -> None:
    """The stream's end has no id; an event numbered ``end`` is the run's. Nothing after
    the end is read."""
    at = '"at": "2026-01-01T00:00:00Z"'
    lines = [
        "id: 1",
        "event: end",
        f'data: {{"seq": 1, "type": "end", {at}}}',
        "",
        "event: end",
        'data: {"status": "completed"}',
        "",
        "id: 2",
        "event: step.started",
        f'data: {{"seq": 2, "type": "step.started", {at}}}',
        "",
    ]
    parser = SSEParser()
    assert [(e.seq, e.type) for e in parser.feed(lines)] == [(1, "end")]
    assert parser.done
