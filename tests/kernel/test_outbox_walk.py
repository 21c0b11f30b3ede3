"""The outbox as an operator meets it, on a SQLite file and on PostgreSQL: a sink whose
error no store can keep as it is; a sink that is down, said once a pass."""

from __future__ import annotations

import logging

import pytest

from tether import App, FakeClock
from tether.kernel import (
    CallableSink,
    OutboxEvent,
    OutboxFlush,
    OutboxFlushed,
    OutboxPolicy,
    publish_outbox,
)
from tether.store import Fence, NewEvent, NewRun


class _Unreadable(Exception):
    """A plugin's exception whose message cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


async def _run_with_events(app: App, wid: str, count: int) -> None:
    """A run with `count` undelivered events."""
    at = app.clock.now()
    await app.store.create_run(NewRun(wid, "wf", state="null"), at)
    gen = (await app.store.claim_run(wid, "owner", at, NewEvent("workflow.running"))).generation
    await app.store.append_events(Fence(wid, gen), [NewEvent("tick")] * (count - 1), at)


async def _flush(app: App) -> OutboxFlushed:
    result = await app.kernel.adispatch(OutboxFlush())
    assert isinstance(result, OutboxFlushed)
    return result


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (ConnectionError("broker said \x00\x01 and hung up"), "broker said \\x00\x01 and hung"),
        (ConnectionError("bad name b'\udcff'"), "bad name b'\\udcff'"),
        (_Unreadable(), "_Unreadable: (its message could not be read)"),
    ],
)
async def test_a_sink_error_no_store_can_keep_as_is_is_recorded_and_dead_lettered(
    app: App, clock: FakeClock, error: Exception, kept: str
) -> None:
    """Such an error failed the record of the whole pass: every pass delivered its
    batch again (event 1 here, for ever) and the refused event was never dead-lettered."""
    seen: list[int] = []

    def deliver(event: OutboxEvent) -> None:
        seen.append(event.seq)
        if event.seq == 2:
            raise error

    app.kernel.sinks.append(CallableSink(deliver))
    app.kernel.outbox = OutboxPolicy(max_attempts=3, backoff=1)
    await _run_with_events(app, "r", 3)
    first = await _flush(app)
    assert (first.delivered, first.failed) == (1, 1)
    for _ in range(4):
        clock.advance(60)
        await _flush(app)
    assert seen == [1, 2, 2, 2, 3]  # event 1 recorded as delivered: never sent again
    [dead] = await app.store.outbox_dead(limit=10)
    assert (dead.seq, dead.attempts) == (2, 3)
    assert dead.last_error is not None and kept in dead.last_error


async def test_a_sink_that_is_down_is_said_in_one_warning_a_pass(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A pass publishes batch after batch, and each batch logged its own warning: a
    broker down under a backlog wrote one per batch, not the one a pass the README
    says. Here every batch retries the same event at once (no back-off)."""

    def down(event: OutboxEvent) -> None:
        raise ConnectionError("broker at 127.0.0.1:6390 refused the connection")

    app.kernel.sinks.append(CallableSink(down))
    app.kernel.outbox = OutboxPolicy(max_attempts=4, backoff=0)
    await _run_with_events(app, "r", 1)
    with caplog.at_level(logging.WARNING, logger="tether.outbox"):
        flushed = await publish_outbox(app.kernel, "walker", ttl=30, budget=30)
    assert flushed is not None and (flushed.failed, flushed.dead) == (3, 1)
    said = [r.getMessage() for r in caplog.records if "will be retried" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("3 event delivery(ies) failed")
    assert "first: r:1, attempt 1: ConnectionError: broker at" in said[0]
