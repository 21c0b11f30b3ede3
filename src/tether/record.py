"""RunRecord: everything known about one run, and its JSON export.

The export keeps the shape of the iso-orchestrator record (version, workflow
id, status, timestamps, state, steps by name, events, heartbeats, leases,
last error) so inspectors written for that format keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._failure import ErrorRecord, decode_error
from ._info import mirror
from ._iso_time import from_iso as _from_iso
from ._iso_time import iso_z as _iso
from ._stage_record import StageRecord, build_stages
from ._usage_json import usage_dict as _usage_dict
from ._usage_json import usage_row as _usage_row
from .errors import InvalidArgumentError
from .store import (
    AIUsageRow,
    EndReason,
    EventRow,
    HeartbeatRow,
    LockRow,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
)

__all__ = [
    "EventRecord",
    "HeartbeatRecord",
    "LeaseRecord",
    "RunRecord",
    "RunUsage",
    "StageRecord",
    "StepRecord",
]

RECORD_VERSION = 1


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _load_result(text: str | None) -> Any:
    """A recorded result as data: a value recorded with its class shows its data."""
    data = _load(text)
    if isinstance(data, dict) and len(data) == 2 and isinstance(data.get("$tether"), str):
        return data.get("value")
    return data


@dataclass(frozen=True, slots=True)
class StepRecord:
    name: str
    status: StepStatus
    attempts: int
    idempotency_key: str | None
    result: Any
    error: ErrorRecord | None  # its last failed attempt's error
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: StepRow) -> StepRecord:
        return mirror(cls, row, result=_load_result(row.result), error=decode_error(row.error))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "attempts": self.attempts,
            "idempotencyKey": self.idempotency_key,
            "result": self.result,
            "error": None if self.error is None else self.error.to_dict(),
            "startedAt": _iso(self.started_at),
            "completedAt": _iso(self.completed_at),
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    type: str
    at: datetime
    message: str | None
    detail: Any

    @classmethod
    def from_row(cls, row: EventRow) -> EventRecord:
        return cls(row.seq, row.type, row.at, row.message, _load(row.detail))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "type": self.type, "at": _iso(self.at)}
        if self.message is not None:
            out["message"] = self.message
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    key: str
    at: datetime
    detail: Any

    @classmethod
    def from_row(cls, row: HeartbeatRow) -> HeartbeatRecord:
        return cls(row.key, row.at, _load(row.detail))

    def to_dict(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A lease as last written: who holds it and until when."""

    key: str
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    released_at: datetime | None
    detail: Any

    @classmethod
    def from_row(cls, row: LockRow) -> LeaseRecord:
        return mirror(cls, row, renewed_at=row.heartbeat_at, detail=_load(row.detail))

    def active_at(self, now: datetime) -> bool:
        return self.released_at is None and self.expires_at > now

    def to_dict(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "acquiredAt": _iso(self.acquired_at),
            "renewedAt": _iso(self.renewed_at),
            "expiresAt": _iso(self.expires_at),
            "releasedAt": _iso(self.released_at),
            "detail": self.detail,
        }


_USAGE_SUMS = (
    "calls",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_micro_usd",
    "unknown_cost_calls",
    "priced_calls",
)


@dataclass(frozen=True, slots=True)
class RunUsage:
    """A run's AI calls summed from the call log: in all, and per ``provider:model``."""

    total: AIUsageRow
    by_model: dict[str, AIUsageRow]

    @classmethod
    def build(cls, by_model: list[AIUsageRow]) -> RunUsage | None:
        """From the per-model rows of one query; the total is their sum."""
        if not by_model:
            return None
        total = AIUsageRow(None, *(sum(getattr(r, f) for r in by_model) for f in _USAGE_SUMS))
        return cls(total, {r.group or "": r for r in by_model})

    def to_dict(self) -> dict[str, Any]:
        """The total's counts (as `usage_dict` writes any row), then each model's."""
        return {
            **_usage_dict(self.total),
            "byModel": {k: _usage_dict(r) for k, r in self.by_model.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunUsage | None:
        return cls.build([_usage_row(k, r) for k, r in data["byModel"].items()])


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: its definition, status, state, steps, events, heartbeats and leases."""

    workflow_id: str
    workflow_name: str
    workflow_version: str | None
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    input: Any
    output: Any
    state: Any
    last_error: ErrorRecord | None  # kept after a rerun or resume succeeds
    generation: int
    steps: dict[str, StepRecord]
    events: tuple[EventRecord, ...]
    heartbeats: dict[str, HeartbeatRecord]
    leases: dict[str, LeaseRecord]
    owner: str | None = None  # the process that drives (or last drove) the run
    owner_expires_at: datetime | None = None  # its claim lapses then, unless renewed
    usage: RunUsage | None = None  # its AI calls, from the call log (None: it made none)
    stages: tuple[StageRecord, ...] = ()  # a pipeline run's stages, in plan order
    attempt: int = 1  # 1, plus one per `rerun_from`
    end_reason: EndReason | None = None  # why it ended (None: it has not; failed: compensating)

    def owner_gone_since(self, now: datetime) -> datetime | None:
        """When the owner of this running run stopped renewing its claim (it died),
        or None while the run is not running or its owner lives."""
        return owner_gone_since(self.status, self.owner_expires_at, now)

    @classmethod
    def build(
        cls,
        run: RunRow,
        steps: list[StepRow],
        events: list[EventRow],
        heartbeats: list[HeartbeatRow],
        leases: list[LockRow],
        usage: RunUsage | None = None,
        stage_usage: dict[str, AIUsageRow] | None = None,
    ) -> RunRecord:
        return mirror(
            cls,
            run,
            input=_load(run.input),
            output=_load_result(run.output),
            state=_load(run.state),
            last_error=decode_error(run.error),
            steps={s.key: StepRecord.from_row(s) for s in steps},
            events=tuple(EventRecord.from_row(e) for e in events),
            heartbeats={h.key: HeartbeatRecord.from_row(h) for h in heartbeats},
            leases={lk.key: LeaseRecord.from_row(lk) for lk in leases},
            usage=usage,
            stages=build_stages(run, steps, events, stage_usage),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record in the iso-orchestrator JSON shape (camelCase keys)."""
        return {
            "version": RECORD_VERSION,
            "workflowId": self.workflow_id,
            "workflowName": self.workflow_name,
            "workflowVersion": self.workflow_version,
            "status": self.status.value,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "input": self.input,
            "output": self.output,
            "state": self.state,
            "steps": {name: s.to_dict() for name, s in self.steps.items()},
            "events": [e.to_dict() for e in self.events],
            "heartbeats": {k: h.to_dict() for k, h in self.heartbeats.items()},
            "leases": {k: lease.to_dict() for k, lease in self.leases.items()},
            "lastError": None if self.last_error is None else self.last_error.to_dict(),
            "endReason": None if self.end_reason is None else self.end_reason.value,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "attempt": self.attempt,
            "stages": [s.to_dict() for s in self.stages],
            "generation": self.generation,
            "owner": self.owner,
            "ownerExpiresAt": _iso(self.owner_expires_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The record `to_dict` gave (over HTTP, say): `from_dict(r.to_dict()) == r`.
        Anything else (`to_json`'s text, a dict without a field) is refused saying so."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(
                f"RunRecord.from_dict takes the dict RunRecord.to_dict gives, got "
                f"{type(data).__name__}; pass e.g. json.loads(text) for what to_json wrote"
            )
        try:
            return cls._read(data)
        except KeyError as exc:
            raise InvalidArgumentError(
                f"not a run record as RunRecord.to_dict gives it: {exc.args[0]!r} is "
                "missing; pass the dict to_dict gave, unchanged"
            ) from None

    @classmethod
    def _read(cls, data: dict[str, Any]) -> RunRecord:
        """`from_dict` of a dict."""
        t, ot = datetime.fromisoformat, _from_iso
        return cls(
            workflow_id=data["workflowId"],
            workflow_name=data["workflowName"],
            workflow_version=data["workflowVersion"],
            status=RunStatus(data["status"]),
            created_at=t(data["createdAt"]),
            updated_at=t(data["updatedAt"]),
            started_at=ot(data["startedAt"]),
            finished_at=ot(data["finishedAt"]),
            input=data["input"],
            output=data["output"],
            state=data["state"],
            last_error=_error(data["lastError"]),
            generation=data.get("generation", 0),
            steps={k: _step(k, s) for k, s in data["steps"].items()},
            events=tuple(
                EventRecord(e["seq"], e["type"], t(e["at"]), e.get("message"), e.get("detail"))
                for e in data["events"]
            ),
            heartbeats={
                k: HeartbeatRecord(k, t(h["at"]), h["detail"])
                for k, h in data["heartbeats"].items()
            },
            leases={k: _lease(k, lease) for k, lease in data["leases"].items()},
            owner=data.get("owner"),
            owner_expires_at=ot(data.get("ownerExpiresAt")),
            usage=None if data.get("usage") is None else RunUsage.from_dict(data["usage"]),
            stages=tuple(StageRecord.from_dict(d) for d in data.get("stages", ())),
            attempt=data.get("attempt", 1),
            end_reason=None if data.get("endReason") is None else EndReason(data["endReason"]),
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _error(data: Any) -> ErrorRecord | None:
    return None if data is None else ErrorRecord.from_dict(data)


def _step(key: str, s: dict[str, Any]) -> StepRecord:
    # a step's name is its key, as the store records it (``name#2``, ``name@key``):
    # read as the name before its ``#n`` or ``@key``, a record read back differed
    # from the one written (and a step the budget stopped, named by its key, was lost)
    return StepRecord(
        name=key,
        status=StepStatus(s["status"]),
        attempts=s["attempts"],
        idempotency_key=s["idempotencyKey"],
        result=s["result"],
        error=_error(s["error"]),
        started_at=_from_iso(s["startedAt"]),
        completed_at=_from_iso(s["completedAt"]),
    )


def _lease(key: str, d: dict[str, Any]) -> LeaseRecord:
    return LeaseRecord(
        key=key,
        holder=d["holder"],
        acquired_at=datetime.fromisoformat(d["acquiredAt"]),
        renewed_at=datetime.fromisoformat(d["renewedAt"]),
        expires_at=datetime.fromisoformat(d["expiresAt"]),
        released_at=_from_iso(d["releasedAt"]),
        detail=d["detail"],
    )


def owner_gone_since(
    status: RunStatus, owner_expires_at: datetime | None, now: datetime
) -> datetime | None:
    """For a running run: since when nobody drives it (its owner's claim lapsed)."""
    if status is not RunStatus.RUNNING or owner_expires_at is None:
        return None
    return owner_expires_at if owner_expires_at <= now else None
