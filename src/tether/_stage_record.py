"""`StageRecord`: a pipeline stage as its run's history tells it.

Read from the events the stage layer writes (`pipeline.planned`,
`stage.started`, `stage.completed`, `stage.failed`, `stage.suspended`,
`stage.cancelled`, `stage.progress`) and the steps that survive a rerun:
a stage whose output step ``stage:<id>`` is recorded is completed; any other
is judged by the events of the run's current attempt and the run's status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from ._iso_time import from_iso, iso_z
from ._stage_usage import (
    PlacedStage,
    plans_by_place,
    split_place,
    started_stages,
    summed,
    usage_per_stage,
)
from ._usage_json import usage_dict, usage_row
from .store import AIUsageRow, EndReason, EventRow, RunRow, RunStatus, StepRow, StepStatus

__all__ = ["StageRecord", "build_stages", "placed_stages", "stage_usage"]

# the ends of a run that leave a stage it had begun undone
_UNDONE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATED,
                     RunStatus.COMPENSATION_FAILED})  # fmt: skip

STATUSES = ("pending", "running", "suspended", "completed", "failed", "cancelled", "skipped")


@dataclass(frozen=True, slots=True)
class StageRecord:
    """One stage of a pipeline run: status (one of `STATUSES`), attempt, timings,
    last progress, error, and the AI usage of the calls made inside it."""

    id: str
    group: int
    status: str
    attempt: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    usage: AIUsageRow | None = None
    output_blob: str | None = None
    # where the workflow's code called its pipeline, when not the run's own pipeline (nor
    # its one call from the top): "pipeline#2/", "process/", "[0]"; each call is its rows
    at: str = ""

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "status": self.status,
            "attempt": self.attempt,
            "startedAt": iso_z(self.started_at),
            "finishedAt": iso_z(self.finished_at),
            "seconds": self.seconds,
            "error": self.error,
            "progress": self.progress,
            "progressMessage": self.progress_message,
            "outputBlob": self.output_blob,
            "usage": None if self.usage is None else usage_dict(self.usage),
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageRecord:
        """The stage `to_dict` gave (a record read over HTTP)."""
        return cls(
            id=d["id"],
            group=d["group"],
            status=d["status"],
            attempt=d.get("attempt"),
            started_at=from_iso(d.get("startedAt")),
            finished_at=from_iso(d.get("finishedAt")),
            error=d.get("error"),
            progress=d.get("progress"),
            progress_message=d.get("progressMessage"),
            usage=None if d.get("usage") is None else usage_row(d["id"], d["usage"]),
            output_blob=d.get("outputBlob"),
            at=d.get("at") or "",
        )


@dataclass
class _Seen:
    """What the events say of one stage so far (latest attempt wins)."""

    attempt: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None  # completed | failed | cancelled | suspended
    error: str | None = None
    progress: float | None = None
    message: str | None = None
    blob: str | None = None
    # its completion, while a failure to read its output back shows (`rerun_from`
    # drives it again: a failure before the latest rerun is no longer its state)
    kept: tuple[datetime | None, str | None] | None = None


def _after_rerun(seen: _Seen) -> None:
    """A completed stage whose output failed to be read back is completed again once
    the run is rerun (its step kept): it showed `failed` after the rerun went on."""
    if seen.outcome == "failed" and seen.kept is not None:
        seen.outcome, seen.error = "completed", None
        (seen.finished_at, seen.blob), seen.kept = seen.kept, None


def _apply(seen: _Seen, e: EventRow, d: dict[str, Any]) -> None:
    attempt = d.get("attempt")
    if e.type == "stage.started":  # a new attempt starts from nothing
        for f in fields(_Seen):
            setattr(seen, f.name, None)
        seen.attempt, seen.started_at = attempt, e.at
    elif e.type == "stage.completed":
        seen.outcome, seen.finished_at, seen.blob = "completed", e.at, d.get("blob")
    elif e.type == "stage.failed":
        if seen.outcome == "completed":  # its output could not be read back
            seen.kept = (seen.finished_at, seen.blob)
        seen.outcome, seen.finished_at, seen.error = "failed", e.at, d.get("error")
    elif e.type == "stage.cancelled":
        seen.outcome, seen.finished_at = "cancelled", e.at
    elif e.type == "stage.suspended" and seen.outcome is None:
        seen.outcome = "suspended"
    elif e.type == "stage.progress":
        seen.progress, seen.message = d.get("fraction"), e.message


def build_stages(
    run: RunRow,
    steps: list[StepRow],
    events: list[EventRow],
    usage: dict[str, AIUsageRow] | None = None,
) -> tuple[StageRecord, ...]:
    """The run's stages in plan order (empty if the run is not a pipeline run), those
    of each place the workflow's code called a pipeline from apart, in the order
    first called: one stage id in two calls is two rows. `usage` is keyed by the
    place and the stage id (``pipeline#2/read``; the stage id alone for the run's own)."""
    seen: dict[tuple[str, str], _Seen] = {}
    planned: list[tuple[str | None, str]] = []
    for e in events:
        if e.type == "run.rerun_from":
            for each in seen.values():
                _after_rerun(each)
        if not (e.detail and e.type.startswith(("stage.", "pipeline.planned"))):
            continue
        if e.type == "pipeline.planned":
            planned.append((e.message, e.detail))
            continue
        d = json.loads(e.detail)
        if isinstance(d, dict) and isinstance(d.get("stage"), str):
            _apply(seen.setdefault((d.get("at") or "", d["stage"]), _Seen()), e, d)
    plans = plans_by_place(planned)
    done = {s.key for s in steps if s.status is StepStatus.COMPLETED}
    started = {s.key for s in steps}
    return tuple(
        _placed(at, sid, n, run, seen, done, started, usage or {})
        for (at, _), groups in plans.items()
        for n, group in enumerate(groups, 1)
        for sid in group
    )


def _placed(
    at: str,
    sid: str,
    n: int,
    run: RunRow,
    seen: dict[tuple[str, str], _Seen],
    done: set[str],
    started: set[str],
    usage: dict[str, AIUsageRow],
) -> StageRecord:
    """Stage `sid` of the call made `at`: its steps are named in the call's scope and
    end with its for_each item path (``process/stage:read[2]``)."""
    scope, items = split_place(at)
    row = _stage(
        sid,
        n,
        run,
        seen.get((at, sid), _Seen()),
        f"{scope}stage:{sid}{items}" in done,
        f"{scope}stage:{sid}.start{items}" in started,
        usage.get(at + sid),
    )
    return replace(row, at=at) if at else row


def _stage(
    sid: str, n: int, run: RunRow, s: _Seen, done: bool, began: bool, usage: AIUsageRow | None
) -> StageRecord:
    status = _status(run, s, done, began)
    current = status in ("completed", "running", "suspended", "failed", "cancelled")
    return StageRecord(
        id=sid,
        group=n,
        status=status,
        attempt=s.attempt if current else None,
        started_at=s.started_at if current else None,
        finished_at=s.finished_at if status in ("completed", "failed", "cancelled") else None,
        error=s.error if status == "failed" else None,
        progress=1.0 if status == "completed" else s.progress if current else None,
        progress_message=s.message if current else None,
        usage=usage,
        output_blob=s.blob if status == "completed" else None,
    )


def _status(run: RunRow, s: _Seen, done: bool, began: bool) -> str:
    if done:  # unless its recorded output could not be read back since (stage.failed last)
        return "failed" if s.outcome == "failed" else "completed"
    if not began:  # never started in this attempt (or forgotten by a rerun)
        return "skipped" if run.status.terminal else "pending"
    if s.outcome in ("failed", "cancelled"):
        return s.outcome
    if run.status in _UNDONE:
        # what ended the run ended the stage; a run compensated or whose compensation
        # failed says why by its end reason: the stage it cut short showed `running`
        cut = run.status is RunStatus.CANCELLED or run.end_reason is EndReason.CANCELLED
        return "cancelled" if cut else "failed"
    if s.outcome == "suspended" or run.status is RunStatus.WAITING:
        return "suspended"
    return "running"


def stage_usage(
    steps: list[StepRow], events: list[EventRow], by_step: list[tuple[str, int, AIUsageRow]]
) -> dict[str, AIUsageRow]:
    """The AI usage of each stage of each pipeline call, keyed as `build_stages` reads it
    (the place and the stage id), by the rule `Store.ai_usage` groups many runs by
    (`tether._stage_usage`)."""
    sums = usage_per_stage(placed_stages(steps, events), by_step, _place_and_id)
    return {k: summed(k, rows) for k, rows in sums.items() if k is not None}


def placed_stages(steps: list[StepRow], events: list[EventRow]) -> list[PlacedStage]:
    """The stages of a run (of each place its pipelines were called from) whose start
    step is recorded, each with the run attempt it started in."""
    plans = [(e.message, e.detail) for e in events if e.type == "pipeline.planned" and e.detail]
    starts = {s.key: s.result for s in steps if s.status is StepStatus.COMPLETED}
    return started_stages(plans, starts)


def _place_and_id(stage: PlacedStage) -> str:
    return stage.at + stage.sid
