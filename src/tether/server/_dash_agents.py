"""The dashboard's ``/agents`` page: the agent dispatcher's issue runs (running,
retrying, waiting for a person), with attempt, tokens, cost, last event and workspace.

It reads the runs the dispatcher records (`tether.agents`: one run of workflow
``agents.issue`` per dispatched issue, whose state says its phase) without
importing the dispatcher, whose extra (Liquid, YAML) the server does not need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .._info import RunInfo
from ..store import AIUsageRow, RunFilter, RunStatus
from ._dash import render
from ._dash_auth import Viewer, viewer
from ._deps import served_app

__all__ = ["ISSUE_WORKFLOW", "IssueRow", "agent_pages"]

ISSUE_WORKFLOW = "agents.issue"  # tether.agents' run per issue (a test pins the two equal)
SHOWN = 200  # issue runs listed, newest first

# a phase's colours: those of the run status it reads as (dash.css's .st-*); a phase
# unknown here, neither a run's status, is grey
PHASE_TONE = {
    "queued": "pending",
    "running": "running",
    "retrying": "waiting",
    "waiting": "waiting",
    "released": "skipped",
    "ended": "skipped",
    "done": "completed",
    "failed": "failed",
}
STATUSES = {s.value for s in RunStatus}

agent_pages = APIRouter(include_in_schema=False)
Who = Annotated[Viewer, Depends(viewer)]


@dataclass(frozen=True)
class IssueRow:
    """One issue run as the page shows it."""

    run: RunInfo
    identifier: str
    title: str
    phase: str
    attempt: Any
    reason: str
    workspace: str
    tokens: int
    cost_micro_usd: int | None
    last_event: str
    last_event_at: datetime | None

    @property
    def tone(self) -> str:
        return tone(self.phase or self.run.status.value)


def tone(phase: str) -> str:
    """The run status whose colours a phase's chip takes."""
    return PHASE_TONE.get(phase, phase if phase in STATUSES else "skipped")


async def _row(request: Request, run: RunInfo, usage: AIUsageRow | None) -> IssueRow:
    state = json.loads(run.state) if run.state else {}
    state = state if isinstance(state, dict) else {}
    events = await served_app(request).store.list_events(run.workflow_id)
    last = events[-1] if events else None
    return IssueRow(
        run=run,
        identifier=str(state.get("identifier") or run.workflow_id),
        title=str(state.get("title") or ""),
        phase=str(state.get("phase") or ("queued" if run.status is RunStatus.PENDING else "")),
        attempt=state.get("attempt"),
        reason=str(state.get("reason") or state.get("error") or ""),
        workspace=str(state.get("workspace") or ""),
        tokens=0 if usage is None else usage.input_tokens + usage.output_tokens,
        cost_micro_usd=None if usage is None else usage.cost_micro_usd,
        last_event="" if last is None else f"{last.type} {last.message or ''}".strip(),
        last_event_at=None if last is None else last.at,
    )


@agent_pages.get("/agents")
async def agents(request: Request, who: Who) -> Response:
    app = served_app(request)
    show_all = request.query_params.get("all") == "1"
    rows = await app.store.list_runs_page(RunFilter(workflow=ISSUE_WORKFLOW), limit=SHOWN)
    runs = [RunInfo.from_row(r) for r in rows]
    if not show_all:
        runs = [r for r in runs if not r.status.terminal]
    ids = [r.workflow_id for r in runs]
    usage = {u.group: u for u in await app.store.ai_usage(workflow_ids=ids, group_by="run")}
    issues = [await _row(request, r, usage.get(r.workflow_id)) for r in runs]
    phases: dict[str, int] = {}
    for i in issues:
        phases[i.phase or i.run.status.value] = phases.get(i.phase or i.run.status.value, 0) + 1
    return render(request, who, "agents.html", issues=issues, show_all=show_all,
                  phases=[(p, n, tone(p)) for p, n in sorted(phases.items())])  # fmt: skip
