"""The outbox's delivery rules: webhooks never follow redirects and refuse bad urls
at once, a run backing off holds back only its own events, and a run's events
reach the sinks in `seq` order whatever the clocks of the hosts that wrote them."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

import tether
from tether import App, FakeClock, Workflow
from tether.kernel import (
    CallableSink,
    CollectingSink,
    OutboxEvent,
    OutboxFlush,
    OutboxFlushed,
    OutboxPolicy,
    WebhookSink,
)
from tether.store import Fence, NewEvent, NewRun
from tether.worker import maintenance_tick

from .._sql import execute

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def _flush(app: App, max_events: int = 500) -> OutboxFlushed:
    result = await app.kernel.adispatch(OutboxFlush(max_events=max_events))
    assert isinstance(result, OutboxFlushed)
    return result


def _event(seq: int = 1) -> OutboxEvent:
    return OutboxEvent("r", seq, "step.completed", None, None, T0, 1)


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Answers a POST to /moved-<code> with that redirect to /new, anything else with
    200; logs (method, path, body) of every request."""

    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Redirector.seen.append((self.command, self.path, body))
        if self.path.startswith("/moved-"):
            self.send_response(int(self.path.removeprefix("/moved-")))
            self.send_header("Location", "/new")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Redirector.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_webhook_redirect_fails_the_delivery_and_names_the_location(
    server: str, code: int
) -> None:
    """urllib followed a 301/302/303 as a GET without the body; its 200 counted as
    delivered: the event was lost (and its signature sent to the redirect target)."""
    sink = WebhookSink(f"http://{server}/moved-{code}", "s3cret")
    with pytest.raises(ConnectionError) as caught:
        await sink.publish(_event())
    message = str(caught.value)
    assert f"HTTP {code}" in message and f"http://{server}/new" in message
    assert "redirects are not followed" in message
    assert [(m, p) for m, p, _ in _Redirector.seen] == [("POST", f"/moved-{code}")]


async def test_a_redirected_webhook_event_stays_pending(
    app: App, clock: FakeClock, server: str
) -> None:
    app.kernel.sinks.append(WebhookSink(f"http://{server}/moved-301", "s3cret"))

    async def flow(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    await app.arun(flow, workflow_id="r")
    result = await _flush(app)
    assert (result.delivered, result.failed) == (0, 1)
    assert [m for m, _, _ in _Redirector.seen] == ["POST"]  # no GET to /new
    pending = await app.store.outbox_pending(limit=10, now=clock.now() + timedelta(hours=1))
    assert pending[0].seq == 1 and pending[0].attempts == 1


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://", "names no host"),
        ("https:///path", "names no host"),
        ("http://127.0.0.1:99999/", "Port out of range"),
        ("http://127.0.0.1:0/", "port 0"),
        ("http://host:abc/", "could not be cast"),
        ("http://exa mple.com/x", "space"),
        ("http://example.com/a\nb", "control character"),
        ("http://example.com/caf\u00e9", "percent-encode"),
        ("http://[::1/", "Invalid IPv6"),
        ("ftp://example.com/", "http"),
        ("example.com/hook", "http"),
        (None, "None"),
        (b"http://example.com", "b'http"),
    ],
)
def test_webhook_sink_refuses_a_url_it_could_never_post_to(url: object, why: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match="webhook url must be") as caught:
        WebhookSink(url, "s")  # type: ignore[arg-type]
    assert why in str(caught.value)


def test_webhook_sink_refuses_a_bad_secret_or_timeout() -> None:
    for secret in (None, "", b"", 42):
        with pytest.raises(tether.InvalidArgumentError, match="webhook secret"):
            WebhookSink("http://example.com", secret)  # type: ignore[arg-type]
    for timeout in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(tether.InvalidArgumentError, match="webhook timeout"):
            WebhookSink("http://example.com", "s", timeout=timeout)  # type: ignore[arg-type]


async def test_webhook_sink_takes_an_uppercase_scheme(server: str) -> None:
    sink = WebhookSink(f"HTTP://{server}/hook", "s3cret")
    await sink.publish(_event())
    assert [(m, p) for m, p, _ in _Redirector.seen] == [("POST", "/hook")]
    assert WebhookSink("HTTPS://example.com", "s").url == "HTTPS://example.com"


async def _run_with_events(app: App, wid: str, count: int, at: datetime) -> None:
    store = app.store
    await store.create_run(NewRun(wid, "wf", state="null"), at)
    gen = (await store.claim_run(wid, "owner-a", at, NewEvent("workflow.running"))).generation
    await store.append_events(Fence(wid, gen), [NewEvent("tick")] * (count - 1), at)


async def test_a_run_backing_off_holds_back_only_its_own_events(app: App, clock: FakeClock) -> None:
    """The batch was the oldest events, and the runs waiting for a retry were dropped
    from it afterwards: a failing run with a batch's worth of old events left the
    batch empty, and no other run's events went out until it was dead-lettered."""
    delivered: list[tuple[str, int]] = []

    def publish(event: OutboxEvent) -> None:
        if event.workflow_id == "chatty":
            raise ConnectionError("the receiver rejects this run's events")
        delivered.append((event.workflow_id, event.seq))

    app.kernel.sinks.append(CallableSink(publish))
    await _run_with_events(app, "chatty", 8, clock.now())
    await _run_with_events(app, "small", 2, clock.now() + timedelta(seconds=1))
    first = await _flush(app, max_events=5)  # chatty's oldest events fill the batch
    assert (first.delivered, first.failed) == (0, 1)
    second = await _flush(app, max_events=5)  # chatty waits for its retry: not in the way
    assert second.delivered == 2 and delivered == [("small", 1), ("small", 2)]
    clock.advance(3600)
    third = await _flush(app, max_events=5)  # its retry is due: tried again, first event only
    assert (third.delivered, third.failed) == (0, 1)


async def test_events_before_a_backing_off_one_still_go(app: App, clock: FakeClock) -> None:
    """Only an event waiting for its retry, and what follows it in its run, wait."""
    sink = CollectingSink()
    app.kernel.sinks.append(sink)
    await _run_with_events(app, "r", 4, clock.now())
    retry_at = clock.now() + timedelta(minutes=5)
    await app.store.outbox_mark(delivered=[], failed=[("r", 1, "gone", None)], at=clock.now())
    await app.store.outbox_mark(delivered=[], failed=[("r", 3, "down", retry_at)], at=clock.now())
    await app.store.outbox_replay_dead(limit=10, at=clock.now())  # seq 1 is due again
    await _flush(app)
    assert [e.seq for e in sink.events] == [1, 2]
    clock.set(retry_at)
    await _flush(app)
    assert [e.seq for e in sink.events] == [1, 2, 3, 4]


async def test_a_runs_events_reach_the_sinks_in_seq_order_whatever_the_clocks(
    database_url: str,
) -> None:
    """Two hosts drive one run in turn, the second's clock two minutes behind: by
    `at`, its events sorted before the first's, and a sink saw the run complete
    before it started."""
    sink = CollectingSink()
    t = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    async def flow(wf: Workflow) -> str:
        await wf.step("one", lambda: 1)
        await wf.wait_for_signal("go")
        await wf.step("two", lambda: 2)
        return "done"

    first = App(database_url, clock=FakeClock(t), sinks=[sink])
    try:
        first.workflow(name="flow")(flow)
        assert (await first.arun(flow, workflow_id="r")).status is tether.RunStatus.WAITING
    finally:
        await first.aclose()
    second = App(database_url, clock=FakeClock(t - timedelta(minutes=2)), sinks=[sink])
    try:
        second.workflow(name="flow")(flow)
        await second.asignal("r", "go")
        assert (await second.arun(flow, workflow_id="r")).status is tether.RunStatus.COMPLETED
        await _flush(second)
        seqs = [e.seq for e in sink.of("r")]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 8
        types = [e.type for e in sink.of("r")]
        assert types[0] == "workflow.running" and types[-1] == "workflow.completed"
    finally:
        await second.aclose()


async def test_a_sink_that_never_returns_fails_its_delivery_and_the_tick_ends(
    app: App, clock: FakeClock, database_url: str
) -> None:
    """A plugin sink awaiting a broker that never answers held the outbox pass, its
    renewed chore lock and the worker's maintenance tick for good: no timer of that
    worker fired again. Each delivery now fails after `OutboxPolicy.delivery_timeout`
    (real seconds, kept tiny here), is retried on its back-off, and other runs go on."""
    never = asyncio.Event()
    delivered: list[str] = []

    async def publish(event: OutboxEvent) -> None:
        if event.workflow_id == "stuck":
            await never.wait()
        delivered.append(f"{event.workflow_id}:{event.seq}")

    app.kernel.sinks.append(CallableSink(publish))
    app.kernel.outbox = OutboxPolicy(delivery_timeout=0.05)
    await _run_with_events(app, "stuck", 2, clock.now())
    await _run_with_events(app, "fine", 2, clock.now() + timedelta(seconds=1))
    tick = await asyncio.wait_for(maintenance_tick(app, "w1", chores=("outbox",)), 10)
    assert (tick.outbox_failed, tick.outbox_delivered) == (1, 2)
    assert delivered == ["fine:1", "fine:2"]
    [(error,)] = execute(
        database_url, "SELECT last_error FROM events WHERE run_id = 'stuck' AND seq = 1"
    )
    assert error == "TimeoutError: CallableSink did not take the event within 0.05 s"


async def test_a_blocking_sync_plugin_sink_fails_its_delivery_and_frees_the_loop(
    app: App, clock: FakeClock, database_url: str
) -> None:
    """A sync `CallableSink` function blocking on a broker that never answers ran on the
    event loop: the host's claims, lease renewals and signal handlers all stopped, and
    `delivery_timeout` could not end it (the delivery even counted as made once it
    returned). It runs in a thread now: its delivery fails on time, other runs go on,
    and the loop keeps turning meanwhile."""
    broker = threading.Event()  # the broker answers only once the test is over
    delivered: list[str] = []
    beats: list[int] = []

    def publish(event: OutboxEvent) -> None:
        if event.workflow_id == "stuck":
            broker.wait(10)  # bounded, so that a loop it blocks frees itself in the end
        delivered.append(f"{event.workflow_id}:{event.seq}")

    async def heartbeat() -> None:
        while not broker.is_set():
            beats.append(len(beats))
            await asyncio.sleep(0.01)

    app.kernel.sinks.append(CallableSink(publish))
    app.kernel.outbox = OutboxPolicy(delivery_timeout=1.0)
    await _run_with_events(app, "stuck", 2, clock.now())
    await _run_with_events(app, "fine", 2, clock.now() + timedelta(seconds=1))
    beating = asyncio.ensure_future(heartbeat())
    try:
        await asyncio.sleep(0)
        before = len(beats)
        tick = await maintenance_tick(app, "w1", chores=("outbox",))
        during = len(beats) - before
        made = list(delivered)  # before the broker answers the abandoned thread
    finally:
        broker.set()
        await beating
    assert (tick.outbox_failed, tick.outbox_delivered) == (1, 2)
    assert made == ["fine:1", "fine:2"]
    assert during > 1  # the loop turned while the sink blocked its thread
    [(error,)] = execute(
        database_url, "SELECT last_error FROM events WHERE run_id = 'stuck' AND seq = 1"
    )
    assert error == "TimeoutError: CallableSink did not take the event within 1 s"


def test_outbox_policy_refuses_a_delivery_timeout_that_is_no_duration() -> None:
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(tether.InvalidArgumentError, match="delivery_timeout"):
            OutboxPolicy(delivery_timeout=bad)


def test_outbox_policy_refuses_retries_it_could_not_schedule() -> None:
    """A retry time past a datetime's range (a huge `max_delay`) raised in the middle
    of every pass, so the failing event was never recorded nor dead-lettered: the
    outbox stuck on it. Such a policy, and attempts or delays that are no count or no
    duration, are refused when built, each naming its field."""
    bad: list[tuple[dict[str, object], str]] = [
        ({"max_delay": 1e12}, "max_delay"),
        ({"max_delay": -1.0}, "max_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"backoff": float("nan")}, "backoff"),
        ({"backoff": -1}, "backoff"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
    ]
    for kwargs, field in bad:
        with pytest.raises(tether.InvalidArgumentError, match=field):
            OutboxPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_back_off_of_a_late_attempt_is_the_cap_not_an_overflow() -> None:
    """`backoff * 2 ** n` made an int too large for a float past about 1,000 attempts
    (OverflowError in the pass); past the cap, the delay is the cap."""
    policy = OutboxPolicy(max_attempts=5000, backoff=1.0, max_delay=300.0)
    assert [policy.delay(n) for n in (1, 2, 9, 3000)] == [1.0, 2.0, 256.0, 300.0]
