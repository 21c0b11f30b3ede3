"""The dashboard's run pages: ``/runs`` (filters, live counts, search by id) and
``/runs/{id}`` (status, durations, cost, timeline, waits, events, data, usage).

A run's page is also ``/run?id=ID``: the address of a run whose id a browser would
not send as it is in a path (``..`` and ``.`` are dot-segments, resolved away even
when written ``%2E%2E``); `run_url` picks the address of each link. The page follows
its run's events at ``/run/events?id=ID`` (the API's event stream, reachable for any id).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from .._info import RunInfo, WaitInfo
from ..errors import InvalidArgumentError, RunNotFoundError
from ..store import AICallRow, AIUsageRow, RunFilter, RunStatus, WaitStatus
from ._dash import SINCE, counts, read_cursor, render, runs_page, unstorable
from ._dash_auth import Viewer, mount_root, mounted_run_url, viewer
from ._dash_values import PARTS, data_preview, error_notes, live_frame, shown_events
from ._dash_view import HEAD_BARS, by_cost, driven, run_url, timeline
from ._deps import served_app
from ._routes import MAX_SEQ
from ._sse import event_stream, streams_of

__all__ = ["ChildrenPage", "StepUsage", "done_note", "run_page", "runs_pages"]

runs_pages = APIRouter(include_in_schema=False)
Who = Annotated[Viewer, Depends(viewer)]
MAX_CHILDREN = 50
# events listed: the latest (a run of 3,000 steps had 6,000 rows, megabytes of a page
# fetched again at each new event); the API lists every one
MAX_EVENTS = 1000
_RESUME = (
    "`tether runs resume {rid} --app FILE.py:app` drives it, or start "
    "`tether worker --app FILE.py:app`."
)


def _woke(code: str, head: str) -> dict[str, tuple[str, bool]]:
    """The notes of a form that woke the run (a signal, a token, an event): whether
    anything will drive it now, as `tether runs signal` says."""
    return {
        code: (f"{head}: the run woke, and a live process serving workflow {{workflow!r}} "
               "drives it.", True),
        f"{code}-queued": (f"{head}: the run woke, and a worker on queue {{queue!r}} will "
                           "drive it.", True),
        f"{code}-stuck": (f"{head}: the run woke, but it is queued on {{queue!r}} and no "
                          "worker serving that queue and workflow {workflow!r} is running; "
                          "start `tether worker --app FILE.py:app -q {shell_queue}`.", False),
        f"{code}-idle": (f"{head}: the run woke, but nothing drives it now: no live "
                         "process serves workflow {workflow!r}. " + _RESUME, False),
    }  # fmt: skip


#: the note a form's redirect asks for (``?done=``), and whether all is well: a form
#: that woke the run says whether anything will drive it
DONE = {
    **_woke("signalled", "Signal sent"),
    **_woke("token", "Token completed"),
    **_woke("event", "Event sent"),
    **_woke("undo-retried", "Compensations retried"),
    "signal-kept": ("Signal sent: no wait matched it yet, so it is kept for the run.", True),
    "event-sent": ("Event sent; this run was not waiting for it (it is kept for runs that "
                   "wait for it later).", True),
    "cancelled": ("Cancellation requested.", True),
    "cancelled-compensate": ("Cancellation requested, with compensation: the compensations "
                             "of its completed steps run, last step first.", True),
}  # fmt: skip


def done_note(code: str, info: RunInfo) -> tuple[str, bool] | None:
    """The note of a form's answer (``?done=code``) about the run `info`, if known."""
    if code not in DONE:
        return None
    text, ok = DONE[code]
    queue = info.queue or ""
    rid, shell_queue = shlex.quote(info.workflow_id), shlex.quote(queue)
    return text.format(
        workflow=info.workflow_name, queue=queue, rid=rid, shell_queue=shell_queue
    ), ok


@runs_pages.get("/")
async def home(request: Request, _: Who) -> Response:
    """The runs page, with the query given (``/?status=failed`` filters as ``/runs``
    does: a link or bookmark to the address printed at start-up kept its filter)."""
    query, root = request.url.query, mount_root(request)
    return RedirectResponse(f"{root}/runs?{query}" if query else f"{root}/runs", status_code=303)


def _filters(request: Request) -> tuple[RunFilter, dict[str, str], str | None]:
    """The runs page's filters from its query, and the problem with one it drops: a
    value the database cannot store, a status no run has or a creation period the page
    does not offer (a mistyped link listed every run as if they were all of it)."""
    q = request.query_params
    shown = {k: q.get(k, "").strip() for k in ("status", "workflow", "tag", "since", "q")}
    problem = None
    for name in ("workflow", "tag", "q"):
        why = unstorable(name, shown[name])
        if why is not None:
            problem, shown[name] = why, ""
    status = RunStatus(shown["status"]) if shown["status"] in set(RunStatus) else None
    if status is None and shown["status"]:
        known = ", ".join(s.value for s in RunStatus)
        problem = problem or (
            f"There is no run status {shown['status']!r} (statuses: {known}): showing runs "
            "of every status."
        )
    if status is None:
        shown["status"] = ""
    since = SINCE.get(shown["since"])
    if since is None and shown["since"]:
        problem = problem or (
            f"There is no creation period {shown['since']!r} (periods: {', '.join(SINCE)}): "
            "showing runs created at any time."
        )
    if since is None:
        shown["since"] = ""
    after = None if since is None else served_app(request).clock.now() - since
    where = RunFilter(status, shown["workflow"] or None, shown["tag"] or None, None, after)
    return where, shown, problem


async def _costs(request: Request, runs: list[RunInfo]) -> dict[str, AIUsageRow]:
    """The AI usage of each run on the page that made AI calls."""
    if not runs:
        return {}
    rows = await served_app(request).store.ai_usage(
        workflow_ids=[r.workflow_id for r in runs], group_by="run"
    )
    return {r.group or "": r for r in rows}


async def _find_run(request: Request, stripped: str) -> str | None:
    """The id of the run the search box names: as typed, else without the spaces around
    it (pasted with them); an id that begins or ends with a space is found too (the
    box's text trimmed alone missed it)."""
    store = served_app(request).store
    typed = request.query_params.get("q", "")
    for wid in dict.fromkeys((typed, stripped)):
        if wid and unstorable("q", wid) is None and await store.get_run(wid) is not None:
            return wid
    return None


@runs_pages.get("/runs")
async def runs(request: Request, who: Who) -> Response:
    where, shown, problem = _filters(request)
    missing = None
    if shown["q"]:
        named = await _find_run(request, shown["q"])
        if named is not None:
            return RedirectResponse(mounted_run_url(request, named), status_code=303)
        missing = shown["q"]
    status = 200 if problem is None else 422  # a filter refused, as the API refuses it
    cursor = request.query_params.get("cursor", "")
    if cursor and read_cursor(cursor) is None:  # it showed the newest runs as a later page
        problem = problem or (
            "This address's page of runs (its cursor) is not one the dashboard gave, cut "
            "short perhaps: these are the newest runs."
        )
        cursor = ""
    found, next_cursor = await runs_page(request, where, cursor)
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
        cursor=cursor,
        missing=missing,
        problem=problem,
        status=status,
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
    priced_calls: int


def _per_step(calls: list[AICallRow]) -> list[StepUsage]:
    sums: dict[str, list[int]] = {}
    for c in calls:
        s = sums.setdefault(c.step_key, [0, 0, 0, 0, 0, 0])
        s[0] += 1
        s[1] += c.input_tokens
        s[2] += c.output_tokens
        s[3] += c.cost_micro_usd or 0
        s[4] += c.cost_unknown
        s[5] += c.cost_micro_usd is not None
    return [StepUsage(k, *v) for k, v in sums.items()]


@dataclass(frozen=True)
class ChildrenPage:
    """Which of a run's child runs its page draws (`MAX_CHILDREN` from `first`), and the
    addresses of the pages before and after: past the first page the rest of them were
    counted but reachable from nowhere."""

    first: int
    shown: int
    total: int
    earlier: str | None
    later: str | None

    @property
    def next_count(self) -> int:
        return min(self.total - self.first - self.shown, MAX_CHILDREN)

    @property
    def before_count(self) -> int:
        return min(self.first, MAX_CHILDREN)


def _children_from(request: Request) -> int:
    """The first child run to draw (``?children=N``, counted from 0); 0 if not a count."""
    given = request.query_params.get("children", "")
    return int(given) if given.isascii() and given.isdigit() and len(given) < 10 else 0


def _children_url(workflow_id: str, first: int) -> str:
    page = run_url(workflow_id)
    return page if first == 0 else f"{page}{'&' if '?' in page else '?'}children={first}"


async def _children(request: Request, workflow_id: str) -> tuple[list[RunInfo], int, ChildrenPage]:
    """The run's child runs on this page (`MAX_CHILDREN` from ``?children=``), how many
    come after them, and the page's place among all of them. Their heads alone: their
    bars show no input, output, state or error."""
    store = served_app(request).store
    ids = await store.child_runs(workflow_id)
    first = min(_children_from(request), max(len(ids) - 1, 0))
    heads = await store.run_heads(ids[first : first + MAX_CHILDREN])
    found = [RunInfo.from_row(r) for r in heads]
    after = max(len(ids) - first - MAX_CHILDREN, 0)
    page = ChildrenPage(
        first,
        min(MAX_CHILDREN, len(ids) - first),
        len(ids),
        _children_url(workflow_id, max(first - MAX_CHILDREN, 0)) if first else None,
        _children_url(workflow_id, first + MAX_CHILDREN) if after else None,
    )
    return found, after, page


async def _unserved_queue(request: Request, info: RunInfo) -> str | None:
    """The command that starts a worker for the run, if it waits in a job queue that no
    live worker serving its workflow works: its page said only "pending", and the
    queues page alone told that nothing will start it."""
    if info.queue is None or info.status is not RunStatus.PENDING:
        return None
    if await served_app(request).adrivers(info.workflow_name, info.queue):
        return None
    return f"tether worker --app FILE.py:app -q {shlex.quote(info.queue)}"


def _pending_first(waits: list[WaitInfo]) -> list[WaitInfo]:
    return sorted(waits, key=lambda w: (w.status is not WaitStatus.PENDING, w.created_at))


def _answers(wait: WaitInfo, typed: dict[str, str]) -> bool:
    """Whether `typed` (a refused payload) was sent by the form of `wait`."""
    key = wait.id if wait.kind.value == "token" else wait.name
    return wait.kind.value == typed["kind"] and key == typed["key"]


async def run_page(
    request: Request, who: Viewer, workflow_id: str, *, problem: str | None = None,
    status: int = 200, typed: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """A run's page (also answered, with `problem`, when a form on it fails; with
    `typed`, a payload refused, shown again in its wait's form with what was wrong)."""
    app = served_app(request)
    try:
        info = await app.aget_run(workflow_id)
        rec = await app.aget_record(workflow_id)
    except (RunNotFoundError, InvalidArgumentError):  # InvalidArgument: no id at all
        return render(request, who, "missing.html", status=404, workflow_id=workflow_id)
    waits = await app.alist_waits(workflow_id)
    children, more_children, children_page = await _children(request, workflow_id)
    pending = [w for w in waits if w.status is WaitStatus.PENDING]
    if typed and not any(_answers(w, typed) for w in pending):  # its wait ended meanwhile
        problem, typed = f"{typed['problem']} The payload as typed: {typed['text']}", None
    now: datetime = app.clock.now()
    context: dict[str, Any] = {
        "rec": rec,
        "info": info,
        "waits": _pending_first(waits),
        "pending": pending,
        "more_children": more_children,
        "children_page": children_page,
        "unserved_queue": await _unserved_queue(request, info),
        "max_children": len(children),
        "head_bars": HEAD_BARS,
        "events": shown_events(workflow_id, rec.events[-MAX_EVENTS:]),
        "data": {part: data_preview(rec, part) for part in PARTS},
        **error_notes(rec),
        "earlier_events": max(len(rec.events) - MAX_EVENTS, 0),
        "timeline": timeline(rec, waits, children, now),
        "driven": driven(rec, now),
        "gone_since": rec.owner_gone_since(now),
        # in the usage page's order: the costliest model first, those at no known price last
        "by_model": by_cost(list(rec.usage.by_model.values())) if rec.usage else [],
        "per_step": _per_step(await app.alist_ai_calls(workflow_id)),
        "now": now,
        "done": done_note(request.query_params.get("done", ""), info),
        "problem": problem,
        "typed": typed,
        # the answer to a form stands at the form's address: the page's own, to re-read
        "page_url": mounted_run_url(request, workflow_id) if request.method == "POST" else None,
        "last_seq": rec.events[-1].seq if rec.events else 0,
    }
    return render(request, who, "run.html", status=status, **context)


@runs_pages.get("/runs/{workflow_id:path}")  # a child's id holds '/'
async def run(request: Request, workflow_id: str, who: Who) -> Response:
    if not workflow_id:  # /runs/: the list (as /usage/ is /usage), not "no run id given"
        query = request.url.query
        runs_url = mount_root(request) + "/runs"
        return RedirectResponse(runs_url + (f"?{query}" if query else ""), status_code=307)
    return await run_page(request, who, workflow_id)


@runs_pages.get("/run")  # any id, '..' and '.' too: ?id=ID
async def run_by_query(request: Request, who: Who) -> Response:
    return await run_page(request, who, request.query_params.get("id", ""))


def _after(request: Request) -> int:
    """The last event the page has (``?after=``, or a reconnecting ``Last-Event-ID``)."""
    found = 0
    for given in (request.query_params.get("after", ""), request.headers.get("last-event-id", "")):
        if given.isascii() and given.isdigit():
            found = max(found, min(int(given), MAX_SEQ))
    return found


@runs_pages.get("/run/events")
async def run_events(request: Request, _: Who) -> Response:
    """The run's events as the API streams them (``/api/v1/runs/{id}/events/stream``),
    at an address that reaches any id (``?id=``): what a run's page follows."""
    app = served_app(request)
    workflow_id = request.query_params.get("id", "")
    try:
        await app.aget_run(workflow_id)  # 404 before the stream starts
    except (RunNotFoundError, InvalidArgumentError):
        return Response("no such run", status_code=404, media_type="text/plain")
    return StreamingResponse(
        event_stream(
            app,
            workflow_id,
            _after(request),
            streams_of(request.app),
            lambda e: live_frame(workflow_id, e),  # its large values cut short
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
