"""The serverless host: stateless calls for queue-driven platforms.

Wire the platform's glue around these: a queue trigger calls
`process_available_jobs`, a cron trigger calls `maintenance_tick`. Each
call is independent; state lives in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._owners import new_owner
from ..app import run_on_loop
from ..errors import InvalidArgumentError
from ..kernel import JobExecuted
from ..store import JobRow, JobStatus
from ._claim import claim_jobs, host_id, queue_names, split_names
from ._maintenance import MaintenanceReport, maintenance_tick

if TYPE_CHECKING:
    from ..app import App

__all__ = ["ProcessReport", "ServerlessHost"]


@dataclass(frozen=True)
class ProcessReport:
    processed: int
    succeeded: int
    failed: int


def _check_limit(limit: object) -> None:
    """A count of jobs: a platform's handler passing its event's text ("10") raised a bare
    TypeError, and 1.5 ran two jobs."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(
            f"limit must be a whole number of jobs >= 0, got {limit!r}; e.g. limit=10"
        )


def _check_claimed(job: object, worker_id: str) -> None:
    """Refuse a job this host does not hold: one read from the store (still queued) was
    driven as if claimed, answered 'completed' while the job stayed queued, and was
    claimed and driven again later (as a dispatched `job.execute` refuses it)."""
    if not isinstance(job, JobRow):
        raise InvalidArgumentError(
            f"handle_job takes a job this host claimed (a JobRow from claim()), got {job!r}"
        )
    if job.status is JobStatus.CLAIMED and job.worker == worker_id:
        return
    held = (
        f"worker {job.worker!r} holds it"
        if job.status is JobStatus.CLAIMED
        else f"it is {job.status.value}"
    )
    raise InvalidArgumentError(
        f"handle_job: job {job.id} of run {job.workflow_id!r} is not claimed by this host "
        f"{worker_id!r} ({held}); handle the jobs its claim() returns"
    )


class ServerlessHost:
    """Claims and executes jobs on demand, and runs maintenance on a schedule."""

    def __init__(
        self,
        app: App,
        *,
        queues: str | Sequence[str] = ("default",),
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.queues = queue_names(split_names(queues))
        self.worker_id = host_id(worker_id)
        # the chores' locks are this host's own, not its id's: the invocations of one
        # function share a worker_id, and two at once each renewed the outbox lock the
        # other held, so both published every event
        named = worker_id is not None
        self._chores_holder = f"{self.worker_id}@{new_owner()}" if named else self.worker_id

    async def aclaim(self, limit: int = 1) -> list[JobRow]:
        """Claim up to `limit` ready jobs for this host; none once its App drains (each
        run would hand itself back at once and its job be claimed again, in a loop)."""
        _check_limit(limit)
        if self.app.draining:
            return []
        return await claim_jobs(self.app, self.worker_id, self.queues, limit)

    async def ahandle_job(self, job: JobRow) -> JobExecuted:
        """Execute one job this host claimed (drive its run, then close the job)."""
        # the row is checked, not read again: a claim's row is this host's own
        _check_claimed(job, self.worker_id)
        return await self.app.kernel.execute_job(job, self.worker_id)

    async def aprocess_available_jobs(self, limit: int = 10) -> ProcessReport:
        """Claim and execute up to `limit` jobs, one after another."""
        _check_limit(limit)
        processed = succeeded = failed = 0
        while processed < limit:
            jobs = await self.aclaim(1)
            if not jobs:
                break
            processed += 1
            result = await self.ahandle_job(jobs[0])
            if result.error is None and result.status != "failed":
                succeeded += 1
            else:
                failed += 1
        return ProcessReport(processed, succeeded, failed)

    async def amaintenance_tick(self) -> MaintenanceReport:
        """The chores a worker does between jobs, orphans included: runs of this App's
        workflows whose owner died are adopted onto this host's first queue."""
        return await maintenance_tick(self.app, self._chores_holder, orphan_queue=self.queues[0])

    # sync faces, for platforms whose handlers are plain functions

    def claim(self, limit: int = 1) -> list[JobRow]:
        """Sync face of `aclaim`: `handle_job` takes the jobs it returns."""
        return run_on_loop(self.app, self.aclaim(limit))

    def handle_job(self, job: JobRow) -> JobExecuted:
        return run_on_loop(self.app, self.ahandle_job(job))

    def process_available_jobs(self, limit: int = 10) -> ProcessReport:
        return run_on_loop(self.app, self.aprocess_available_jobs(limit))

    def maintenance_tick(self) -> MaintenanceReport:
        return run_on_loop(self.app, self.amaintenance_tick())
