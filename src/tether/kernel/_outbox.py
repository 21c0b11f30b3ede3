"""Publishing the outbox: deliver pending events to the sinks, in order per run.

Events are rows of the run's history, written in the transaction that caused
them; publishing happens afterwards, at least once. A failed delivery is
retried with capped exponential back-off; after `max_attempts` the event is
dead-lettered (and later events of its run move on). `replay_dead` puts dead
events back.

A pass starts no delivery once the guard set by `OutboxPolicy.deliver_while`
says stop: a maintenance pass must end within the lease of its chore lock, or
another worker would take the lock and deliver the same events again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import Clock
from ..store import OutboxRow, Store
from ._sinks import EventSink, OutboxEvent

__all__ = ["OutboxPolicy", "flush"]

log = logging.getLogger("tether.outbox")

_go_on: ContextVar[Callable[[], bool] | None] = ContextVar("tether_outbox_go_on", default=None)


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 8
    backoff: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempts: int) -> float:
        return float(min(self.max_delay, self.backoff * 2 ** max(0, attempts - 1)))

    @staticmethod
    @contextmanager
    def deliver_while(go_on: Callable[[], bool]) -> Iterator[None]:
        """Have each flush in this context start a delivery only while `go_on()` holds.

        The `outbox.flush` command carries no deadline; the maintenance chore sets one
        here (its time budget, its lock still held) and dispatches the command as usual.
        """
        token = _go_on.set(go_on)
        try:
            yield
        finally:
            _go_on.reset(token)


def _event(row: OutboxRow) -> OutboxEvent:
    return OutboxEvent(
        workflow_id=row.workflow_id,
        seq=row.seq,
        type=row.type,
        message=row.message,
        detail=None if row.detail is None else json.loads(row.detail),
        at=row.at,
        attempt=row.attempts + 1,
    )


async def flush(
    store: Store,
    sinks: Sequence[EventSink],
    clock: Clock,
    policy: OutboxPolicy,
    *,
    max_events: int,
) -> tuple[int, int, int]:
    """One pass over the outbox; (delivered, failed, dead-lettered). Events not tried
    (`OutboxPolicy.deliver_while` said stop) stay pending, their attempts uncounted."""
    rows = await store.outbox_pending(limit=max_events, now=clock.store_time())
    go_on = _go_on.get()
    delivered: list[tuple[str, int]] = []
    failed: list[tuple[str, int, str, datetime | None]] = []
    blocked: set[str] = set()
    dead = 0
    for row in rows:
        if row.workflow_id in blocked:
            continue  # keep order: nothing after a failed event of the same run
        if go_on is not None and not go_on():
            break
        event = _event(row)
        try:
            for sink in sinks:
                await sink.publish(event)
        except Exception as exc:
            attempts = row.attempts + 1
            error = f"{type(exc).__name__}: {exc}"
            if attempts >= policy.max_attempts:
                failed.append((row.workflow_id, row.seq, error, None))
                dead += 1
                log.warning(
                    "event %s dead-lettered after %d attempts: %s",
                    event.delivery_id,
                    attempts,
                    error,
                )
            else:
                retry_at = clock.now() + timedelta(seconds=policy.delay(attempts))
                failed.append((row.workflow_id, row.seq, error, retry_at))
                blocked.add(row.workflow_id)
            continue
        delivered.append((row.workflow_id, row.seq))
    if delivered or failed:
        await store.outbox_mark(
            delivered=delivered,
            failed=failed,
            at=clock.now(),
        )
    return len(delivered), len(failed) - dead, dead
