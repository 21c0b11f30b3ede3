"""The dashboard's ``/agents`` page: the agent dispatcher's issue runs (running,
retrying, waiting for a person), with attempt, tokens, cost, last event and workspace.

It reads the runs the dispatcher records (`tether.agents`: one run of workflow
``agents.issue`` per dispatched issue, whose state says its phase) without
importing the dispatcher, whose extra (Liquid, YAML) the server does not need.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .._info import RunInfo
from ..store import AIUsageRow, EventRow, RunFilter, RunStatus
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
# the phases of an issue run at work: once its run has ended, one of them is where the
# run stood when it last wrote its state (a run cancelled while it waited said "waiting")
IN_FLIGHT = {"queued", "running", "retrying", "waiting"}

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
    usage: AIUsageRow | None  # None: the run made no AI call (no agent turn reported usage)
    last_event: str
    last_event_at: datetime | None

    @property
    def shown_phase(self) -> str:
        """What its Phase column and the chips above say: its phase, else its run's status."""
        return self.phase or self.run.status.value

    @property
    def tone(self) -> str:
        return tone(self.shown_phase)

    @property
    def cost_micro_usd(self) -> int | None:
        """The known cost; None without calls or when none of them had a known price."""
        if self.usage is None or not self.usage.priced_calls:
            return None
        return self.usage.cost_micro_usd


def tone(phase: str) -> str:
    """The run status whose colours a phase's chip takes."""
    return PHASE_TONE.get(phase, phase if phase in STATUSES else "skipped")


def _row(run: RunInfo, usage: AIUsageRow | None, last: EventRow | None) -> IssueRow:
    state = json.loads(run.state) if run.state else {}
    state = state if isinstance(state, dict) else {}
    phase = str(state.get("phase") or ("queued" if run.status is RunStatus.PENDING else ""))
    reason = str(state.get("reason") or state.get("error") or "")
    if run.status.terminal and phase in IN_FLIGHT:
        # ended: as it ended (a run cancelled while it waited for a person is not
        # waiting), and why, as `tether agents status` says it
        error = run.error_record
        phase = run.status.value
        reason = "" if run.status is RunStatus.COMPLETED or error is None else error.message
    return IssueRow(
        run=run,
        identifier=str(state.get("identifier") or run.workflow_id),
        title=str(state.get("title") or ""),
        phase=phase,
        attempt=state.get("attempt"),
        reason=reason,
        workspace=str(state.get("workspace") or ""),
        tokens=0 if usage is None else usage.input_tokens + usage.output_tokens,
        usage=usage,
        last_event="" if last is None else f"{last.type} {last.message or ''}".strip(),
        last_event_at=None if last is None else last.at,
    )


@agent_pages.get("/agents")
async def agents(request: Request, who: Who) -> Response:
    app = served_app(request)
    show_all = request.query_params.get("all") == "1"
    # the page shows of a run its state (phase, title...) and error, not its input or output
    heads = functools.partial(app.store.list_run_heads, limit=SHOWN + 1, error=True, state=True)
    if show_all:
        rows = await heads(RunFilter(workflow=ISSUE_WORKFLOW))
    else:  # those not ended, however many ended since: they were looked for among the
        # newest SHOWN runs alone, and an issue waiting for a person behind 200 newer
        # runs was not on the page
        rows = []
        for status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING):
            rows += await heads(RunFilter(status=status, workflow=ISSUE_WORKFLOW))
        rows.sort(key=lambda r: r.workflow_id)  # as a page of runs: newest first, then by id
        rows.sort(key=lambda r: r.created_at, reverse=True)
    runs = [RunInfo.from_row(r) for r in rows[:SHOWN]]
    more = len(rows) > SHOWN
    ids = [r.workflow_id for r in runs]
    usage = {u.group: u for u in await app.store.ai_usage(workflow_ids=ids, group_by="run")}
    # the newest event of each, in one read (each run's whole history was read for it)
    last = await app.store.latest_events(ids)
    issues = [_row(r, usage.get(r.workflow_id), last.get(r.workflow_id)) for r in runs]
    phases: dict[str, int] = {}
    for i in issues:
        phases[i.shown_phase] = phases.get(i.shown_phase, 0) + 1
    return render(request, who, "agents.html", issues=issues, show_all=show_all, more=more,
                  shown=SHOWN, phases=[(p, n, tone(p)) for p, n in sorted(phases.items())])  # fmt: skip
