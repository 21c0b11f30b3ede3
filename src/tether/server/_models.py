"""The bodies of the HTTP API: one pydantic model per request and per response,
used by the server (validation, the OpenAPI document) and by the typed clients
(parsing), so the two cannot drift apart.

A run's full record is not a model here: it is `RunRecord.to_dict()`, the same
JSON `tether runs export` prints, and the clients turn it back into a `RunRecord`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from .._info import RunInfo, WaitInfo, mirror
from .._names import unstorable
from ..record import EventRecord, RunRecord
from ..serde import dump_json
from ..store import AICallRow, AIUsageRow, EndReason, RunRow, RunStatus, WaitKind, WaitStatus

__all__ = [
    "ERRORS",
    "AICall",
    "ApiTokenCreated",
    "ApiTokenInfo",
    "CancelRun",
    "CompensationsRetrying",
    "CompleteToken",
    "ErrorBody",
    "ErrorDetail",
    "Event",
    "EventList",
    "EventSent",
    "HookAccepted",
    "NewApiToken",
    "QueueInfo",
    "RerunFrom",
    "RerunStarted",
    "RunCancelled",
    "RunPage",
    "RunStarted",
    "RunSummary",
    "Scope",
    "SendEvent",
    "SignalRun",
    "Signalled",
    "StartRun",
    "Text",
    "TokenCompleted",
    "UsageRow",
    "WaitSummary",
    "WorkerInfo",
    "storable",
]

Scope = Literal["read", "write", "admin"]


def storable(value: str) -> str:
    """`value` if both databases can store it: no NUL, no lone surrogate (PostgreSQL
    refuses both, which would otherwise surface as a 503 from the store)."""
    if unstorable(value):
        raise ValueError(
            "contains a NUL character (\\u0000) or a lone surrogate, which the database "
            "cannot store; send plain text without them"
        )
    return value


Text = Annotated[str, AfterValidator(storable)]  # text a request may carry to the store


class _Body(BaseModel):
    """A request body: unknown fields are refused (a typo is a 422, not ignored)."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """A response body: a newer server may add fields an older client ignores."""

    model_config = ConfigDict(extra="ignore")


# -- errors ---------------------------------------------------------------------------


class ErrorDetail(_Out):
    code: str = Field(description="stable machine-readable code, e.g. run_not_found")
    message: str
    details: Any = None


class ErrorBody(_Out):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


#: the error answers of the API's routes, as the OpenAPI document describes them: every
#: one is an `ErrorBody` (it described a 422 as FastAPI's ``{"detail": [...]}``, a body
#: this server never sends, and no other error at all)
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": ErrorBody,
        "description": "Refused: 400 bad query, 401 no or bad token, 403 scope too low, "
        "404 no such run (or token, workflow), 409 what is recorded refuses it (the run's "
        "state, a token completed already, a run id taken), 413 body too large, 422 "
        "invalid body or argument",
    },
    "5XX": {"model": ErrorBody, "description": "503: the database is unreachable; 500: a bug"},
}


# -- runs -----------------------------------------------------------------------------

_FULL = "; with ?fields=full only (absent otherwise)"
_FULL_ONLY = ("input", "output", "state", "owner", "owner_expires_at")


class RunSummary(_Out):
    """One run as it stands, without its history (`RunRecord` has that)."""

    workflow_id: str
    workflow_name: str
    workflow_version: str | None
    status: RunStatus
    tags: list[str]
    tenant: str | None
    parent_id: str | None
    queue: str | None
    priority: int
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    end_reason: EndReason | None = Field(
        default=None, description="why the run ended; null while it has not"
    )
    error: dict[str, Any] | None = Field(
        default=None,
        description="the last error recorded: type, module, qualname, message, retryable, "
        "traceback, cause (the error it was raised from, the same shape, or null)",
    )
    # with ?fields=full only (absent otherwise): what a list of summaries does not read
    input: Any = Field(default=None, description=f"the run's input{_FULL}")
    output: Any = Field(default=None, description=f"the run's result{_FULL}")
    state: Any = Field(default=None, description=f"the run's state{_FULL}")
    owner: str | None = Field(default=None, description=f"the process driving it{_FULL}")
    owner_expires_at: datetime | None = Field(
        default=None, description=f"when its owner's claim lapses, unless renewed{_FULL}"
    )

    @classmethod
    def of(cls, run: RunInfo, **full: Any) -> RunSummary:
        """The run's fields of the same names; `error` decoded (`RunInfo` keeps its JSON);
        the fields of ?fields=full only if given in `full`."""
        same = {n: getattr(run, n) for n in cls.model_fields.keys() - {"error", *_FULL_ONLY}}
        error = run.error_record
        return cls(**same, error=None if error is None else error.to_dict(), **full)

    @classmethod
    def full(cls, row: RunRow) -> RunSummary:
        """`of` the run, with its input, output and state as its record gives them (a
        result recorded with its class shows its data) and its owner."""
        rec = RunRecord.build(row, [], [], [], [])  # the run's own values; no history
        return cls.of(RunInfo.from_row(row), **{n: getattr(rec, n) for n in _FULL_ONLY})


class RunPage(_Out):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: done")


class Event(_Out):
    seq: int
    type: str
    at: datetime
    message: str | None = None
    detail: Any = None

    @classmethod
    def of(cls, e: EventRecord) -> Event:
        return cls(seq=e.seq, type=e.type, at=e.at, message=e.message, detail=e.detail)


class EventList(_Out):
    events: list[Event]


class WaitSummary(_Out):
    id: str
    key: str
    kind: str
    name: str | None
    match: dict[str, Any] | None = Field(
        default=None, description="the payload fields an event must equal; null: any event"
    )
    status: str
    due_at: datetime | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, w: WaitInfo) -> WaitSummary:
        """The wait's fields of the same names (kind, status by value); `match` decoded
        (`WaitInfo` keeps its JSON), so `runs show --server` can say what an event must match."""
        same = {n: getattr(w, n) for n in cls.model_fields.keys() - {"match"}}
        return cls(**same, match=None if w.match is None else json.loads(w.match))

    def info(self, workflow_id: str) -> WaitInfo:
        """The wait as `App.list_waits` gives it, back from the wire (`of` the other way):
        `match` as JSON text again; no payload, which a summary does not carry."""
        match = None if self.match is None else dump_json(self.match, what="a wait's match")
        kind, status = WaitKind(self.kind), WaitStatus(self.status)
        converted = {"kind": kind, "status": status, "match": match, "payload": None}
        return mirror(WaitInfo, self, workflow_id=workflow_id, **converted)


class StartRun(_Body):
    """Start a run. Without `queue` the server starts it now and drives it (like
    `App.start`); with a queue it is queued for workers (like `App.submit`).
    `concurrency_key`, `max_attempts` and `run_after` need a `queue`."""

    workflow: str = Field(min_length=1, description="a workflow registered on the served App")
    input: Any = Field(default=None, description="the run's input (omit for none)")
    workflow_id: str | None = Field(default=None, min_length=1)
    queue: str | None = Field(default=None, min_length=1)
    tags: list[Text] = []
    tenant: Text | None = None
    priority: int = 0
    concurrency_key: str | None = Field(
        default=None, min_length=1, description="queued runs only (422 without `queue`)"
    )
    max_attempts: int = Field(
        default=10, ge=1, description="queued runs only (422 without `queue`)"
    )
    run_after: datetime | None = Field(
        default=None, description="queued runs only (422 without `queue`)"
    )
    initial_state: Any = None


class RunStarted(_Out):
    workflow_id: str


class CancelRun(_Body):
    # written in the run's cancel event: a NUL was the store's 503 on PostgreSQL (and
    # kept on SQLite), a lone surrogate the server's 500
    reason: Text | None = None
    # a JSON true or false: "yes" or 1 read as true cancelled with compensation
    compensate: StrictBool = False
    # cancel even with provider batches out that the served App cannot reach
    abandon_batches: StrictBool = False


class RunCancelled(_Out):
    cancelled: list[str]


class SignalRun(_Body):
    name: str = Field(min_length=1)
    payload: Any = None


class Signalled(_Out):
    woken: bool = Field(description="false: no wait matched yet, the signal is kept for later")


class SendEvent(_Body):
    type: str = Field(min_length=1)
    payload: Any = None


class EventSent(_Out):
    woken: list[str]


class CompleteToken(_Body):
    payload: Any = None


class TokenCompleted(_Out):
    workflow_id: str


class RerunFrom(_Body):
    step: str = Field(min_length=1, description="forget this step and every later one")


class RerunStarted(_Out):
    woken: list[str]


class CompensationsRetrying(_Out):
    workflow_id: str
    retried: list[str] = Field(description="the compensations that run again (their step keys)")


# -- usage, queues, workers ---------------------------------------------------------------


class UsageRow(_Out):
    group: str | None
    calls: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micro_usd: int
    unknown_cost_calls: int
    priced_calls: int = 0

    @classmethod
    def of(cls, r: AIUsageRow) -> UsageRow:
        return cls.model_validate(r, from_attributes=True)


class AICall(_Out):
    id: int
    workflow_id: str
    step_key: str
    attempt: int
    call_type: str
    provider: str
    model: str
    request_id: str | None
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micro_usd: int | None
    price_source: str | None
    latency_ms: int | None
    at: datetime
    error: str | None
    # defaults: an older server leaves these out (prompt and response stay off the wire)
    service_tier: str | None = None
    budget_key: str | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    # the provider took the request: with no cost known, one of unknown cost, never free
    billed: bool = False

    @classmethod
    def of(cls, r: AICallRow) -> AICall:
        return cls.model_validate(r, from_attributes=True)


class QueueInfo(_Out):
    name: str
    jobs: dict[str, int] = Field(description="jobs by status: queued, claimed, done, failed")
    concurrency: int | None = None
    rate_per_second: float | None = None


class WorkerInfo(_Out):
    """A live process that drives runs (a worker, or an App running workflows)."""

    id: str
    workflows: list[str]
    queues: list[str] = Field(
        default_factory=list,
        description="the job queues it works (a worker); none: it drives only the runs it "
        "starts or is woken for",
    )
    since: datetime
    expires_at: datetime


# -- API tokens -----------------------------------------------------------------------------


class NewApiToken(_Body):
    scope: Scope
    # the length checked first: after `storable` it was said of "items", not characters
    name: Annotated[str, Field(min_length=1), AfterValidator(storable)] | None = None


class ApiTokenInfo(_Out):
    id: str
    name: str | None
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(_Out):
    token: str = Field(description="the secret: shown this once, only its hash is kept")
    info: ApiTokenInfo


class HookAccepted(_Out):
    event: str
    woken: list[str]
