"""A run id reused after its run was pruned: the new run numbers its events from 1
again, and a sink that drops repeats by `delivery_id` (as the docs advise) must not
take them for the old run's and drop them."""

from __future__ import annotations

from datetime import timedelta

from tether import App, FakeClock, Workflow
from tether.kernel import CollectingSink, OutboxEvent, OutboxFlush, OutboxFlushed


class DedupSink:
    """Keeps each delivery id once, as a receiver of at-least-once delivery does."""

    def __init__(self) -> None:
        self.kept: dict[str, OutboxEvent] = {}

    async def publish(self, event: OutboxEvent) -> None:
        self.kept.setdefault(event.delivery_id, event)


async def _flush(app: App) -> None:
    assert isinstance(await app.kernel.adispatch(OutboxFlush()), OutboxFlushed)


async def _flow(wf: Workflow) -> str:
    return await wf.step("a", lambda: "x")


async def test_a_reused_run_id_repeats_no_delivery_id(app: App, clock: FakeClock) -> None:
    sink = DedupSink()
    app.kernel.sinks.append(sink)
    await app.arun(_flow, workflow_id="daily")
    await _flush(app)
    first = len(sink.kept)
    clock.advance(timedelta(days=2))
    assert await app.aprune("1d") == 1
    await app.arun(_flow, workflow_id="daily")
    await _flush(app)
    types = [e.type for e in sink.kept.values()]
    assert first >= 2 and len(sink.kept) == 2 * first, types
    assert types[:first] == types[first:]
    runs = {e.run_created for e in sink.kept.values()}
    assert len(runs) == 2 and None not in runs


async def test_every_attempt_at_one_event_has_the_same_delivery_id(
    app: App, clock: FakeClock
) -> None:
    class FailOnce(CollectingSink):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[str] = []

        async def publish(self, event: OutboxEvent) -> None:
            self.ids.append(event.delivery_id)
            if self.ids.count(event.delivery_id) == 1:
                raise ConnectionError("first try refused")
            await super().publish(event)

    sink = FailOnce()
    app.kernel.sinks.append(sink)
    await app.arun(_flow, workflow_id="r")
    for _ in range(20):
        await _flush(app)
        clock.advance(600)
    assert sink.ids and all(sink.ids.count(i) == 2 for i in sink.ids)
    assert {e.delivery_id for e in sink.events} == set(sink.ids)
