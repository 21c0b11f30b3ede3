"""The outbox: at-least-once delivery in order per run, retries, dead letters, sinks."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from tether import App, FakeClock, Workflow
from tether.kernel import (
    CallableSink,
    CollectingSink,
    OutboxEvent,
    OutboxFlush,
    OutboxFlushed,
    OutboxReplayDead,
    WebhookSink,
    sign,
)


class FlakySink:
    """Fails the first `failures` deliveries of each event, then accepts it."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries: dict[str, int] = {}
        self.delivered: list[OutboxEvent] = []

    async def publish(self, event: OutboxEvent) -> None:
        n = self.tries.get(f"{event.workflow_id}:{event.seq}", 0) + 1
        self.tries[f"{event.workflow_id}:{event.seq}"] = n
        if n <= self.failures:
            raise ConnectionError(f"try {n} refused")
        self.delivered.append(event)


async def _flush(app: App) -> OutboxFlushed:
    result = await app.kernel.adispatch(OutboxFlush())
    assert isinstance(result, OutboxFlushed)
    return result


async def _two_step_run(app: App, wid: str) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("a", lambda: 1)
        await wf.step("b", lambda: 2)

    await app.arun(flow, workflow_id=wid)


async def test_sink_failing_twice_then_succeeding_delivers_each_event_once_in_order(
    app: App, clock: FakeClock
) -> None:
    sink = FlakySink(failures=2)
    app.kernel.sinks.append(sink)
    await _two_step_run(app, "r1")
    await _two_step_run(app, "r2")
    for _ in range(30):  # each event needs three tries, one after the other per run
        await _flush(app)
        clock.advance(600)  # past any back-off
    expected = [e.type for e in (await app.aget_record("r1")).events]
    assert [e.type for e in sink.delivered if e.workflow_id == "r1"] == expected
    assert [e.seq for e in sink.delivered if e.workflow_id == "r2"] == sorted(
        e.seq for e in sink.delivered if e.workflow_id == "r2"
    )
    ids = [f"{e.workflow_id}:{e.seq}" for e in sink.delivered]
    assert len(ids) == len(set(ids))  # each delivered once
    assert all(n == 3 for n in sink.tries.values())
    assert (await _flush(app)).delivered == 0  # nothing left


async def test_failed_event_holds_back_later_events_of_its_run(app: App, clock: FakeClock) -> None:
    sink = FlakySink(failures=1)
    app.kernel.sinks.append(sink)
    await _two_step_run(app, "r")
    first = await _flush(app)
    assert first.delivered == 0 and first.failed == 1  # the rest waited behind it
    second = await _flush(app)
    assert second.delivered == 0  # still backing off
    for _ in range(20):
        clock.advance(2)
        await _flush(app)
    seqs = [e.seq for e in sink.delivered]
    assert seqs == sorted(seqs) and len(seqs) == len((await app.aget_record("r")).events)


async def test_always_failing_sink_dead_letters_and_replay_delivers(
    app: App, clock: FakeClock
) -> None:
    broken = FlakySink(failures=10**9)
    app.kernel.sinks.append(broken)
    await _two_step_run(app, "r")
    total = len((await app.aget_record("r")).events)
    dead = 0
    for _ in range(total * app.kernel.outbox.max_attempts + 5):
        dead += (await _flush(app)).dead
        clock.advance(10_000)
    assert dead == total
    assert len(await app.store.outbox_dead(limit=100)) == total
    assert broken.delivered == []
    broken.failures = 0  # the endpoint is fixed
    broken.tries.clear()
    replayed = await app.kernel.adispatch(OutboxReplayDead())
    assert replayed.count == total  # type: ignore[union-attr]
    await _flush(app)
    assert len(broken.delivered) == total
    assert await app.store.outbox_dead(limit=100) == []


async def test_collecting_and_callable_sinks(app: App) -> None:
    seen: list[str] = []
    collect = CollectingSink()
    app.kernel.sinks.extend([collect, CallableSink(lambda e: seen.append(e.type))])
    await _two_step_run(app, "r")
    await _flush(app)
    assert [e.type for e in collect.of("r")] == seen
    assert seen[0] == "workflow.running" and seen[-1] == "workflow.completed"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_next = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_next > 0:
            _Receiver.fail_next -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    _Receiver.fail_next = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/tether"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_webhook_sink_posts_signed_events(app: App, receiver: str, clock: FakeClock) -> None:
    secret = "s3cret"
    app.kernel.sinks.append(WebhookSink(receiver, secret, clock=lambda: 1_700_000_000))
    _Receiver.fail_next = 1  # the first POST gets a 503 and is retried later
    await _two_step_run(app, "hooked")
    await _flush(app)
    clock.advance(60)
    await _flush(app)
    events = (await app.aget_record("hooked")).events
    assert len(_Receiver.received) == len(events)
    for (headers, body), expected in zip(_Receiver.received, events, strict=True):
        ts = headers["X-Tether-Timestamp"]
        assert ts == "1700000000"
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Tether-Signature"] == f"sha256={mac}" == sign(secret, ts, body)
        data = json.loads(body)
        assert (data["workflowId"], data["seq"], data["type"]) == (
            "hooked",
            expected.seq,
            expected.type,
        )
        delivery, run = headers["X-Tether-Delivery"].rsplit(":", 1)
        assert delivery == f"hooked:{expected.seq}" and run.isdigit()  # which run of the id
    assert len({h["X-Tether-Delivery"].rsplit(":", 1)[1] for h, _ in _Receiver.received}) == 1


def test_webhook_sink_bad_configuration() -> None:
    from tether import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="http"):
        WebhookSink("ftp://x", "s")
    with pytest.raises(InvalidArgumentError, match="secret"):
        WebhookSink("http://127.0.0.1:1/x", "")
