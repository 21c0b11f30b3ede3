"""Database rows to record values, shared by the adapters.

The backends return the same columns in the same order; they differ only in
how a time comes back (SQLite: epoch seconds; PostgreSQL: a datetime), so
each adapter binds one `Rows` with its time conversion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ._records import (
    JobRow,
    JobStatus,
    LockRow,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
)

__all__ = ["PG_ROWS", "SQLITE_ROWS", "Rows", "started_step"]


class Rows:
    def __init__(self, time: Callable[[Any], datetime]) -> None:
        self.t = time

    def ot(self, x: Any) -> datetime | None:
        return None if x is None else self.t(x)

    def run(self, r: Sequence[Any]) -> RunRow:
        return RunRow(
            workflow_id=r[0],
            workflow_name=r[1],
            workflow_version=r[2],
            status=RunStatus(r[3]),
            input=r[4],
            output=r[5],
            error=r[6],
            state=r[7],
            priority=r[8],
            tags=tuple(json.loads(r[9])),
            tenant=r[10],
            parent_id=r[11],
            idempotency_key=r[12],
            owner=r[13],
            generation=r[14],
            created_at=self.t(r[15]),
            updated_at=self.t(r[16]),
            started_at=self.ot(r[17]),
            finished_at=self.ot(r[18]),
            compute_seconds=r[19],
            cancel_requested=r[20],
            queue=r[21],
            owner_expires_at=self.ot(r[22]),
            step_rule=r[23],
        )

    def step(self, r: Sequence[Any]) -> StepRow:
        return StepRow(
            workflow_id=r[0],
            key=r[1],
            name=r[2],
            status=StepStatus(r[3]),
            attempts=r[4],
            idempotency_key=r[5],
            result=r[6],
            error=r[7],
            started_at=self.ot(r[8]),
            completed_at=self.ot(r[9]),
            updated_at=self.t(r[10]),
        )

    def lock(self, r: Sequence[Any]) -> LockRow:
        return LockRow(
            scope=r[0],
            key=r[1],
            holder=r[2],
            generation=r[3],
            run_id=r[4],
            detail=r[5],
            acquired_at=self.t(r[6]),
            heartbeat_at=self.t(r[7]),
            expires_at=self.t(r[8]),
            released_at=self.ot(r[9]),
        )

    def wait(self, r: Sequence[Any]) -> WaitRow:
        return WaitRow(
            id=r[0],
            workflow_id=r[1],
            key=r[2],
            kind=WaitKind(r[3]),
            name=r[4],
            match=r[5],
            status=WaitStatus(r[6]),
            payload=r[7],
            due_at=self.ot(r[8]),
            created_at=self.t(r[9]),
            resolved_at=self.ot(r[10]),
        )

    def job(self, r: Sequence[Any]) -> JobRow:
        return JobRow(
            id=r[0],
            workflow_id=r[1],
            queue=r[2],
            status=JobStatus(r[3]),
            priority=r[4],
            attempt=r[5],
            max_attempts=r[6],
            concurrency_key=r[7],
            worker=r[8],
            locked_until=self.ot(r[9]),
            run_after=self.t(r[10]),
            last_error=r[11],
        )


def _epoch(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


def _same(x: datetime) -> datetime:
    return x


SQLITE_ROWS = Rows(_epoch)
PG_ROWS = Rows(_same)


def started_step(
    workflow_id: str, key: str, idempotency_key: str | None, decided: Sequence[Any], at: datetime
) -> StepRow:
    """The row `start_step` just wrote: the database decides only (attempts, result,
    error); the rest is what was written."""
    attempts, result, error = decided[0], decided[1], decided[2]
    return StepRow(
        workflow_id,
        key,
        key,
        StepStatus.RUNNING,
        attempts,
        idempotency_key,
        result,
        error,
        at,
        None,
        at,
    )
