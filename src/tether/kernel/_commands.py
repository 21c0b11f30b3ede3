"""The kernel's commands and their results: typed, validated at the API edge.

Every state change of a run is one of these. A command carrying an
`idempotency_key` runs once: dispatching the same key again returns the first
result, and dispatching it while the first is still in flight raises
`IdempotencyInProgressError`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._durations import MAX_SECONDS
from .._names import check_name, check_queue_name, check_text
from ..errors import InvalidArgumentError

__all__ = [
    "Command",
    "CommandResult",
    "CompensationsRetried",
    "JobExecute",
    "JobExecuted",
    "LeaseReapStale",
    "OutboxFlush",
    "OutboxFlushed",
    "OutboxReplayDead",
    "Reaped",
    "Replayed",
    "RunAdoptOrphans",
    "RunCancel",
    "RunCancelled",
    "RunCreate",
    "RunCreated",
    "RunReapStuck",
    "RunRerunFrom",
    "RunResume",
    "RunResumed",
    "RunRetryCompensations",
    "TimersFire",
    "Woken",
]


_INT32 = 2**31 - 1
_INT64 = 2**63 - 1

# the fields that name something kept in an indexed column (a run, a queue, a key)
_NAMES = frozenset(
    {"idempotency_key", "workflow", "workflow_id", "queue", "concurrency_key", "name", "step"}
    | {"tenant"}  # as `App.submit` checks it: a NUL was a bare store error on PostgreSQL
)


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotency_key: str | None = Field(default=None, min_length=1)

    def __init__(self, **fields: Any) -> None:
        """As pydantic's, with what it refused told as an `InvalidArgumentError`, as a
        dispatched dict's is: a host building a command (``RunCancel(workflow_id="")``)
        got pydantic's bare ValidationError, no `TetherError` to catch."""
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            kind = type(self).model_fields["type"].default
            raise InvalidArgumentError(f"invalid command: {_explain(kind, exc)}") from None

    @field_validator(*_NAMES, mode="after", check_fields=False)
    @classmethod
    def _storable(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The names the App checks for its own calls, checked for dispatched commands
        too: a NUL in a run id was stored by SQLite and refused by PostgreSQL."""
        if value is not None:
            check_name(info.field_name or "name", value)
        return value


def _explain(kind: str, exc: ValidationError) -> str:
    """What pydantic refused, each field named under the command's type, as a
    dispatched dict's errors name them (``run.cancel.workflow_id: ...``); a check of
    the whole command in its own words, without the input repeated."""
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join([kind, *(str(part) for part in error["loc"])])
        said = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {said}" + (f" (got {error['input']!r})" if error["loc"] else ""))
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class RunCreate(_Command):
    """Create a run of a registered workflow; queue it (`queue`) or drive it here."""

    type: Literal["run.create"] = "run.create"
    workflow: str = Field(min_length=1, description="registered workflow name")
    input: Any = None  # passed to workflows that take an input
    workflow_id: str | None = Field(default=None, min_length=1)
    queue: str | None = Field(default=None, min_length=1)
    # the bounds `App.submit` has (the columns are 32-bit): PostgreSQL refused more with a
    # bare store error, SQLite stored it
    priority: int = Field(default=0, ge=-_INT32, le=_INT32)
    tags: tuple[str, ...] = ()
    tenant: str | None = None
    concurrency_key: str | None = Field(default=None, min_length=1)
    max_attempts: int = Field(default=10, ge=1, le=_INT32)
    run_after: AwareDatetime | None = None  # a naive one is another moment elsewhere
    initial_state: Any = None
    budget: dict[str, Any] | None = None  # the run's own AI budget (tether.ai.Budget fields)

    @field_validator("queue", mode="after")
    @classmethod
    def _servable(cls, value: str | None) -> str | None:
        """A queue a worker can be told on its command line (`check_queue_name`)."""
        return value if value is None else check_queue_name("queue", value)

    @field_validator("run_after", mode="after")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        """A moment UTC can hold, as `App.submit` checks: one past the year 9998 in UTC
        was stored, then every read of the queue (``/metrics`` among them) failed with
        "year 10000 is out of range"."""
        if value is not None:
            try:
                year = value.astimezone(UTC).year
            except OverflowError:
                year = 10000
            if year >= 9999:
                raise ValueError(
                    f"{value.isoformat()} is outside the years 1 to 9998 in UTC; give a real "
                    "moment, e.g. now + 1 day"
                )
        return value

    @model_validator(mode="after")
    def _job_fields_need_a_queue(self) -> RunCreate:
        """A job's fields with no queue made no job and were dropped: a run given a
        `run_after` a day ahead started at once, a `concurrency_key` held nothing."""
        given = sorted(self.model_fields_set & {"run_after", "concurrency_key", "max_attempts"})
        if self.queue is None and given:
            raise ValueError(
                f"{' and '.join(given)} set a queued run's job, and no queue was given; "
                "add a queue (e.g. queue='default') or drop them"
            )
        return self

    @field_validator("tags", mode="after")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each a name the database can store, as `App.submit` checks them: a NUL in a
        tag was stored by SQLite and a bare store error on PostgreSQL."""
        for tag in value:
            check_name("tag", tag)
        return value


class RunCancel(_Command):
    """Cancel a run and its children (`RunFinishedError` if it has ended); with
    `compensate`, run their compensations. `RunCancelled` lists the runs cancelled."""

    type: Literal["run.cancel"] = "run.cancel"
    workflow_id: str = Field(min_length=1)
    reason: str | None = None
    compensate: bool = False

    @field_validator("reason", mode="after")
    @classmethod
    def _reason_storable(cls, value: str | None) -> str | None:
        """Written in the cancel event: a NUL was kept on SQLite and refused by
        PostgreSQL (a bare store error)."""
        return None if value is None else check_text("reason", value)


class RunResume(_Command):
    """Resolve a wait from outside: an event (broadcast), a signal (to a run), a token."""

    type: Literal["run.resume"] = "run.resume"
    kind: Literal["event", "signal", "token"]
    name: str = Field(min_length=1, description="event type, signal name or token id")
    workflow_id: str | None = Field(default=None, min_length=1, description="signals only")
    payload: Any = None

    @model_validator(mode="after")
    def _run_only_for_signals(self) -> RunResume:
        """An event with a `workflow_id` went to every run waiting for it, and a token
        completed whatever run holds it, the id ignored: refused, not misrouted."""
        if self.workflow_id is not None and self.kind != "signal":
            raise ValueError(
                f"workflow_id names the run of a signal; {self.kind}s are not sent to one "
                "run (an event goes to every run waiting for it, a token to the run that "
                "made it): drop workflow_id, or send kind='signal'"
            )
        return self


class RunRerunFrom(_Command):
    """Run an ended (completed or failed) run again from `step`, forgetting it and
    every later step. `budget`: JSON of the run's new `tether.ai.Budget` fields."""

    type: Literal["run.rerun_from"] = "run.rerun_from"
    workflow_id: str = Field(min_length=1)
    step: str = Field(min_length=1)
    budget: str | None = None  # JSON: the run's new AI budget, if it is given one


class RunRetryCompensations(_Command):
    """Try the compensations of a `compensation_failed` run again (those that did not
    complete; the completed ones are never run twice)."""

    type: Literal["run.retry_compensations"] = "run.retry_compensations"
    workflow_id: str = Field(min_length=1)


class JobExecute(_Command):
    """Drive the run of a claimed job, then close the job."""

    type: Literal["job.execute"] = "job.execute"
    job_id: int = Field(ge=1, le=_INT64)  # a job's id as the database keeps it
    workflow_id: str = Field(min_length=1)
    worker: str = Field(min_length=1)


class TimersFire(_Command):
    """Resolve due timers and time out waits past their timeout (`Woken` lists the
    runs woken), and drop inbox items past their retention."""

    type: Literal["timers.fire"] = "timers.fire"


class LeaseReapStale(_Command):
    """Put back in their queue the claimed jobs whose worker's lease lapsed (a job
    past its attempts fails its run); `Reaped.count` says how many."""

    type: Literal["lease.reap_stale"] = "lease.reap_stale"


class RunReapStuck(_Command):
    """Queue a job for runs left running, idle for `idle_for` seconds, with no open
    job (their owner died mid-drive), so that a worker drives them again."""

    type: Literal["run.reap_stuck"] = "run.reap_stuck"
    # to a century, as a worker's `stuck_after`: PostgreSQL refused more (an infinity)
    # with a bare "interval out of range"
    idle_for: float = Field(default=300.0, gt=0, le=MAX_SECONDS)


class RunAdoptOrphans(_Command):
    """Queue, on `queue`, runs of `workflows` that nobody drives (their owner died,
    or they sat runnable for `grace` seconds) so that workers take them up."""

    type: Literal["run.adopt_orphans"] = "run.adopt_orphans"
    queue: str = Field(min_length=1)
    workflows: tuple[str, ...]
    grace: float = Field(default=30.0, ge=0, le=MAX_SECONDS)

    @field_validator("workflows", mode="after")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each a name the database can store (a NUL was a bare PostgreSQL error)."""
        for name in value:
            check_name("workflows name", name)
        return value


# a LIMIT both databases take: more was a raw OverflowError (SQLite) or a bare
# "bigint out of range" (PostgreSQL)
class OutboxFlush(_Command):
    """Publish one batch of up to `max_events` outbox events to the kernel's sinks;
    zeros while another process publishes (it holds the outbox lock)."""

    type: Literal["outbox.flush"] = "outbox.flush"
    max_events: int = Field(default=500, ge=1, le=_INT64)


class OutboxReplayDead(_Command):
    """Put up to `max_events` dead-lettered events back for delivery."""

    type: Literal["outbox.replay_dead"] = "outbox.replay_dead"
    max_events: int = Field(default=1000, ge=1, le=_INT64)


Command = Annotated[
    RunCreate
    | RunCancel
    | RunResume
    | RunRerunFrom
    | RunRetryCompensations
    | JobExecute
    | TimersFire
    | LeaseReapStale
    | RunReapStuck
    | RunAdoptOrphans
    | OutboxFlush
    | OutboxReplayDead,
    Field(discriminator="type"),
]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunCreated(_Result):
    workflow_id: str
    created: bool


class RunCancelled(_Result):
    cancelled: list[str]


class RunResumed(_Result):
    woken: list[str]
    workflow_id: str | None = None  # the token's run, for tokens


class JobExecuted(_Result):
    status: str  # the run's status after the job
    ghost: bool = False  # the run was cancelled under the job; its late result was discarded
    error: str | None = None


class Woken(_Result):
    woken: list[str]


class CompensationsRetried(_Result):
    workflow_id: str
    retried: list[str]  # the keys of the compensations to be tried again


class Reaped(_Result):
    count: int
    runs: list[str] = []


class OutboxFlushed(_Result):
    delivered: int
    failed: int
    dead: int


class Replayed(_Result):
    count: int


CommandResult = (
    RunCreated
    | RunCancelled
    | RunResumed
    | JobExecuted
    | Woken
    | CompensationsRetried
    | Reaped
    | OutboxFlushed
    | Replayed
)
