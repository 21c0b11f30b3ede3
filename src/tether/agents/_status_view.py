"""What a serving dispatcher reports over HTTP (``tether agents run --port``), in the
shape of Symphony's status API, read from the database like ``tether agents status``:
so every dispatcher sharing the database reports the same issues, not only its own.

``state`` answers ``GET /api/v1/state`` and ``issue`` answers
``GET /api/v1/<identifier>`` (None: no run of that issue, a 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .._info import RunInfo
from ..app import App
from ..errors import RunNotFoundError
from ..serde import load_json
from ..store import RunStatus

__all__ = ["IssueStatus", "Reported", "as_ended", "as_live", "issue_view", "state_view"]


@dataclass(frozen=True)
class IssueStatus:
    """One issue as `tether agents status` shows it."""

    identifier: str
    run_id: str
    status: str  # the run's status
    phase: str  # running | retrying | waiting | released | ...
    attempt: int | None
    reason: str | None
    due_at: str | None
    workspace: str | None
    tokens: int
    cost_usd: float | None
    issue_state: str | None
    title: str | None
    question: str | None = None  # what the agent asked, while it waits for the answer
    ended: str | None = None  # an ended run: how ("completed: handed off to review")
    ended_at: str | None = None  # ... and when

    @property
    def why(self) -> str:
        """What `tether agents status` shows: why it waits, and when a retry is due
        (an ended run: why it failed or was cancelled; `ended` and `ended_at` say how
        and when it ended)."""
        due = f"due {self.due_at}" if self.due_at and self.phase == "retrying" else ""
        return "; ".join(part for part in (self.reason or "", due) if part)

    def to_dict(self) -> dict[str, Any]:
        """This issue in `tether agents status --json`: the status API's row, with why
        it waits (`reason`, `question`, `due_at`) and how and when it ended."""
        return {
            **_row(self),
            "reason": self.reason,
            "question": self.question,
            "due_at": self.due_at,
            "ended": self.ended,
            "ended_at": self.ended_at,
        }


def as_ended(run: RunInfo, state: dict[str, Any]) -> dict[str, Any]:
    """The run's recorded state as a reader should see it once the run ended: the state
    is written while the run works, so after its end its phase, reason and the
    issue's state are those of its last attempt (``running``, an old failure, the
    state it was dispatched in). An ended run's phase is ``ended``; its reason why it
    failed or was cancelled (none when it completed); ``ended`` how it ended and
    ``ended_at`` when. The issue's state is the one the run handed it off to, else
    none: the state its last attempt saw is stale (the issue was closed, moved or
    sent back since: that is why it ended), and the tracker is not asked here."""
    if run.end_reason is None or not run.status.terminal:  # (failed, compensating)
        return state
    error = run.error_record
    reason = None if run.status is RunStatus.COMPLETED or error is None else error.message
    result = load_json(run.output) if run.output else None
    result = result if isinstance(result, dict) else {}
    handed_off = result.get("handed_off")
    if run.status is RunStatus.COMPLETED:
        detail = result.get("ended") or (
            f"released: {result['released']}" if result.get("released") else None
        )
    else:
        detail = reason
    how = run.status.value + (f": {detail}" if detail else "")
    return {
        **state,
        "phase": "ended",
        "reason": reason,
        "error": None,
        "question": None,
        "due_at": None,
        "issue_state": handed_off or None,
        "ended": how,
        "ended_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def as_live(run: RunInfo, state: dict[str, Any]) -> dict[str, Any]:
    """The recorded state of a run that has not ended, as a reader should see it: a run
    recorded as waiting (for a person, or for its retry) that is no longer WAITING was
    answered, retried or its timer fired, and is queued to go on; its old question,
    reason and due time are stale until its next attempt records its own."""
    stale = state.get("phase") in ("waiting", "retrying")
    if run.status is RunStatus.WAITING or run.status.terminal or not stale:
        return as_ended(run, state)
    return {**state, "phase": "queued", "reason": None, "question": None, "due_at": None}


class Reported(Protocol):
    """What the views read of a dispatcher."""

    app: App

    async def status(self, *, all_runs: bool = False) -> Any: ...

    async def latest_run(self, identifier: str) -> Any: ...


RECENT_EVENTS = 20


def _row(r: IssueStatus) -> dict[str, Any]:
    return {
        "issue_identifier": r.identifier,
        "title": r.title,
        "state": r.issue_state,
        "run_id": r.run_id,
        "run_status": r.status,
        "phase": r.phase,
        "attempt": r.attempt,
        "workspace": r.workspace,
        "tokens": {"total_tokens": r.tokens},
        "cost_usd": r.cost_usd,
    }


async def state_view(d: Reported) -> dict[str, Any]:
    """Issues running, waiting for a retry and waiting for a person, with totals."""
    rows: list[IssueStatus] = await d.status()
    running = [_row(r) for r in rows if r.phase not in ("retrying", "waiting")]
    retrying = [
        {**_row(r), "due_at": r.due_at, "error": r.reason} for r in rows if r.phase == "retrying"
    ]
    waiting = [
        {**_row(r), "reason": r.reason, "question": r.question}
        for r in rows
        if r.phase == "waiting"
    ]
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    return {
        "generated_at": d.app.clock.now().isoformat(),  # the app's clock (a FakeClock's)
        "counts": {"running": len(running), "retrying": len(retrying), "waiting": len(waiting)},
        "running": running,
        "retrying": retrying,
        "waiting": waiting,
        "totals": {
            "total_tokens": sum(r.tokens for r in rows),
            "cost_usd": sum(costs) if costs else None,
        },
    }


async def issue_view(d: Reported, identifier: str) -> dict[str, Any] | None:
    """One issue's newest run: phase, attempt, workspace, last error, recent events."""
    try:
        run = await d.latest_run(identifier)
    except RunNotFoundError:
        return None
    record = await d.app.aget_record(run.workflow_id)
    state = as_live(run, record.state if isinstance(record.state, dict) else {})
    total = record.usage.total if record.usage is not None else None
    tokens_in = total.input_tokens if total else 0
    tokens_out = total.output_tokens if total else 0
    return {
        "issue_identifier": identifier,
        "title": state.get("title"),
        "state": state.get("issue_state"),
        "run_id": run.workflow_id,
        "run_status": run.status.value,
        "phase": state.get("phase") or "queued",
        "attempt": state.get("attempt"),
        "workspace": state.get("workspace"),
        "due_at": state.get("due_at"),
        "last_error": state.get("error") or state.get("reason"),
        "question": state.get("question") if state.get("phase") == "waiting" else None,
        "ended": state.get("ended"),
        "ended_at": state.get("ended_at"),
        "tokens": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        "cost_usd": total.known_cost_usd if total else None,
        "recent_events": [
            {"at": e.at.isoformat(), "type": e.type, "message": e.message}
            for e in record.events[-RECENT_EVENTS:]
        ],
    }
