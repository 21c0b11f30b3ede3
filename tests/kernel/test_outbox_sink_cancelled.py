"""A sink whose own awaitable is cancelled under it (a broker client dropping the
publish it had pending) fails that delivery, as any error does. It raised
`CancelledError` out of the pass: the maintenance tick ended there (a worker's
maintenance task with it: no timer fired, no lease reaped again), and the event was
never recorded as failed, so never dead-lettered: the outbox stuck on it for good."""

from __future__ import annotations

import asyncio

from tether import App, FakeClock
from tether.kernel import OutboxEvent, OutboxPolicy
from tether.store import Fence, NewEvent, NewRun
from tether.worker import maintenance_tick


class _DroppingSink:
    """A plugin sink whose broker client cancels the publish it awaits."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def publish(self, event: OutboxEvent) -> None:
        self.seen.append(event.seq)
        pending = asyncio.get_running_loop().create_future()
        pending.cancel()  # the client closed its connection, cancelling what was pending
        await pending


async def test_a_sink_cancelled_inside_fails_its_delivery_until_dead_lettered(
    database_url: str, clock: FakeClock
) -> None:
    sink = _DroppingSink()
    app = App(database_url, clock=clock, sinks=[sink])
    app.kernel.outbox = OutboxPolicy(max_attempts=2, backoff=1.0)
    try:
        at = clock.now()
        await app.store.create_run(NewRun("r1", "wf", state="null"), at)
        claimed = await app.store.claim_run("r1", "owner", at, NewEvent("workflow.running"))
        await app.store.append_events(Fence("r1", claimed.generation), [NewEvent("tick")], at)
        first = await maintenance_tick(app, "w1")
        assert (first.outbox_delivered, first.outbox_failed, first.outbox_dead) == (0, 1, 0)
        clock.advance(5)
        second = await maintenance_tick(app, "w1")
        # event 1 dead-lettered; its run's next event then went on (and failed in turn)
        assert (second.outbox_delivered, second.outbox_failed, second.outbox_dead) == (0, 1, 1)
        [dead] = await app.adead_letters()
        assert (dead.workflow_id, dead.seq) == ("r1", 1)
        assert dead.last_error is not None and "cancelled inside" in dead.last_error
        assert sink.seen == [1, 1, 2]
    finally:
        await app.aclose()
