"""``/api/v1/runs`` and the actions on runs: one function per route, each a thin
call of the App's async API (the same checks and errors as from Python)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._info import RunInfo
from .._names import check_name
from .._waits import MISSING
from ..definition import WorkflowDef
from ..errors import WorkflowNotFoundError
from ..kernel import CompensationsRetried, RunRerunFrom, RunRetryCompensations
from ..record import EventRecord
from ..stages import Pipeline
from ..stages.host import forget_files, rerun_point
from ..store import RunFilter, RunRow, RunStatus
from ._deps import need, served_app
from ._errors import ApiError
from ._models import (
    CancelRun,
    CompensationsRetrying,
    CompleteToken,
    Event,
    EventList,
    EventSent,
    RerunFrom,
    RerunStarted,
    RunCancelled,
    RunPage,
    RunStarted,
    RunSummary,
    SendEvent,
    Signalled,
    SignalRun,
    StartRun,
    Text,
    TokenCompleted,
    WaitSummary,
    storable,
)
from ._port import ServedApp
from ._run_path import RunRoute
from ._sse import event_stream, streams_of
from ._wire import path_segment

__all__ = ["api_router", "aware", "decode_cursor", "encode_cursor", "record_path", "record_router"]

# a run id may hold '/' (a child's does): its routes take the rest of the path, each
# matching only its own tail as sent (`RunRoute`), and the record's route, which
# would take "ID/events" too, comes after every other (`_asgi`)
api_router = APIRouter(route_class=RunRoute)
record_router = APIRouter(route_class=RunRoute)
# options of `App.submit` that mean nothing to a run the server drives at once
QUEUED_ONLY = ("concurrency_key", "max_attempts", "run_after")
MAX_SEQ = 2**63 - 1  # an event number: a 64-bit integer in both databases
READ, WRITE = need("read"), need("write")


_FIELDS = (
    "summary: each run as it stands, without its input, output and state (none read); "
    "full: with them, as its record has them, and its owner and owner_expires_at (the "
    "keys of `tether runs list --json`)"
)


def encode_cursor(run: RunInfo | RunRow) -> str:
    raw = json.dumps([run.workflow_id, run.created_at.isoformat()]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, datetime]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        wid, at = json.loads(raw)
        if not isinstance(wid, str) or not isinstance(at, str):
            raise ValueError(wid)
        storable(wid)  # no NUL, no lone surrogate: none of our run ids holds one
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError(at)
        return wid, when
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise ApiError(
            422, "invalid_cursor", "cursor: not a cursor this API gave; pass next_cursor as given"
        ) from None


def aware(**given: datetime | None) -> None:
    """Refuse a time without a time zone (a 422 naming the query field), with an example
    to copy: a date alone has none and cannot take one (``2026-12-04Z`` is no time at
    all), so "give a time zone" sent the caller to a second 422."""
    for what, when in given.items():
        if when is not None and when.tzinfo is None:
            raise ApiError(
                422,
                "invalid_request",
                f"query.{what}: give a time with its time zone, e.g. {when.isoformat()}Z "
                "(UTC; a date or a time alone has none)",
                [{"field": f"query.{what}", "message": "needs a time zone"}],
            )


@api_router.get(
    "/runs",
    dependencies=[READ],
    summary="List runs, newest first",
    response_model_exclude_unset=True,  # the fields of ?fields=full are absent without it
)
async def list_runs(
    request: Request,
    status: RunStatus | None = None,
    workflow: Text | None = None,
    tag: Text | None = None,
    tenant: Text | None = None,
    parent: Annotated[Text | None, Query(description="the run that started them")] = None,
    created_after: Annotated[datetime | None, Query(description="at or after (ISO 8601)")] = None,
    created_before: Annotated[datetime | None, Query(description="strictly before")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    fields: Annotated[Literal["summary", "full"], Query(description=_FIELDS)] = "summary",
) -> RunPage:
    aware(created_after=created_after, created_before=created_before)
    where = RunFilter(status, workflow, tag, tenant, created_after, created_before, parent)
    after = None if cursor is None else decode_cursor(cursor)
    store = served_app(request).store
    if fields == "full":
        rows = await store.list_runs_page(where, limit=limit + 1, after=after)
        runs = [RunSummary.full(r) for r in rows[:limit]]
    else:  # a summary shows no input, output or state: they are not read
        rows = await store.list_run_heads(where, limit=limit + 1, after=after, error=True)
        runs = [RunSummary.of(RunInfo.from_row(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return RunPage(runs=runs, next_cursor=encode_cursor(rows[limit - 1]) if more else None)


def record_path(request: Request, workflow_id: str) -> str:
    """The path of a run's record (``/api/v1/runs/{id}``, the id one segment)."""
    return f"{request.scope.get('root_path', '')}/api/v1/runs/{path_segment(workflow_id)}"


async def _named(app: ServedApp, workflow_id: str | None, workflow: str) -> bool:
    """Whether `workflow_id` names a run of `workflow` already: starting it again starts
    nothing, and a 201 said otherwise. A run of another workflow is a conflict with
    what is recorded (409; `App.start`'s refusal of it was answered as a malformed
    request, 422). An id the database cannot store names none (`App.start` refuses
    it, saying why)."""
    if workflow_id is None:
        return False
    try:
        storable(workflow_id)
    except ValueError:
        return False
    run = await app.store.get_run(workflow_id)
    if run is not None and run.workflow_name != workflow:
        raise ApiError(
            409,
            "workflow_id_taken",
            f"workflow id {workflow_id!r} already names a run of workflow "
            f"{run.workflow_name!r}, not {workflow!r}; choose another workflow_id (or leave "
            "it out for a new one)",
            {"workflow_id": workflow_id, "workflow": run.workflow_name},
        )
    return run is not None


@api_router.post(
    "/runs",
    dependencies=[WRITE],
    status_code=201,
    summary="Start or submit a run",
    responses={
        200: {
            "description": "The run `workflow_id` names already (nothing started)",
            "model": RunStarted,
        }
    },
)
async def start_run(request: Request, response: Response, body: StartRun) -> RunStarted:
    """Without `queue` the server starts the run now and drives it (`App.start`);
    with one it is queued for that queue's workers (`App.submit`). `run_after`,
    `max_attempts` and `concurrency_key` are a queued run's: given without `queue`
    they are refused (422), never ignored. ``Location`` names the run's record.
    A `workflow_id` that names a run of the workflow already answers that run, as
    `App.start` does, with 200 instead of 201: nothing was started; one that names a
    run of another workflow is a 409."""
    app = served_app(request)
    given_queued = [f for f in QUEUED_ONLY if f in body.model_fields_set]
    if body.queue is None and given_queued:
        raise ApiError(
            422,
            "invalid_request",
            f"body.{given_queued[0]}: {', '.join(given_queued)} apply to a queued run only; "
            'pass "queue" (e.g. "default") and run a worker for it, or leave '
            f"{'them' if len(given_queued) > 1 else 'it'} out to start the run now",
            [{"field": f"body.{f}", "message": "needs queue"} for f in given_queued],
        )
    defn = app.get_workflow(body.workflow)
    fn = defn.fn
    existed = await _named(app, body.workflow_id, defn.name)
    given: Any = MISSING if "input" not in body.model_fields_set else body.input
    common: dict[str, Any] = {
        "workflow_id": body.workflow_id,
        "priority": body.priority,
        "tags": body.tags,
        "tenant": body.tenant,
        "initial_state": body.initial_state,
    }
    if body.queue is None:
        wid = await app.astart(fn, given, **common)
    else:
        wid = await app.asubmit(
            fn,
            given,
            queue=body.queue,
            concurrency_key=body.concurrency_key,
            max_attempts=body.max_attempts,
            run_after=body.run_after,
            **common,
        )
    response.headers["Location"] = record_path(request, wid)
    if existed:
        response.status_code = 200
    return RunStarted(workflow_id=wid)


@api_router.get("/runs/{workflow_id:path}/events", dependencies=[READ], summary="A run's events")
async def list_events(
    request: Request, workflow_id: str, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0
) -> EventList:
    app = served_app(request)
    await app.aget_run(workflow_id)  # 404 for an unknown run
    rows = await app.store.list_events(workflow_id, after_seq=after)
    return EventList(events=[Event.of(EventRecord.from_row(r)) for r in rows])


@api_router.get(
    "/runs/{workflow_id:path}/events/stream",
    dependencies=[READ],
    summary="A run's events as Server-Sent Events, live, until the run ends",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    workflow_id: str,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    app = served_app(request)
    await app.aget_run(workflow_id)  # 404 before the stream starts
    # a reconnecting EventSource; an id of ours is ASCII digits (else ignored, as is none)
    if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():
        after = max(after, min(int(last_event_id), MAX_SEQ))
    return StreamingResponse(
        event_stream(app, workflow_id, after, streams_of(request.app)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@api_router.get("/runs/{workflow_id:path}/waits", dependencies=[READ], summary="A run's waitpoints")
async def list_waits(request: Request, workflow_id: str) -> list[WaitSummary]:
    return [WaitSummary.of(w) for w in await served_app(request).alist_waits(workflow_id)]


@api_router.post("/runs/{workflow_id:path}/cancel", dependencies=[WRITE], summary="Cancel a run")
async def cancel_run(
    request: Request, workflow_id: str, body: CancelRun | None = None
) -> RunCancelled:
    """The body is optional: none cancels with no reason and no compensation."""
    body = body or CancelRun()
    app = served_app(request)
    await app.aget_run(workflow_id)
    cancelled = await app.acancel(
        workflow_id, body.reason, compensate=body.compensate, abandon_batches=body.abandon_batches
    )
    return RunCancelled(cancelled=cancelled)


@api_router.post("/runs/{workflow_id:path}/signal", dependencies=[WRITE], summary="Signal a run")
async def signal_run(request: Request, workflow_id: str, body: SignalRun) -> Signalled:
    app = served_app(request)
    await app.aget_run(workflow_id)
    return Signalled(woken=await app.asignal(workflow_id, body.name, body.payload))


@api_router.post(
    "/runs/{workflow_id:path}/rerun", dependencies=[WRITE], summary="Run a finished run again"
)
async def rerun_from(request: Request, workflow_id: str, body: RerunFrom) -> RerunStarted:
    """Forget `step` and every later step, and run it again from there (a pipeline
    run's `step` may be a stage's id, as in `App.rerun_from`): in the
    server (its workflow registered on the served App) or, for a queued run, on a
    worker. Answers at once; follow the run with its events or its record. A step
    name the database cannot store (a NUL, blank) is a 422, as from `App.rerun_from`
    (the command refused it deep in the kernel, answered as the server's 500)."""
    step = check_name("step", body.step)
    app = served_app(request)
    run = await app.aget_run(workflow_id)
    if run.status not in (RunStatus.COMPLETED, RunStatus.FAILED):
        raise ApiError(
            409,
            "run_not_ended",
            f"run {workflow_id!r} is {run.status.value}; only a completed or failed run "
            "is run again",
        )
    try:
        defn: WorkflowDef | None = app.get_workflow(run.workflow_name)
    except WorkflowNotFoundError:
        if run.queue is None:  # fail before changing anything
            raise
        defn = None  # its workers know it: the step goes as given
    forget: list[str] = []
    if defn is not None and isinstance(defn.fn, Pipeline):
        step, forget = await rerun_point(app.store, workflow_id, defn.fn, step)
    await app.kernel.adispatch(RunRerunFrom(workflow_id=workflow_id, step=step))
    # the files of the stages it forgot, of the attempts before (as `App.rerun_from`)
    await forget_files(app.blobs, workflow_id, forget, run.attempt, store=app.store)
    return RerunStarted(woken=[workflow_id])


@api_router.post(
    "/runs/{workflow_id:path}/retry-compensations",
    dependencies=[WRITE],
    summary="Try a run's failed compensations again",
)
async def retry_compensations(request: Request, workflow_id: str) -> CompensationsRetrying:
    """Try again the compensations of a `compensation_failed` run, after a fix, as
    `App.retry_compensations` does: those that failed run again, those that
    completed never twice. In the server (its workflow registered on the served
    App) or, for a queued run, on a worker. Answers at once with the compensations
    that run again; follow the run with its events or its record. A run in any other
    status is a 409, nothing changed."""
    app = served_app(request)
    run = await app.aget_run(workflow_id)
    if run.status is not RunStatus.COMPENSATION_FAILED:
        raise ApiError(
            409,
            "run_not_compensation_failed",
            f"run {workflow_id!r} is {run.status.value}; only a compensation_failed run has "
            "compensations to retry",
        )
    if run.queue is None:
        app.get_workflow(run.workflow_name)  # fail before changing anything
    done = await app.kernel.adispatch(RunRetryCompensations(workflow_id=workflow_id))
    assert isinstance(done, CompensationsRetried)  # (that command's result)
    return CompensationsRetrying(workflow_id=workflow_id, retried=done.retried)


@api_router.post("/events", dependencies=[WRITE], summary="Send an event to waiting runs")
async def send_event(request: Request, body: SendEvent) -> EventSent:
    return EventSent(woken=await served_app(request).asend_event(body.type, body.payload))


@api_router.post(
    "/wait-tokens/{token_id:path}/complete", dependencies=[WRITE], summary="Complete a token"
)
async def complete_token(request: Request, token_id: str, body: CompleteToken) -> TokenCompleted:
    wid = await served_app(request).acomplete_token(token_id, body.payload)
    return TokenCompleted(workflow_id=wid)


@record_router.get("/runs/{workflow_id:path}", dependencies=[READ], summary="A run's full record")
async def get_record(request: Request, workflow_id: str) -> JSONResponse:
    """The JSON of `tether runs export` (`RunRecord.to_dict()`)."""
    return JSONResponse((await served_app(request).aget_record(workflow_id)).to_dict())
