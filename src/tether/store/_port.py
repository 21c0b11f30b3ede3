"""The Store port: the domain verbs the engine needs from a database.

Every mutating verb is one transaction that writes the change *and* the
events it causes, or nothing. Verbs that write for a run take a `Fence`; when
its generation is set, the write lands only if the run's owner generation
still equals it, else `StaleOwnerError` is raised and nothing is written.

Times: `at` stamps records and events (the engine's clock). `now` judges lock
expiry; `None` means the store's own clock (the database server's, on
PostgreSQL), so machines with skewed clocks agree on who holds a lock.

Driver errors never cross this port: adapters raise `StoreError` and its
subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ._records import (
    EventRow,
    Fence,
    HeartbeatRow,
    LockResult,
    LockRow,
    NewEvent,
    NewRun,
    RunRow,
    RunStatus,
    StepRow,
)

__all__ = ["Store"]


class Store(Protocol):
    """A durable home for runs, steps, events, locks and heartbeats."""

    url: str

    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""
        ...

    async def close(self) -> None: ...

    # -- runs ------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        """Insert the run unless one with its id exists; (row, created)."""
        ...

    async def get_run(self, workflow_id: str) -> RunRow | None: ...

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        """Newest first."""
        ...

    async def claim_run(
        self, workflow_id: str, owner: str, at: datetime, event: NewEvent
    ) -> RunRow:
        """Take ownership: generation + 1, status running. Fences out any older owner."""
        ...

    async def finish_run(
        self,
        fence: Fence,
        status: RunStatus,
        *,
        output: str | None,
        error: str | None,
        at: datetime,
        event: NewEvent,
    ) -> None: ...

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None: ...

    # -- events ----------------------------------------------------------------

    async def append_events(
        self, fence: Fence, events: Sequence[NewEvent], at: datetime
    ) -> None: ...

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        """Events of one run in `seq` order."""
        ...

    # -- steps -----------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]: ...

    async def start_step(
        self,
        fence: Fence,
        key: str,
        *,
        idempotency_key: str | None,
        at: datetime,
        event: NewEvent,
    ) -> StepRow:
        """Count one more attempt and mark the step running.

        If the recorded idempotency key differs, the step starts over (attempts
        reset, result dropped). Only has to survive a process crash, so an
        adapter may commit it without waiting for the disk.
        """
        ...

    async def complete_step(
        self, fence: Fence, key: str, *, result: str, at: datetime, event: NewEvent
    ) -> None:
        """Record the step's result. Fully durable before it returns."""
        ...

    async def fail_step(
        self,
        fence: Fence,
        key: str,
        *,
        error: str,
        final: bool,
        at: datetime,
        event: NewEvent,
    ) -> None:
        """Record a failed attempt; `final` marks the step failed for good."""
        ...

    # -- locks (mutexes and leases) ------------------------------------------

    async def acquire_lock(
        self,
        scope: str,
        key: str,
        holder: str,
        *,
        ttl: float,
        now: datetime | None,
        fence: Fence | None = None,
        detail: str | None = None,
        on_acquire: NewEvent | None = None,
        on_renew: NewEvent | None = None,
        at: datetime,
    ) -> LockResult:
        """Acquire if free, released or expired; renew if `holder` holds it.

        Otherwise return outcome CONFLICT with the current holder's row and
        write nothing. The matching event is written with the change.
        """
        ...

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        """Push the expiry out if `holder` still holds it; None if it lost the lock."""
        ...

    async def release_lock(
        self,
        scope: str,
        key: str,
        holder: str | None,
        *,
        now: datetime | None,
        fence: Fence | None = None,
        event: NewEvent | None = None,
        at: datetime,
    ) -> LockResult | None:
        """Release if held by `holder` (any holder when None).

        Returns None when there is nothing to release, CONFLICT (and writes
        nothing) when another holder holds it, else the released row.
        """
        ...

    async def get_lock(self, scope: str, key: str) -> LockRow | None: ...

    async def list_locks(self, scope: str) -> list[LockRow]: ...

    # -- heartbeats --------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None: ...

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]: ...
