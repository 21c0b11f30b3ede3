"""Claiming jobs for a host: the one call both hosts make, and the warning of jobs
that claim leaves to other workers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .._names import check_name, check_queue_name
from .._owners import new_owner
from ..errors import InvalidArgumentError
from ..store import Claimed

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "FOREIGN_WARN_EVERY",
    "ForeignJobs",
    "claim_jobs",
    "host_id",
    "queue_names",
    "split_names",
]

log = logging.getLogger("tether.worker")


def split_names(queues: object) -> object:
    """`queues` as the CLI's ``-q`` reads it: a string of names separated by commas is
    those names (``"agents,batch"``, as Celery's ``-Q``), not one queue named
    ``agents,batch`` that nothing is sent to (the worker then idled, saying nothing).
    A name in a list is taken as it is."""
    if not isinstance(queues, str) or "," not in queues:
        return queues
    names = [name.strip() for name in queues.split(",")]
    if not all(names):  # "agents," or "agents,,batch": a name left out, not a queue ""
        raise InvalidArgumentError(
            f"queues={queues!r} has a blank queue name; give names separated by commas, "
            "e.g. queues='agents,batch', or a list: queues=['agents', 'batch']"
        )
    return names


def queue_names(queues: object) -> tuple[str, ...]:
    """The queues a worker serves: one name, or a list of names (never a name's letters),
    each once."""
    names = [queues] if isinstance(queues, str) else queues
    if not isinstance(names, Sequence) or not names:
        # a set (or a generator) was refused as not "one or more queue names", which it
        # is: say what to pass instead, and why order matters
        unordered = (
            ""
            if names is None or isinstance(names, Sequence)
            else (
                f" in a list or tuple, not a {type(names).__name__} (in order: the first "
                "queue also takes the orphaned runs a worker adopts)"
            )
        )
        raise InvalidArgumentError(
            f"queues must be one or more queue names{unordered}, got {queues!r}; "
            "e.g. queues=['default']"
        )
    for name in names:
        check_queue_name("queue name", name)
    # each once: a queue named twice was read twice by the claim, its jobs picked twice
    # over, and the claim filled half its free slots
    return tuple(dict.fromkeys(names))


def host_id(worker_id: object) -> str:
    """The id a host claims and leases jobs under: `worker_id`, checked, or a fresh one
    of this process when None. A non-text id (`worker_id=5`) passed the worker's start,
    then failed every job it claimed, leaving each run 'running' until its lease lapsed."""
    return new_owner() if worker_id is None else check_name("worker_id", worker_id)


async def claim_jobs(
    app: App, worker_id: str, queues: Sequence[str], limit: int, *, with_runs: bool = False
) -> Claimed:
    """Claim up to `limit` ready jobs of `queues` for `worker_id`, under the app's job
    visibility and queue limits, at the app's clock; `with_runs`: their runs too, for
    the app's host to drive at once (`JobRow.run`).

    Only jobs of the workflows registered in the app, at versions it resumes, as of
    now (a workflow registered later is claimed from the next call): a job of another
    workflow waits for a worker that has it, as Temporal and Celery route tasks."""
    runs = app.kernel.host.run_claim()
    return await app.store.claim_jobs(
        worker_id,
        queues,
        limit=limit,
        visibility=app.kernel.job_visibility,
        limits=app.queue_limits,
        now=app.clock.store_time(),
        at=app.clock.now(),
        runs=runs if with_runs else None,
        workflows=runs.workflows,
    )


FOREIGN_WARN_EVERY = 60.0  # seconds between two warnings of one workflow's jobs left queued


class ForeignJobs:
    """Warns when a worker's queues hold jobs of workflows it did not register (or at
    versions it does not resume): its claim leaves them to a worker that has them, and
    if no live one does, they wait for good; the log says so, once per workflow per
    `every` seconds of the app's clock."""

    def __init__(
        self, app: App, worker_id: str, queues: Sequence[str], every: float = FOREIGN_WARN_EVERY
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.queues = tuple(queues)
        self.every = every
        self._warned: dict[tuple[str, str | None], datetime] = {}

    async def check(self) -> list[tuple[str, str, str | None]]:
        """Warn of each foreign workflow not warned of lately; (queue, name, version)
        of those warned of now."""
        ours = {(n, v or None) for n, v in self.app.kernel.host.run_claim().workflows}
        now = self.app.clock.now()
        warned: list[tuple[str, str, str | None]] = []
        for queue, name, version in await self.app.store.queued_workflows(self.queues):
            if name is None or (name, version) in ours:
                continue  # queued by an older tether (claimed by any worker), or ours
            last = self._warned.get((name, version))
            if last is not None and (now - last).total_seconds() < self.every:
                continue
            self._warned[(name, version)] = now
            await self._warn(queue, name, version)
            warned.append((queue, name, version))
        return warned

    async def unserved_schedules(self) -> list[str]:
        """Warn of each schedule (not warned of lately) whose queue neither this worker
        nor any live worker of its workflow serves: its ticks are started, and wait
        there; the names of those warned of now. A typo in `queue=` was met with
        silence while tick after tick piled up on a queue nobody works."""
        now = self.app.clock.now()
        warned: list[str] = []
        for sched in self.app.schedules.values():
            key = (f"schedule {sched.name}", None)
            last = self._warned.get(key)
            if sched.queue in self.queues or (
                last is not None and (now - last).total_seconds() < self.every
            ):
                continue
            self._warned[key] = now  # looked at: again in `every` at the soonest
            if await self.app.adrivers(sched.workflow, sched.queue):
                continue  # another worker serves it
            log.warning(
                "schedule %r queues its runs on queue %r, which no live worker of workflow "
                "%r serves (this one serves %s): its ticks wait there until one starts; "
                "start a worker with -q %s, or give the schedule queue= one of those",
                sched.name, sched.queue, sched.workflow, ", ".join(map(repr, self.queues)),
                sched.queue,
                extra={"worker": self.worker_id, "queue": sched.queue, "schedule": sched.name},
            )  # fmt: skip
            warned.append(sched.name)
        return warned

    async def _warn(self, queue: str, name: str, version: str | None) -> None:
        drivers = await self.app.adrivers(name, queue)
        mine = self.app.workflows.get(name)
        why = (
            f"version {version!r}, which version {mine.version!r} here does not resume "
            "(list it in compatible=, or keep a worker of it)"
            if mine is not None
            else "not registered here"
        )
        who = ", ".join(drivers) if drivers else "none: they wait until one starts"
        log.warning(
            "queue %r holds jobs of workflow %r (%s); this worker leaves them to a worker "
            "that has it; live workers of the queue that do: %s",
            queue, name, why, who,
            extra={"worker": self.worker_id, "queue": queue, "workflow": name},
        )  # fmt: skip
