"""Values that cross the store port: frozen rows out, small specs in.

JSON columns travel as JSON *text* both ways: the engine serialises once on
the way in and parses (and validates into the caller's type) on the way out,
so the store never re-serialises.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "AICallRow",
    "AISpend",
    "AIUsageRow",
    "ApiTokenRow",
    "Claimed",
    "EndReason",
    "EventRow",
    "Fence",
    "HeartbeatRow",
    "Histogram",
    "IdempotentAnswer",
    "JobRow",
    "JobStatus",
    "LockOutcome",
    "LockResult",
    "LockRow",
    "NewAICall",
    "NewEvent",
    "NewJob",
    "NewRun",
    "NewWait",
    "OutboxRow",
    "QueueDepth",
    "QueueLimit",
    "RunClaim",
    "RunFilter",
    "RunHistory",
    "RunRow",
    "RunStatus",
    "ScheduleRow",
    "StepRow",
    "StepStatus",
    "WaitKind",
    "WaitRow",
    "WaitStatus",
    "kept_attempt",
    "kept_detail",
    "run_settled",
]


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.COMPENSATED,
        RunStatus.COMPENSATION_FAILED,
    }
)


class EndReason(StrEnum):
    """Why a run ended, whatever became of it after (its status says that: a run
    that failed or was cancelled may end compensated). Recorded in ``runs.end_reason``
    by the verb that ends the run (see `_lifecycle.END_REASONS`); None while it has
    not ended."""

    COMPLETED = "completed"  # its function returned
    FAILED = "failed"  # its function raised
    TIMED_OUT = "timed_out"  # it executed past its workflow timeout
    CANCELLED = "cancelled"  # cancel_run ended it


class StepStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class LockOutcome(StrEnum):
    ACQUIRED = "acquired"
    RENEWED = "renewed"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Fence:
    """Who writes for a run. `generation=None` writes without fencing (an observer).

    A fenced write to a cancelled run raises `RunCancelledError`, except with
    `compensating=True`: the compensations of a cancelled run still record.
    """

    workflow_id: str
    generation: int | None = None
    compensating: bool = False


class WaitKind(StrEnum):
    EVENT = "event"
    SIGNAL = "signal"
    TOKEN = "token"
    TIMER = "timer"
    RUN = "run"


class WaitStatus(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


_order_lock = threading.Lock()
_last_order = 0


def _registration_order() -> int:
    """A number that grows with each call, in this process and (as it follows the
    wall clock in ns) across processes: a signal goes to a run's oldest wait for it,
    and waits registered under one fake-clock instant, or in one microsecond by
    `for_each` items, tie on `created_at`; their rows reach the database in the order
    their connections commit, not the order the code asked."""
    global _last_order
    with _order_lock:
        _last_order = max(_last_order + 1, time.time_ns())
        return _last_order


@dataclass(frozen=True, slots=True)
class NewWait:
    """A waitpoint to register; `key` names it within its run, stable across replays."""

    key: str
    kind: WaitKind
    name: str | None = None  # event type, signal name, child run id
    match: str | None = None  # JSON object: payload fields an event must equal
    due_at: datetime | None = None  # timer due time, or the wait's timeout
    wait_id: str | None = None  # given for tokens (the token id), else generated
    # the order the code asked for its waits in, which breaks ties of their times
    order: int = field(default_factory=_registration_order)


@dataclass(frozen=True, slots=True)
class WaitRow:
    id: str
    workflow_id: str
    key: str
    kind: WaitKind
    name: str | None
    match: str | None
    status: WaitStatus
    payload: str | None
    due_at: datetime | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    message: str | None = None
    detail: str | None = None  # JSON text


@dataclass(frozen=True, slots=True)
class NewRun:
    workflow_id: str
    workflow_name: str
    workflow_version: str | None = None
    input: str | None = None  # JSON text
    state: str | None = None  # JSON text
    priority: int = 0
    tags: tuple[str, ...] = ()
    tenant: str | None = None
    parent_id: str | None = None
    idempotency_key: str | None = None
    queue: str | None = None  # runs with a queue are driven by jobs (workers)
    # how new runs name steps: 2, by occurrence (see the 0005 migration); 3, and inside a
    # for_each item the waits and recorded values too by the item, as its steps are
    step_rule: int = 5  # (`tether._run_state.STEP_RULE`)
    budget: str | None = None  # JSON text: the run's own AI budget, if it was given one


@dataclass(frozen=True, slots=True)
class RunRow:
    workflow_id: str
    workflow_name: str
    workflow_version: str | None
    status: RunStatus
    input: str | None
    output: str | None
    error: str | None
    state: str | None
    priority: int
    tags: tuple[str, ...]
    tenant: str | None
    parent_id: str | None
    idempotency_key: str | None
    owner: str | None
    generation: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    compute_seconds: float = 0.0
    cancel_requested: str | None = None
    queue: str | None = None
    owner_expires_at: datetime | None = None  # the owner's claim lapses then (running runs)
    step_rule: int = 1  # how its steps are named (see STEP_RULE)
    budget: str | None = None  # JSON text: the run's own AI budget (see tether.ai.Budget)
    attempt: int = 1  # 1, then one more each time `rerun_from` sends the run round again
    end_reason: EndReason | None = None  # why it ended (None: it has not)
    # JSON text: the state it was created with (None: created by an older tether)
    initial_state: str | None = None

    @property
    def settled(self) -> bool:
        """Ended, with nothing of it left to run (see `run_settled`)."""
        return run_settled(self.status, self.cancel_requested)


def run_settled(status: RunStatus, cancel_requested: str | None) -> bool:
    """Whether a run has ended with nothing left to run: a cancelled run whose
    compensations are still due has ended, but its status will still move on to
    ``compensated`` (or ``compensation_failed``), so whoever waits for its outcome
    waits for that."""
    if not status.terminal:
        return False
    return not (status is RunStatus.CANCELLED and cancel_requested == "compensate")


@dataclass(frozen=True, slots=True)
class StepRow:
    workflow_id: str
    key: str
    name: str
    status: StepStatus
    attempts: int
    idempotency_key: str | None
    result: str | None
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    seq: int | None = None  # a recorded value's: the run's event number of its write


@dataclass(frozen=True, slots=True)
class EventRow:
    workflow_id: str
    seq: int
    type: str
    message: str | None
    detail: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class LockRow:
    scope: str
    key: str
    holder: str
    generation: int
    run_id: str | None
    detail: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    released_at: datetime | None

    def active_at(self, now: datetime) -> bool:
        return self.released_at is None and self.expires_at > now


KEPT_BY_PARKED_RUN = "kept_by_parked_run"  # a mutex's detail: its run parked inside the block


def kept_detail(attempt: int) -> str:
    """The detail of a mutex kept, unrenewed, by its run parked inside the block."""
    return json.dumps({KEPT_BY_PARKED_RUN: attempt})


def kept_attempt(detail: str | None) -> int | None:
    """The run attempt that keeps a lock while parked (`kept_detail`), else None."""
    if detail is None or KEPT_BY_PARKED_RUN not in detail:
        return None
    value = json.loads(detail)
    kept = value.get(KEPT_BY_PARKED_RUN) if isinstance(value, dict) else None
    return kept if isinstance(kept, int) else None


@dataclass(frozen=True, slots=True)
class HeartbeatRow:
    workflow_id: str
    key: str
    at: datetime
    detail: str | None


@dataclass(frozen=True, slots=True)
class LockResult:
    """What `acquire_lock` did; `row` is the holder's row after the call."""

    outcome: LockOutcome
    row: LockRow


class JobStatus(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job that drives a run on a worker: where it queues and how it is scheduled."""

    queue: str = "default"
    priority: int = 0
    concurrency_key: str | None = None
    max_attempts: int = 10
    run_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    workflow_id: str
    queue: str
    status: JobStatus
    priority: int
    attempt: int
    max_attempts: int
    concurrency_key: str | None
    worker: str | None
    locked_until: datetime | None
    run_after: datetime
    last_error: str | None
    # the job's run, claimed with it for `RunClaim.owner` in the same transaction: its
    # worker drives it without reading or claiming it again; None where it was not
    # (no `RunClaim`, a workflow not driven as recorded, a run not pending or running,
    # or one another transaction holds: skipped, never waited for)
    run: RunRow | None = None


class Claimed(list[JobRow]):
    """The jobs a claim took. `more`: it took as many as it was asked for and ready
    jobs of the asked workflows were left, so a worker whose slots all filled claims
    again as soon as one frees; otherwise it waits for news of work (or its poll)
    instead of making a claim that would come back empty."""

    more: bool = False

    @classmethod
    def of(cls, jobs: list[JobRow], *, more: bool) -> Claimed:
        out = cls(jobs)
        out.more = more
        return out


@dataclass(frozen=True, slots=True)
class RunClaim:
    """Claim each claimed job's run too, for `owner` (as `claim_run` with force), if it is
    pending or running and its workflow is one of `workflows`: (name, version) pairs
    the owner drives as recorded. Spares the worker a round trip and a commit per run."""

    owner: str
    lease: float
    workflows: tuple[tuple[str, str | None], ...]
    event: str = "workflow.running"  # the claim's event, as `claim_run` writes one


@dataclass(frozen=True, slots=True)
class QueueLimit:
    """Caps on a queue across all workers: claimed jobs at once, claims per second."""

    concurrency: int | None = None
    rate_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An event awaiting delivery to the sinks (or, dead-lettered, given up on: when,
    and the error of its last attempt)."""

    workflow_id: str
    seq: int
    type: str
    message: str | None
    detail: str | None
    at: datetime
    attempts: int
    last_error: str | None = None
    dead_at: datetime | None = None
    # claimed for delivery (`Store.outbox_claim`): until when no other publisher takes it
    claimed_until: datetime | None = None
    # when its run was created (`Store.outbox_claim`): which run of a reused id it is
    run_created: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule as the database keeps it; ticks at or before `fired_until` are started."""

    name: str
    workflow_name: str
    cron: str
    timezone: str
    queue: str
    missed: str
    paused: bool
    fired_until: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewAICall:
    """One model call, written with the step it ran in (same transaction).

    Tokens follow one convention: `input_tokens` is the total input (cached
    reads and cache writes are parts of it), `output_tokens` includes
    reasoning. `cost_micro_usd` None means no price was known, never 0.
    """

    call_type: str  # text | object | embed | batch
    provider: str
    model: str
    prompt: str  # JSON text of what was asked
    response: str | None  # JSON text of the answer (None: the call failed)
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micro_usd: int | None = None
    price_source: str | None = None
    service_tier: str | None = None
    request_id: str | None = None
    latency_ms: int = 0
    at: datetime | None = None
    error: str | None = None
    budget_key: str | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    # the provider took the request, so it may have billed it: an answer, or a failure
    # after the request went out (a 200 it could not use, a timeout or a connection
    # lost once sent). With no known cost it is of unknown cost, never free; a refused
    # call (4xx, 5xx, no connection) is False: it cost nothing
    billed: bool = False


@dataclass(frozen=True, slots=True)
class AISpend:
    """What the AI call log holds for a run, or for a budget key over all its runs."""

    calls: int = 0
    micro_usd: int = 0  # the calls whose price is known
    unknown_cost_calls: int = 0  # calls that used tokens at no known price
    tokens: int = 0  # input + output

    @property
    def usd(self) -> float:
        return self.micro_usd / 1_000_000


@dataclass(frozen=True, slots=True)
class AIUsageRow:
    """Totals of AI calls, for one group (a model, a workflow, a day) or all."""

    group: str | None
    calls: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micro_usd: int  # of the calls whose price is known
    unknown_cost_calls: int  # calls that used tokens at no known price
    # calls with a price (0 included); failed attempts that used no tokens are neither
    priced_calls: int = 0

    @property
    def cost_usd(self) -> float:
        return self.cost_micro_usd / 1_000_000

    @property
    def known_cost_usd(self) -> float | None:
        """The cost of the calls whose price is known; None when no call's was (an
        unknown price is never counted as 0)."""
        return self.cost_usd if self.priced_calls else None


@dataclass(frozen=True, slots=True)
class RunHistory:
    """A run's row and what is recorded of it, as `Store.run_history` reads it at once."""

    run: RunRow
    steps: list[StepRow]
    events: list[EventRow]
    heartbeats: list[HeartbeatRow]
    locks: list[LockRow]  # the leases it holds
    usage: list[AIUsageRow]  # its AI calls' totals, per model


@dataclass(frozen=True, slots=True)
class AICallRow:
    """One recorded model call."""

    id: int
    workflow_id: str
    step_key: str
    attempt: int
    call_type: str
    provider: str
    model: str
    request_id: str | None
    prompt: str | None
    response: str | None
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micro_usd: int | None
    price_source: str | None
    service_tier: str | None
    latency_ms: int
    at: datetime
    error: str | None
    budget_key: str | None
    batch_id: str | None
    custom_id: str | None
    # the provider took the request (`NewAICall.billed`); False in an older tether's rows
    billed: bool = False

    @property
    def cost_unknown(self) -> bool:
        """Billed at no known price (no price, an answer that told no usage, a failure
        after the provider took the request): counted in `unknown_cost_calls`, never as
        $0. A refused call that billed no tokens is not (the usage queries'
        `_usage_sums` and the budgets count alike)."""
        if self.cost_micro_usd is not None:
            return False
        return self.billed or self.error is None or self.input_tokens + self.output_tokens > 0


@dataclass(frozen=True, slots=True)
class ApiTokenRow:
    """An API token of `tether serve`: only the sha256 of the secret is kept."""

    id: str
    name: str | None
    scope: str  # "read", "write" or "admin"
    token_hash: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdempotentAnswer:
    """What an Idempotency-Key already stands for: the request it was first used with
    (a digest), and its answer (`status` None while that request is in flight)."""

    request_hash: str
    status: int | None
    response: str | None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a page of `list_runs_page` holds (None: any)."""

    status: RunStatus | None = None
    workflow: str | None = None
    tag: str | None = None
    tenant: str | None = None
    created_after: datetime | None = None  # at or after
    created_before: datetime | None = None  # strictly before
    parent: str | None = None  # the run that started them (its children)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A latency histogram over recorded rows: (upper bound in seconds, how many took
    at most that) per bucket, cumulative, then the count and the sum of all."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One queue now: jobs waiting, jobs claimed, and when the oldest waiting one was due."""

    queue: str
    queued: int
    claimed: int
    oldest_due: datetime | None
