"""The dashboard's operations pages: ``/queues`` (jobs per queue and status, limits,
live workers and their heartbeats) and ``/usage`` (AI cost per day, per model and
per workflow, as charts (`_dash_view`) and as tables)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .._runner import PROCESS_SCOPE
from ..store import AIUsageRow, JobStatus
from ._dash import render, unstorable
from ._dash_auth import Viewer, viewer
from ._dash_view import by_cost, column_chart, hbar_chart
from ._deps import served_app
from ._routes_ops import queues as list_queues

__all__ = ["USAGE_DAYS", "Worker", "by_cost", "day_series", "ops_pages"]

ops_pages = APIRouter(include_in_schema=False)
Who = Annotated[Viewer, Depends(viewer)]
USAGE_DAYS = {"7": 7, "30": 30, "90": 90}


@dataclass(frozen=True)
class Worker:
    """A live process that drives runs, as its lease in the store tells it."""

    id: str
    workflows: list[str]
    since: datetime
    heartbeat_at: datetime
    expires_at: datetime
    queues: list[str] = field(default_factory=list)  # none: it drives only runs it was given


@ops_pages.get("/queues")
async def queues(request: Request, who: Who) -> Response:
    app = served_app(request)
    now = app.clock.store_time() or app.clock.now()
    workers = []
    for row in await app.store.list_locks(PROCESS_SCOPE):
        if row.active_at(now):
            detail = json.loads(row.detail) if row.detail else {}
            workers.append(
                Worker(
                    row.holder,
                    list(detail.get("workflows", [])),
                    row.acquired_at,
                    row.heartbeat_at,
                    row.expires_at,
                    list(detail.get("queues", [])),
                )
            )
    # a queue no live process works is a queue whose jobs wait for good: say so
    served = {q: sum(q in w.queues for w in workers) for w in workers for q in w.queues}
    # a job still claimed by a worker that stopped renewing it (it died) is run by
    # nobody: it counted among the jobs "workers are running" until a worker reaps it
    lapsed: dict[str, int] = {}
    for job in await app.store.list_jobs(status=JobStatus.CLAIMED.value):
        if job.locked_until is not None and job.locked_until <= now:
            lapsed[job.queue] = lapsed.get(job.queue, 0) + 1
    return render(
        request,
        who,
        "queues.html",
        queues=await list_queues(request),
        job_statuses=[s.value for s in JobStatus],
        workers=workers,
        served=served,
        lapsed=lapsed,
        now=now,
    )


def day_series(rows: list[AIUsageRow], first: datetime, last: datetime) -> list[tuple[str, int]]:
    """Cost per day from `first` to `last` (UTC days), days without calls as 0."""
    by_day = {r.group or "": r.cost_micro_usd for r in rows}
    day, end, out = first.date(), last.date(), []
    while day <= end:
        out.append((day.isoformat(), by_day.pop(day.isoformat(), 0)))
        day += timedelta(days=1)
    return out


def _priced(rows: list[AIUsageRow]) -> list[tuple[str, int]]:
    """The bars of a cost chart: groups with a known cost (one whose calls had no known
    price would stand as $0; the table beside it says unknown)."""
    return [
        (r.group or "?", r.cost_micro_usd)
        for r in rows
        if r.priced_calls or not r.unknown_cost_calls
    ]


def _none(rows: list[AIUsageRow]) -> str:
    """What a cost chart without bars says: no calls, or none at a known price."""
    return "no AI calls at a known price" if rows else "no AI calls"


@ops_pages.get("/usage")
async def usage(request: Request, who: Who) -> Response:
    app = served_app(request)
    q = request.query_params
    days_key = q.get("days", "30").strip() or "30"
    workflow = q.get("workflow", "").strip() or None
    problem = None if workflow is None else unstorable("workflow", workflow)
    if problem is not None:
        workflow = None  # refused, as the API refuses it: the page shows every workflow
    if days_key not in USAGE_DAYS:  # a mistyped link showed 30 days without a word
        problem = problem or (
            f"There is no period of {days_key!r} days (periods: {', '.join(USAGE_DAYS)}): "
            "showing the last 30 days."
        )
        days_key = "30"
    now = app.clock.now()
    since = (now - timedelta(days=USAGE_DAYS[days_key] - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    by_day = await app.ausage(since=since, workflow=workflow, group_by="day")
    # the tables in their charts' order (they were by name, the charts by cost)
    by_model = by_cost(await app.ausage(since=since, workflow=workflow, group_by="model"))
    by_workflow = by_cost(await app.ausage(since=since, workflow=workflow, group_by="workflow"))
    total = await app.ausage(since=since, workflow=workflow)
    days = day_series(by_day, since, now)
    return render(
        request,
        who,
        "usage.html",
        status=200 if problem is None else 422,
        problem=problem,
        total=total[0] if total else None,
        by_model=by_model,
        by_workflow=by_workflow,
        days=days,
        day_chart=column_chart(days, "AI cost per day (UTC)"),
        model_chart=hbar_chart(_priced(by_model), "AI cost per model", empty=_none(by_model)),
        workflow_chart=hbar_chart(
            _priced(by_workflow), "AI cost per workflow", empty=_none(by_workflow)
        ),
        days_key=days_key,
        day_options=list(USAGE_DAYS),
        workflow=workflow or "",
        since=since,
    )
