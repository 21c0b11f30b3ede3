"""The dashboard's run pages: ``/runs`` (filters, live counts, search by id) and
``/runs/{id}`` (status, durations, cost, timeline, waits, events, data, usage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from .._info import RunInfo, WaitInfo
from ..errors import RunNotFoundError
from ..store import AICallRow, RunFilter, RunStatus, WaitStatus
from ._dash import SINCE, counts, render, runs_page
from ._dash_auth import Viewer, viewer
from ._dash_view import timeline
from ._deps import served_app

__all__ = ["StepUsage", "run_page", "runs_pages"]

runs_pages = APIRouter(include_in_schema=False)
Who = Annotated[Viewer, Depends(viewer)]
MAX_CHILDREN = 50
DONE = {
    "signalled": "Signal sent.",
    "signal-kept": "Signal sent: no wait matched it yet, so it is kept for the run.",
    "token": "Token completed.",
    "event": "Event sent.",
    "cancelled": "Cancellation requested.",
}


@runs_pages.get("/")
async def home(_: Who) -> Response:
    return RedirectResponse("/runs", status_code=303)


def _filters(request: Request) -> tuple[RunFilter, dict[str, str]]:
    """The runs page's filters from its query (unknown values are ignored)."""
    q = request.query_params
    shown = {k: q.get(k, "").strip() for k in ("status", "workflow", "tag", "since", "q")}
    status = RunStatus(shown["status"]) if shown["status"] in set(RunStatus) else None
    if status is None:
        shown["status"] = ""
    since = SINCE.get(shown["since"])
    if since is None:
        shown["since"] = ""
    after = None if since is None else served_app(request).clock.now() - since
    where = RunFilter(status, shown["workflow"] or None, shown["tag"] or None, None, after)
    return where, shown


async def _costs(request: Request, runs: list[RunInfo]) -> dict[str, tuple[int, int]]:
    """(micro-USD, calls at no known price) of each run on the page that made AI calls."""
    if not runs:
        return {}
    rows = await served_app(request).store.ai_usage(
        workflow_ids=[r.workflow_id for r in runs], group_by="run"
    )
    return {r.group or "": (r.cost_micro_usd, r.unknown_cost_calls) for r in rows}


@runs_pages.get("/runs")
async def runs(request: Request, who: Who) -> Response:
    where, shown = _filters(request)
    missing = None
    if shown["q"]:
        if await served_app(request).store.get_run(shown["q"]) is not None:
            return RedirectResponse(f"/runs/{shown['q']}", status_code=303)
        missing = shown["q"]
    found, next_cursor = await runs_page(request, where, request.query_params.get("cursor"))
    return render(
        request,
        who,
        "runs.html",
        runs=found,
        costs=await _costs(request, found),
        counts=await counts(request, where),
        shown=shown,
        since_options=list(SINCE),
        statuses=[s.value for s in RunStatus],
        next_cursor=next_cursor,
        missing=missing,
        now=served_app(request).clock.now(),
    )


@dataclass(frozen=True)
class StepUsage:
    """A step's AI calls, summed: the run page's usage per step."""

    step: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    unknown_cost_calls: int


def _per_step(calls: list[AICallRow]) -> list[StepUsage]:
    sums: dict[str, list[int]] = {}
    for c in calls:
        s = sums.setdefault(c.step_key, [0, 0, 0, 0, 0])
        s[0] += 1
        s[1] += c.input_tokens
        s[2] += c.output_tokens
        s[3] += c.cost_micro_usd or 0
        s[4] += c.cost_micro_usd is None and (c.input_tokens + c.output_tokens) > 0
    return [StepUsage(k, *v) for k, v in sums.items()]


async def _children(request: Request, workflow_id: str) -> list[RunInfo]:
    store = served_app(request).store
    found = []
    for child in (await store.child_runs(workflow_id))[:MAX_CHILDREN]:
        row = await store.get_run(child)
        if row is not None:
            found.append(RunInfo.from_row(row))
    return found


def _pending_first(waits: list[WaitInfo]) -> list[WaitInfo]:
    return sorted(waits, key=lambda w: (w.status is not WaitStatus.PENDING, w.created_at))


async def run_page(
    request: Request, who: Viewer, workflow_id: str, *, problem: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    """A run's page (also answered, with `problem`, when a form on it fails)."""
    app = served_app(request)
    try:
        info = await app.aget_run(workflow_id)
        rec = await app.aget_record(workflow_id)
    except RunNotFoundError:
        return render(request, who, "missing.html", status=404, workflow_id=workflow_id)
    waits = await app.alist_waits(workflow_id)
    children = await _children(request, workflow_id)
    now: datetime = app.clock.now()
    context: dict[str, Any] = {
        "rec": rec,
        "info": info,
        "waits": _pending_first(waits),
        "pending": [w for w in waits if w.status is WaitStatus.PENDING],
        "children": children,
        "timeline": timeline(rec, waits, children, now),
        "per_step": _per_step(await app.alist_ai_calls(workflow_id)),
        "now": now,
        "done": DONE.get(request.query_params.get("done", "")),
        "problem": problem,
        "last_seq": rec.events[-1].seq if rec.events else 0,
    }
    return render(request, who, "run.html", status=status, **context)


@runs_pages.get("/runs/{workflow_id:path}")  # a child's id holds '/'
async def run(request: Request, workflow_id: str, who: Who) -> Response:
    return await run_page(request, who, workflow_id)
