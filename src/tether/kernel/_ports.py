"""What the kernel needs from its surroundings, as small protocols.

The kernel changes runs through the store; it looks workflows up in a
registry and asks a host to drive runs in this process. `App` wires the
three together (its registry, its runner), so the kernel never imports the
facade above it.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..definition import WorkflowDef
from ..store import RunClaim, RunRow, RunStatus

__all__ = ["RunHost", "WorkflowRegistry"]


class WorkflowRegistry(Protocol):
    def get_workflow(self, name: str, workflow_id: str | None = None) -> WorkflowDef:
        """The workflow registered as `name` (for run `workflow_id`, which may have been
        started with a callable of its own); `WorkflowNotFoundError` if none."""
        ...


class RunHost(Protocol):
    """Drives runs in this process."""

    def spawn(self, workflow_id: str) -> None:
        """Drive a newly created run in the background."""
        ...

    def woken(self, run_ids: list[str]) -> None:
        """Runs that became runnable: drive those that are driven here."""
        ...

    def cancelled(self, run_ids: list[str]) -> None:
        """Runs cancelled here: stop their step functions running here (async ones)."""
        ...

    async def run_until_rest(
        self,
        workflow_id: str,
        *,
        force_claim: bool = False,
        claimed: RunRow | None = None,
        for_job: bool = False,
    ) -> tuple[RunStatus | None, Any]:
        """Drive the run until it ends, parks or is handed back; `claimed` is its row as
        claimed for this host with its job (else it is read and claimed). The status
        is where this drive left the run (a compensation it ran to its end included),
        None where only the store knows (a cancel under the drive ended it). `for_job`:
        a long retry back-off hands the run back (PENDING, with the time the next
        attempt is due as the value), for its job to wait in the queue until then."""
        ...

    def run_claim(self) -> RunClaim:
        """How a job's claim claims the job's run for this host too (`JobRow.run`)."""
        ...
