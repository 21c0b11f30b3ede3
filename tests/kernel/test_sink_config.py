"""A sink that cannot take events is refused when it is built, not at every delivery
until each event is dead-lettered; a sink that is down is said in the log at once."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import ClassVar

import pytest

from tether import App, FakeClock, InvalidArgumentError, Workflow
from tether.kernel import (
    CallableSink,
    CollectingSink,
    Kernel,
    LoggingSink,
    OutboxEvent,
    OutboxFlush,
    OutboxFlushed,
    OutboxPolicy,
    OutboxReplayDead,
    Replayed,
    WebhookSink,
)


async def _flush(app: App) -> OutboxFlushed:
    result = await app.kernel.adispatch(OutboxFlush())
    assert isinstance(result, OutboxFlushed)
    return result


async def _run(app: App, wid: str) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("a", lambda: 1)

    await app.arun(flow, workflow_id=wid)


class _SyncPublish:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def publish(self, event: OutboxEvent) -> None:  # not async: awaiting its None failed
        self.seen.append(f"{event.workflow_id}:{event.seq}")


def test_a_sink_class_or_a_sync_publish_is_refused_when_the_app_is_built(
    sqlite_url: str,
) -> None:
    """Both were taken; every delivery then failed (a sync publish after it had run, so
    each event went out 8 times) until every event was dead-lettered."""
    with pytest.raises(InvalidArgumentError, match=r"LoggingSink is a class.*LoggingSink\("):
        App(sqlite_url, sinks=[LoggingSink])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match=r"publish is not async.*CallableSink"):
        App(sqlite_url, sinks=[_SyncPublish()])  # type: ignore[list-item]


async def test_the_kernel_refuses_sinks_that_are_not_a_list(app: App) -> None:
    """A single sink (not in a list) failed with a bare TypeError naming no argument."""
    sink = CollectingSink()
    with pytest.raises(InvalidArgumentError, match=r"sinks must be a list of event sinks"):
        Kernel(app.store, app.clock, app, app.kernel.host, sinks=sink)  # type: ignore[arg-type]


async def test_sinks_given_as_a_generator_are_all_kept(sqlite_url: str) -> None:
    """The App's check read a generator of sinks to its end, leaving none for the
    settings and the kernel: every event was published to nobody."""
    sink = CollectingSink()
    app = App(sqlite_url, sinks=(s for s in [sink]))  # type: ignore[arg-type]
    try:
        await _run(app, "g1")
        flushed = await _flush(app)
        assert flushed.delivered == len(sink.of("g1")) > 0
        again = app.with_database(sqlite_url)
        assert again.kernel.sinks == [sink]
        await again.aclose()
    finally:
        await app.aclose()


def test_logging_sink_checks_its_logger_and_level() -> None:
    """A logger's name or an unknown level was kept; each delivery then raised."""
    with pytest.raises(InvalidArgumentError, match=r"logger must be a logging.Logger"):
        LoggingSink("myapp.events")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"level must be a logging level"):
        LoggingSink(level="loud")
    with pytest.raises(InvalidArgumentError, match=r"level must be a logging level"):
        LoggingSink(level=True)
    LoggingSink(logging.getLogger("x"), level="warning")  # a level's name is read


async def test_a_logging_sink_given_a_level_name_logs_at_that_level(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.kernel.sinks.append(LoggingSink(logging.getLogger("t.events"), level="warning"))
    await _run(app, "logged")
    with caplog.at_level(logging.WARNING, logger="t.events"):
        flushed = await _flush(app)
    assert flushed.failed == 0 and flushed.delivered > 0
    assert [r.levelno for r in caplog.records if r.name == "t.events"] == [
        logging.WARNING
    ] * flushed.delivered


async def test_a_flush_with_no_sinks_leaves_the_events_for_an_app_that_has_sinks(
    app: App,
) -> None:
    """A flush dispatched on an App with no sinks marked every event published, to
    nobody: the App sharing the database with sinks never saw them."""
    await _run(app, "kept")
    assert await _flush(app) == OutboxFlushed(delivered=0, failed=0, dead=0)
    sink = CollectingSink()
    app.kernel.sinks.append(sink)
    flushed = await _flush(app)
    assert flushed.delivered == len(sink.of("kept")) > 0


async def test_a_failing_sink_is_said_in_the_log_before_its_events_are_dead(
    app: App, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing was logged while a sink was down until its events were dead-lettered,
    minutes later: one warning a pass now names the error and the attempt."""

    def down(event: OutboxEvent) -> None:
        raise ConnectionError("broker at 127.0.0.1:6390 refused the connection")

    app.kernel.sinks.append(CallableSink(down))
    await _run(app, "r1")
    await _run(app, "r2")
    with caplog.at_level(logging.WARNING, logger="tether.outbox"):
        flushed = await _flush(app)
    assert flushed.failed == 2
    said = [r.getMessage() for r in caplog.records if r.name == "tether.outbox"]
    assert len(said) == 1
    assert "2 event delivery(ies) failed" in said[0]
    assert "attempt 1" in said[0] and "refused the connection" in said[0]
    caplog.clear()
    clock.advance(5)
    with caplog.at_level(logging.WARNING, logger="tether.outbox"):
        await _flush(app)
    said = [r.getMessage() for r in caplog.records if r.name == "tether.outbox"]
    assert len(said) == 1 and "attempt 2" in said[0]


class _AuthReceiver(http.server.BaseHTTPRequestHandler):
    auth: ClassVar[list[str | None]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _AuthReceiver.auth.append(self.headers.get("Authorization"))
        _AuthReceiver.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_receiver() -> Iterator[int]:
    _AuthReceiver.auth, _AuthReceiver.paths = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


async def test_webhook_credentials_in_the_url_are_sent_as_basic_auth(
    app: App, auth_receiver: int
) -> None:
    """urllib took 'alice:p@ss@127.0.0.1' for the host: every delivery failed with "Name
    or service not known", the password in each error, log line and dead letter."""
    url = f"http://alice:p%40ss@127.0.0.1:{auth_receiver}/hooks?team=a"
    sink = WebhookSink(url, "s3cret")
    assert sink.url == f"http://127.0.0.1:{auth_receiver}/hooks?team=a"
    app.kernel.sinks.append(sink)
    await _run(app, "authed")
    flushed = await _flush(app)
    assert flushed.failed == 0 and flushed.delivered == len(_AuthReceiver.auth) > 0
    assert set(_AuthReceiver.auth) == {"Basic YWxpY2U6cEBzcw=="}  # alice:p@ss
    assert set(_AuthReceiver.paths) == {"/hooks?team=a"}


async def test_webhook_errors_never_show_the_password_of_its_url() -> None:
    sink = WebhookSink("http://alice:hunter2@127.0.0.1:1/hook", "s3cret", timeout=5)
    event = OutboxEvent("r", 1, "t", None, None, FakeClock().now(), 1)
    with pytest.raises(ConnectionError) as failed:
        await sink.publish(event)
    assert "hunter2" not in str(failed.value) and "127.0.0.1:1" in str(failed.value)
    await sink.aclose()


def test_webhook_credentials_given_twice_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match=r"credentials given twice"):
        WebhookSink("http://a:b@127.0.0.1/x", "s", headers={"authorization": "Bearer t"})


async def test_a_policy_given_timedeltas_retries_and_dead_letters(
    app: App, clock: FakeClock
) -> None:
    """`backoff` and `max_delay` took a timedelta (their error says one may be given),
    and the first failed delivery's back-off raised TypeError mid-pass, every pass: the
    event was never recorded as failed, nor dead-lettered."""
    policy = OutboxPolicy(
        max_attempts=2, backoff=timedelta(seconds=2), max_delay=timedelta(minutes=1)
    )
    assert (policy.backoff, policy.max_delay, policy.delay(3)) == (2.0, 60.0, 8.0)
    assert OutboxPolicy(delivery_timeout=timedelta(seconds=5)).delivery_timeout == 5.0
    app.kernel.outbox = policy

    def down(event: OutboxEvent) -> None:
        raise ConnectionError("refused")

    app.kernel.sinks.append(CallableSink(down))
    await _run(app, "retried")
    assert (await _flush(app)).failed == 1
    clock.advance(2)
    assert (await _flush(app)).dead == 1


def test_a_policy_refuses_a_delivery_timeout_that_is_no_number() -> None:
    """A string or None failed with a bare TypeError; True was taken as one second."""
    for bad in ("5", None, True):
        with pytest.raises(InvalidArgumentError, match="delivery_timeout"):
            OutboxPolicy(delivery_timeout=bad)  # type: ignore[arg-type]


def test_a_policy_refuses_a_claim_shorter_than_two_delivery_timeouts() -> None:
    """Accepted before: a delivery started just before half the claim and slow to its
    timeout outlived the claim, and another publisher sent the same event again."""
    with pytest.raises(InvalidArgumentError, match=r"claim_lease \(30 s\) must be at least "
                       r"twice delivery_timeout \(60 s\).*raise claim_lease to 120"):  # fmt: skip
        OutboxPolicy(claim_lease=30)
    assert OutboxPolicy(claim_lease=30, delivery_timeout=15).claim_lease == 30.0


async def test_the_kernel_outbox_must_be_a_policy(app: App) -> None:
    """A dict was kept, and every outbox pass then failed with an AttributeError."""
    with pytest.raises(InvalidArgumentError, match=r"must be a tether.kernel.OutboxPolicy"):
        app.kernel.outbox = {"max_attempts": 3}  # type: ignore[assignment]
    assert app.kernel.outbox == OutboxPolicy()


def test_a_callable_sink_refuses_a_function_that_cannot_take_an_event() -> None:
    """One taking no argument (or two) was kept, and every delivery then failed with a
    TypeError until each event was dead-lettered."""

    def two(event: OutboxEvent, extra: int) -> None: ...

    for fn in (lambda: None, two, 42):
        with pytest.raises(InvalidArgumentError, match=r"callable taking an OutboxEvent"):
            CallableSink(fn)  # type: ignore[arg-type]
    CallableSink(print)  # takes any number of arguments
    CallableSink(lambda event, extra=1: None)
    CallableSink(lambda *args: None)


async def test_a_sink_that_took_an_event_a_later_sink_failed_is_not_sent_it_again(
    app: App, clock: FakeClock
) -> None:
    """With a webhook and a broker, the broker down for a while: every retry of an event
    went to the webhook again as well, which got each event up to 8 times."""
    first = CollectingSink()
    refusals = {"n": 4}
    second: list[str] = []

    def broker(event: OutboxEvent) -> None:
        if refusals["n"] > 0:
            refusals["n"] -= 1
            raise ConnectionError("broker restarting")
        second.append(f"{event.workflow_id}:{event.seq}")

    app.kernel.sinks.extend([first, CallableSink(broker)])
    await _run(app, "twice")
    for _ in range(6):
        await _flush(app)
        clock.advance(60)
    expected = [f"twice:{e.seq}" for e in (await app.aget_record("twice")).events]
    assert second == expected
    assert [f"{e.workflow_id}:{e.seq}" for e in first.events] == expected  # each once, in order
    assert app.kernel._taken == {}  # nothing left remembered


async def test_a_dead_letter_replayed_goes_to_every_sink_again(app: App, clock: FakeClock) -> None:
    first = CollectingSink()

    def broker(event: OutboxEvent) -> None:
        raise ConnectionError("gone")

    app.kernel.outbox = OutboxPolicy(max_attempts=2)
    app.kernel.sinks.extend([first, CallableSink(broker)])
    await _run(app, "dead")
    await _flush(app)
    clock.advance(60)
    assert (await _flush(app)).dead == 1  # the run's next event is tried: it fails too
    assert [f"{e.workflow_id}:{e.seq}" for e in first.events] == ["dead:1", "dead:2"]  # each once
    assert ("dead", 1) not in app.kernel._taken and ("dead", 2) in app.kernel._taken
    app.kernel.sinks[1] = CollectingSink()
    assert await app.kernel.adispatch(OutboxReplayDead()) == Replayed(count=1)
    clock.advance(60)
    await _flush(app)
    got = [f"{e.workflow_id}:{e.seq}" for e in first.events]
    expected = [f"dead:{e.seq}" for e in (await app.aget_record("dead")).events]
    assert sorted(got) == sorted([*expected, "dead:1"])  # the replayed one again; dead:2 not
