"""Read models: what `App.get_run`, `App.list_runs` and `App.alist_waits` return.

Frozen values of tether's own, so that the store's rows (and their changes)
stay behind the store; `RunRecord` (`App.get_record`) is the full history.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ._failure import ErrorRecord, decode_error
from .store import EndReason, RunRow, RunStatus, WaitKind, WaitRow, WaitStatus, run_settled

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["RunInfo", "WaitInfo"]

T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as it stands, without its history. `input`, `output`, `error` and
    `state` are the recorded JSON text (`App.result` gives the typed value;
    `error_record` the error, decoded). `end_reason` says why the run ended."""

    workflow_id: str
    workflow_name: str
    workflow_version: str | None
    status: RunStatus
    input: str | None
    output: str | None
    error: str | None
    state: str | None
    priority: int
    tags: tuple[str, ...]
    tenant: str | None
    parent_id: str | None
    idempotency_key: str | None
    owner: str | None  # the process driving it (while running)
    generation: int  # how many times an owner claimed it
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    compute_seconds: float
    cancel_requested: str | None
    queue: str | None
    owner_expires_at: datetime | None  # the owner's claim lapses then (running runs)
    step_rule: int  # how its steps are named (`tether._run_state.STEP_RULE`)
    attempt: int = 1  # 1, plus one per `rerun_from`
    end_reason: EndReason | None = None  # None while it has not ended (failed: compensating)

    @property
    def error_record(self) -> ErrorRecord | None:
        """The recorded error, decoded (None: none recorded)."""
        return decode_error(self.error)

    @property
    def settled(self) -> bool:
        """Ended, with nothing of it left to run: False for a cancelled run whose
        compensations are still due (its status moves on to ``compensated``)."""
        return run_settled(self.status, self.cancel_requested)

    @classmethod
    def from_row(cls, row: RunRow) -> RunInfo:
        return mirror(cls, row)


@dataclass(frozen=True, slots=True)
class WaitInfo:
    """One waitpoint of a run: what it waits for, and how it resolved. `match` and
    `payload` are the recorded JSON text."""

    id: str
    workflow_id: str
    key: str
    kind: WaitKind
    name: str | None
    match: str | None
    status: WaitStatus
    payload: str | None
    due_at: datetime | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: WaitRow) -> WaitInfo:
        return mirror(cls, row)


def mirror(cls: type[T], row: object, **converted: Any) -> T:
    """A `cls` of `row`: each field the row's value under the same name, but those
    given in `converted`. A read model mirrors the store's row, so that what the
    store adds stays behind it."""
    same = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in converted}
    return cls(**same, **converted)
