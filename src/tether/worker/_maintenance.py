"""Maintenance chores, each done by one worker at a time.

A chore is guarded by a lock (scope ``chore``) that its holder renews every
tick; other workers skip the chore while the lock is held, and take it over
when the holder stops renewing (it died) or releases it (it stopped).

Process rows are forgotten: every process that drives runs announces itself
under a lock of its own (scope ``process``), and each start of a worker is a
new process, so the rows of processes silent for `forget_processes_after`
seconds (a day by default) are deleted, or a deployment restarting its
workers daily would keep them, and every view of live processes read them all.

The outbox goes last and is bounded: its sinks are other people's servers, and
a slow or hanging one must neither keep the other chores (due timers, above
all) from running each tick nor outlive the lock that keeps a second worker
from delivering the same events again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._durations import check_seconds
from .._floors import worker_timing
from .._owners import owner_is_dead
from .._runner import PROCESS_SCOPE
from ..errors import InvalidArgumentError
from ..kernel import (
    LeaseReapStale,
    Reaped,
    RunAdoptOrphans,
    RunReapStuck,
    TimersFire,
    Woken,
    publish_outbox,
)
from ..store import LockOutcome

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "MaintenanceReport",
    "hold_worker_id",
    "maintenance_tick",
    "release_chores",
    "release_worker_id",
    "worker_id_taken",
]

log = logging.getLogger("tether.worker")

WORKER_SCOPE = "worker"  # a lock per worker id, held by the live worker that uses it

CHORES = ("timers", "schedules", "leases", "stuck", "orphans", "processes", "outbox")

# how long a process stays silent before its row is deleted: long past any lease, so a
# process that stalled (a laptop asleep) announces itself again rather than being missed
FORGET_PROCESSES_AFTER = 86400.0


@dataclass
class MaintenanceReport:
    """What one maintenance tick did (chores skipped because another worker holds them
    are listed in `skipped`)."""

    timers_woken: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    leases_reaped: int = 0
    stuck_requeued: list[str] = field(default_factory=list)
    orphans_adopted: list[str] = field(default_factory=list)
    processes_forgotten: int = 0
    outbox_delivered: int = 0
    outbox_failed: int = 0
    outbox_dead: int = 0
    skipped: list[str] = field(default_factory=list)


def lock_key(app: App, chore: str) -> str:
    """The lock a chore is done under. Schedules and orphans are an App's own (its
    schedules, its workflows): Apps of other services on one database each do theirs,
    the workers of one App take turns. The others are the database's."""
    if chore == "schedules":
        return f"schedules:{_digest(app.schedules)}"
    if chore == "orphans":
        return f"orphans:{_digest(app.workflows)}"
    return chore


def _digest(names: Collection[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(names)).encode()).hexdigest()[:16]


def _idle(app: App, chore: str, orphan_queue: str | None) -> bool:
    """A chore with nothing to do for this App: no lock is taken for it (an App with no
    sinks would mark every run's events delivered to nobody, before the App that has
    sinks could publish them)."""
    if chore == "schedules":
        return not app.schedules
    if chore == "orphans":
        return orphan_queue is None
    return chore == "outbox" and not app.kernel.sinks


async def _hold(app: App, chore: str, holder: str, ttl: float) -> bool:
    res = await app.store.acquire_lock(
        "chore", lock_key(app, chore), holder, ttl=ttl, now=app.clock.store_time(),
        at=app.clock.now(),
    )  # fmt: skip
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
    chores: Collection[str] = CHORES,
    forget_processes_after: float = FORGET_PROCESSES_AFTER,
) -> MaintenanceReport:
    """Fire due timers, start due schedule ticks, reap expired job leases, requeue stuck
    runs, adopt orphaned runs of the app's workflows onto `orphan_queue` (if given), delete
    the rows of processes silent (no longer live) for `forget_processes_after` seconds,
    and publish the outbox: batch after batch while they get anywhere, for up to
    `outbox_budget` seconds (at most a third of `chore_ttl`). `chores` picks some of
    these (a host that does only some: `("outbox",)`). `stuck_after` is at least 1 s."""
    # checked first: a NaN lease made every chore fail on its lock with a bare store
    # error in the log ("NOT NULL constraint failed"), and the report said nothing was due
    # (kept as the seconds checked: a timedelta, which the check takes, failed later)
    chore_ttl = check_seconds("chore_ttl", chore_ttl, positive=True)
    stuck_after = worker_timing(
        "stuck_after", check_seconds("stuck_after", stuck_after, positive=True)
    )
    orphan_grace = check_seconds("orphan_grace", orphan_grace)
    outbox_budget = check_seconds("outbox_budget", outbox_budget)
    forget_processes_after = check_seconds(
        "forget_processes_after", forget_processes_after, positive=True
    )
    chores = (chores,) if isinstance(chores, str) else chores
    unknown = set(chores) - set(CHORES)
    if unknown:
        raise InvalidArgumentError(f"unknown chores {sorted(unknown)}; known: {list(CHORES)}")
    report = MaintenanceReport()
    settings = _Settings(stuck_after, orphan_queue, orphan_grace, forget_processes_after)
    for chore in (c for c in CHORES if c in chores):
        if _idle(app, chore, orphan_queue):
            continue
        try:
            if chore == "outbox":  # it holds its lock itself, renewed while it delivers
                if not await _publish(app, report, holder, chore_ttl, outbox_budget):
                    report.skipped.append(chore)
            elif not await _hold(app, chore, holder, chore_ttl):
                report.skipped.append(chore)
            else:
                await _chore(app, chore, report, settings)
        except Exception:
            log.exception("maintenance chore %s failed", chore)
    return report


async def _publish(
    app: App, report: MaintenanceReport, holder: str, ttl: float, budget: float
) -> bool:
    """The outbox chore (`publish_outbox`); False if another worker holds it."""
    flushed = await publish_outbox(app.kernel, holder, ttl=ttl, budget=budget)
    if flushed is None:
        return False
    report.outbox_delivered += flushed.delivered
    report.outbox_failed += flushed.failed
    report.outbox_dead += flushed.dead
    return True


@dataclass(frozen=True)
class _Settings:
    """What the chores other than the outbox are told (see `maintenance_tick`)."""

    stuck_after: float
    orphan_queue: str | None
    orphan_grace: float
    forget_processes_after: float


async def _chore(app: App, chore: str, report: MaintenanceReport, settings: _Settings) -> None:
    """One chore other than the outbox; its result goes into `report`."""
    kernel = app.kernel
    orphan_queue = settings.orphan_queue
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
        assert orphan_queue is not None  # else idle
        adopted = await kernel.adispatch(
            RunAdoptOrphans(
                queue=orphan_queue,
                workflows=tuple(sorted(app.workflows)),
                grace=settings.orphan_grace,
            )
        )
        assert isinstance(adopted, Reaped)
        report.orphans_adopted = adopted.runs
    elif chore == "stuck":
        stuck = await kernel.adispatch(RunReapStuck(idle_for=settings.stuck_after))
        assert isinstance(stuck, Reaped)
        report.stuck_requeued = stuck.runs
    elif chore == "processes":
        report.processes_forgotten = await app.store.forget_silent_locks(
            PROCESS_SCOPE, silent_for=settings.forget_processes_after, now=app.clock.store_time()
        )


async def release_chores(app: App, holder: str) -> None:
    """Release the chore locks `holder` holds, as a worker stops gracefully: another
    worker then does the chores at its next tick, not once the locks expire."""
    for chore in CHORES:
        try:
            await app.store.release_lock(
                "chore",
                lock_key(app, chore),
                holder,
                now=app.clock.store_time(),
                at=app.clock.now(),
            )
        except Exception as exc:  # they expire anyway: say so, and release the rest
            log.warning("releasing the %s chore lock failed: %s", chore, exc)


async def hold_worker_id(app: App, worker_id: str, instance: str, ttl: float) -> str | None:
    """Take or renew the lock on `worker_id` for this worker `instance` (``host:pid:nonce``);
    the holder instead if another live worker holds it. Two workers of one id renewed,
    released and reaped each other's job leases and chores as their own, and both drove
    one job. An id whose worker died (its lock lapsed, or its process is gone from this
    machine) is free: a restarted container keeps its id."""
    for _ in range(2):
        res = await app.store.acquire_lock(
            WORKER_SCOPE, worker_id, instance, ttl=ttl, now=app.clock.store_time(),
            at=app.clock.now(),
        )  # fmt: skip
        if res.outcome is not LockOutcome.CONFLICT:
            return None
        if not owner_is_dead(res.row.holder):
            return res.row.holder
        await app.store.release_lock(
            WORKER_SCOPE, worker_id, res.row.holder, now=app.clock.store_time(),
            at=app.clock.now(),
        )  # fmt: skip
    return res.row.holder


def worker_id_taken(worker_id: str, holder: str) -> InvalidArgumentError:
    """The error of a worker started with an id a live worker holds."""
    host, _, rest = holder.rpartition(":")[0].rpartition(":")
    where = f" (pid {rest} on host {host})" if rest.isdigit() else f" ({holder})"
    return InvalidArgumentError(
        f"worker id {worker_id!r} is in use by a live worker{where}: two workers of one "
        "id would take each other's jobs and chores as their own. Give each worker its "
        "own id (Worker(worker_id=...), tether worker --worker-id), or leave it unset "
        "for a generated one; a "
        "stopped worker's id is free again once its lease lapses"
    )


async def release_worker_id(app: App, worker_id: str, instance: str) -> None:
    """Free `worker_id` as its worker stops: a worker restarted with it starts at once."""
    try:
        await app.store.release_lock(
            WORKER_SCOPE, worker_id, instance, now=app.clock.store_time(), at=app.clock.now()
        )
    except Exception as exc:  # it lapses anyway
        log.warning("releasing worker id %s failed: %s", worker_id, exc)
