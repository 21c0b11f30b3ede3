"""Database rows to record values, shared by the adapters.

The backends return the same columns in the same order; they differ only in
how a time comes back (SQLite: epoch seconds; PostgreSQL: a datetime), so
each adapter binds one `Rows` with its time conversion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ._records import (
    AICallRow,
    ApiTokenRow,
    EndReason,
    EventRow,
    HeartbeatRow,
    JobRow,
    JobStatus,
    LockRow,
    OutboxRow,
    RunRow,
    RunStatus,
    ScheduleRow,
    StepRow,
    StepStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
)

__all__ = ["PG_ROWS", "SQLITE_ROWS", "Rows", "started_step"]

_JOB_COLS = 12  # the columns of a job row (`_job_cols`)


def _end_reason(recorded: str | None, status: str, error: str | None) -> EndReason | None:
    """The run's end reason; for a run that ended without one (ended by a process of a
    release before the column, still running when a newer one migrated) read from its
    status and error as migration 0010 read those that had ended before it."""
    if recorded is not None:
        return EndReason(recorded)
    if status not in _ENDED:
        return None
    if status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        return EndReason(status)
    try:
        kind = json.loads(error or "null")
    except ValueError:
        kind = None
    kind = kind.get("type") if isinstance(kind, dict) else None
    if kind == "Cancelled":
        return EndReason.CANCELLED
    return EndReason.TIMED_OUT if kind == "WorkflowTimeoutError" else EndReason.FAILED


_ENDED = frozenset(s.value for s in RunStatus if s.terminal)


class Rows:
    """Record builders over one dialect's time values (columns in record field order)."""

    def __init__(self, time: Callable[[Any], datetime]) -> None:
        self.t = time

    def ot(self, x: Any) -> datetime | None:
        return None if x is None else self.t(x)

    def run(self, r: Sequence[Any]) -> RunRow:
        t, ot = self.t, self.ot
        return RunRow(
            r[0], r[1], r[2], RunStatus(r[3]), r[4], r[5], r[6], r[7], r[8],
            tuple(json.loads(r[9])), r[10], r[11], r[12], r[13], r[14], t(r[15]), t(r[16]),
            ot(r[17]), ot(r[18]), r[19], r[20], r[21], ot(r[22]), r[23], r[24], r[25],
            _end_reason(r[26], r[3], r[6]), r[27]
        )  # fmt: skip

    def step(self, r: Sequence[Any]) -> StepRow:
        ot = self.ot
        return StepRow(
            r[0], r[1], r[2], StepStatus(r[3]), r[4], r[5], r[6], r[7], ot(r[8]), ot(r[9]),
            self.t(r[10]), r[11]
        )  # fmt: skip

    def lock(self, r: Sequence[Any]) -> LockRow:
        t = self.t
        return LockRow(r[0], r[1], r[2], r[3], r[4], r[5], t(r[6]), t(r[7]), t(r[8]), self.ot(r[9]))

    def wait(self, r: Sequence[Any]) -> WaitRow:
        t, ot = self.t, self.ot
        return WaitRow(
            r[0], r[1], r[2], WaitKind(r[3]), r[4], r[5], WaitStatus(r[6]), r[7], ot(r[8]),
            t(r[9]), ot(r[10])
        )  # fmt: skip

    def job(self, r: Sequence[Any]) -> JobRow:
        return JobRow(
            r[0], r[1], r[2], JobStatus(r[3]), r[4], r[5], r[6], r[7], r[8], self.ot(r[9]),
            self.t(r[10]), r[11]
        )  # fmt: skip

    def job_with_run(self, r: Sequence[Any]) -> JobRow:
        """A job's columns, then its run's as claimed with it (or NULLs: not claimed)."""
        run = None if r[_JOB_COLS] is None else self.run(r[_JOB_COLS:])
        return replace(self.job(r[:_JOB_COLS]), run=run)

    def event(self, r: Sequence[Any]) -> EventRow:
        return EventRow(r[0], r[1], r[2], r[3], r[4], self.t(r[5]))

    def heartbeat(self, r: Sequence[Any]) -> HeartbeatRow:
        return HeartbeatRow(r[0], r[1], self.t(r[2]), r[3])

    def outbox(self, r: Sequence[Any]) -> OutboxRow:
        row = OutboxRow(r[0], r[1], r[2], r[3], r[4], self.t(r[5]), r[6])
        if len(r) > 7:  # a dead letter: its last error and when it was given up on
            row = replace(row, last_error=r[7], dead_at=self.ot(r[8]))
        return row

    def schedule(self, r: Sequence[Any]) -> ScheduleRow:
        t = self.t
        return ScheduleRow(
            r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), t(r[7]), t(r[8]), t(r[9])
        )

    def token(self, r: Sequence[Any]) -> ApiTokenRow:
        return ApiTokenRow(r[0], r[1], r[2], r[3], self.t(r[4]), self.ot(r[5]), self.ot(r[6]))

    def ai_call(self, r: Sequence[Any]) -> AICallRow:
        return AICallRow(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
            r[13], r[14], r[15], r[16], r[17], r[18], self.t(r[19]), r[20], r[21], r[22], r[23],
            bool(r[24]),
        )  # fmt: skip


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
