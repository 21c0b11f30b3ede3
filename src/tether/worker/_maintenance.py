"""Maintenance chores, each done by one worker at a time.

A chore is guarded by a lock (scope ``chore``) that its holder renews every
tick; other workers skip the chore while the lock is held, and take it over
when the holder stops renewing (it died).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..kernel import (
    LeaseReapStale,
    OutboxFlush,
    OutboxFlushed,
    Reaped,
    RunAdoptOrphans,
    RunReapStuck,
    TimersFire,
    Woken,
)
from ..store import LockOutcome

if TYPE_CHECKING:
    from ..app import App

__all__ = ["MaintenanceReport", "maintenance_tick"]

log = logging.getLogger("tether.worker")

CHORES = ("timers", "schedules", "leases", "stuck", "orphans", "outbox")


@dataclass
class MaintenanceReport:
    """What one maintenance tick did (chores skipped because another worker holds them
    are listed in `skipped`)."""

    timers_woken: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    leases_reaped: int = 0
    stuck_requeued: list[str] = field(default_factory=list)
    orphans_adopted: list[str] = field(default_factory=list)
    outbox_delivered: int = 0
    outbox_failed: int = 0
    outbox_dead: int = 0
    skipped: list[str] = field(default_factory=list)


async def _hold(app: App, chore: str, holder: str, ttl: float) -> bool:
    res = await app.store.acquire_lock(
        "chore", chore, holder, ttl=ttl, now=app.clock.store_time(), at=app.clock.now()
    )
    return res.outcome is not LockOutcome.CONFLICT


async def maintenance_tick(
    app: App,
    holder: str,
    *,
    chore_ttl: float = 30.0,
    stuck_after: float = 300.0,
    orphan_queue: str | None = None,
    orphan_grace: float = 30.0,
    outbox_budget: float = 5.0,
) -> MaintenanceReport:
    """Fire due timers, start due schedule ticks, reap expired job leases, requeue stuck
    runs, adopt orphaned runs of the app's workflows onto `orphan_queue` (if given), and
    publish the outbox: batch after batch while they deliver, for up to `outbox_budget`
    seconds."""
    report = MaintenanceReport()
    kernel = app.kernel
    for chore in CHORES:
        if chore == "schedules" and not app.schedules:
            continue  # nothing to fire: no lock to take
        if not await _hold(app, chore, holder, chore_ttl):
            report.skipped.append(chore)
            continue
        try:
            if chore == "timers":
                woken = await kernel.adispatch(TimersFire())
                assert isinstance(woken, Woken)
                report.timers_woken = woken.woken
            elif chore == "schedules":
                report.scheduled = await app.afire_schedules()
            elif chore == "leases":
                reaped = await kernel.adispatch(LeaseReapStale())
                assert isinstance(reaped, Reaped)
                report.leases_reaped = reaped.count
            elif chore == "orphans":
                if orphan_queue is None:
                    continue
                adopted = await kernel.adispatch(
                    RunAdoptOrphans(
                        queue=orphan_queue,
                        workflows=tuple(sorted(app.workflows)),
                        grace=orphan_grace,
                    )
                )
                assert isinstance(adopted, Reaped)
                report.orphans_adopted = adopted.runs
            elif chore == "stuck":
                stuck = await kernel.adispatch(RunReapStuck(idle_for=stuck_after))
                assert isinstance(stuck, Reaped)
                report.stuck_requeued = stuck.runs
            else:
                await _drain_outbox(app, report, outbox_budget)
        except Exception:
            log.exception("maintenance chore %s failed", chore)
    return report


async def _drain_outbox(app: App, report: MaintenanceReport, budget: float) -> None:
    """Publish the outbox batch after batch, while a batch delivers something and the
    budget (seconds of real time) lasts. One batch a tick would cap delivery at one
    batch per maintenance interval (100 events/s by default), below what a few busy
    runs write: the backlog, and the age of what sinks receive, would grow without
    end. A batch that delivers nothing (drained, or its sinks failing) ends the pass.

    Between batches it pauses as long as the batch took: a backlog is drained at half
    the store's pace at most, and the runs' own writes (on SQLite, waiting for the
    one write lock) get the other half instead of waiting for the whole drain."""
    deadline = time.monotonic() + budget
    while True:
        began = time.monotonic()
        flushed = await app.kernel.adispatch(OutboxFlush())
        assert isinstance(flushed, OutboxFlushed)
        report.outbox_delivered += flushed.delivered
        report.outbox_failed += flushed.failed
        report.outbox_dead += flushed.dead
        now = time.monotonic()
        if flushed.delivered == 0 or now >= deadline:
            return
        await asyncio.sleep(min(now - began, deadline - now))
