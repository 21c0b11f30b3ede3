"""The wire protocol between an orchestrator and a tenant, version 1.

One invocation is one ``POST`` of an `Invocation` (JSON), signed with
``X-Tether-Timestamp`` and ``X-Tether-Signature`` (``sha256=`` + hex
HMAC-SHA256 of ``timestamp + "." + body``, `tether.kernel.sign`), and
``X-Tether-Protocol: 1``. The tenant answers 200 with newline-delimited JSON
(``application/x-ndjson``), one `Line` each:

- ``{"type": "step", "step": {...}}`` as soon as a step (or a recorded value,
  or a compensation) completes on the tenant, before the body goes on;
- ``{"type": "event" | "state" | "start_child", ...}`` for what the body
  writes besides steps (events, durable state, detached children); an event or
  a state the body writes once (``wf.append_event`` outside a step,
  ``wf.update_state``) goes instead in the line of the value that marks it
  written (its `JournalStep.events`, `JournalStep.state`) to an orchestrator
  that lists ``value_events``, ``value_state`` in ``accepts``;
- ``{"type": "attempt", "attempt": {...}}`` when a step starts an attempt (before
  its function runs) and when an attempt fails, and ``{"type": "wait", "wait":
  {...}}`` when the body creates a token: sent only to an orchestrator that
  lists them in the invocation's ``accepts`` (one of an earlier release records
  neither, and refuses a line type it does not know);
- last, ``{"type": "answer", "answer": {...}}``: the run's status after this
  invocation, or ``{"type": "aborted", "reason": ...}`` when the deadline came
  first.

Refusals are JSON ``{"error": {"code", "message", "details"}}`` with a status:
401 (signature missing, bad, stale or replayed), 400 (invalid request), 404
(workflow not served here), 408 (deadline passed on arrival), 409 (workflow
version not served: ``details.versions``), 426 (protocol version not spoken:
``details.supported``).

Compatibility within version 1: every field added since the first release is
optional, and a tenant ignores the fields it does not know. So an orchestrator
of a later release sends what an earlier tenant ignores (the run's `state`,
`accepts`, the journal's `attempts`) and reads a waitpoint's `due_at` when it
carries no `timeout`; a later tenant sends an earlier orchestrator none of the
line types it does not list in `accepts`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOLS",
    "Answer",
    "Invocation",
    "Journal",
    "JournalAttempt",
    "JournalStep",
    "JournalWait",
    "Line",
    "RunMeta",
    "TenantMeta",
    "Waitpoint",
]

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOLS: tuple[int, ...] = (1,)
PROTOCOL_HEADER = "X-Tether-Protocol"
# the largest invocation a tenant reads (a 413 above it); it carries the run's input,
# state and journal, so the orchestrator refuses to send more and the tenant fails the
# step whose result would make the next invocation larger. Not a public name: an
# orchestrator and a tenant of one release agree on it.
MAX_BODY = 32 * 1024 * 1024


def versions_text(versions: list[str | None]) -> str:
    """Workflow versions as a message names them; None is a workflow registered
    without version= (it was shown as ``[None]``, or as "versions None")."""
    return ", ".join("none (no version=)" if v is None else repr(v) for v in versions)


Status = Literal[
    "completed", "failed", "waiting", "cancelled", "compensated", "compensation_failed"
]


class JournalStep(BaseModel):
    """A completed step, recorded value or compensation: its key and JSON result."""

    key: str = Field(min_length=1)
    name: str = Field(min_length=1)
    result: str  # JSON text, exactly as recorded
    idempotency_key: str | None = None
    attempts: int = Field(default=1, ge=1)
    # True on a recorded value (``wf.now()``, a state update or event written once):
    # recorded as one; not sent for a step
    value: bool | None = None
    # the events the step appended while it ran ({"type", "message", "detail"}, the
    # detail JSON text), or on a value the events written with it (``wf.append_event``,
    # to an orchestrator that accepts "value_events"): recorded in the same write as
    # the step or value; not sent when there are none
    events: list[dict[str, Any]] | None = None
    # on the value of a ``wf.update_state``, to an orchestrator that accepts
    # "value_state": the run's new state (JSON text), recorded with the value and a
    # "state.updated" event in one write (to others it goes as a "state" line first)
    state: str | None = None


class JournalAttempt(BaseModel):
    """A step that started an attempt (``running``: cut short if no other line
    follows) or whose attempt failed (``failed``; `final`: for good), not completed.

    Recorded by the orchestrator as the step's row, and sent back in the journal's
    `attempts`, so attempts are counted across invocations as across processes: a
    retry limit holds, a step interrupted every time stops after the policy's
    ``interrupted_reruns``, and a step that failed for good is not run again (a
    replay raises its recorded error).
    """

    key: str = Field(min_length=1)
    status: Literal["running", "failed"]
    attempts: int = Field(default=1, ge=1)
    idempotency_key: str | None = None
    error: str | None = None  # JSON text of the failure, as recorded
    final: bool = False


class JournalWait(BaseModel):
    """A waitpoint that was resolved (or timed out, or was cancelled)."""

    key: str = Field(min_length=1)
    kind: Literal["event", "signal", "token", "timer", "run"]
    status: Literal["resolved", "timed_out", "cancelled"]
    payload: str | None = None  # JSON text


class Journal(BaseModel):
    """What the run has recorded so far: the tenant replays its body against it."""

    steps: list[JournalStep] = []
    waits: list[JournalWait] = []
    compensations: list[JournalStep] = []  # the ``compensate:<step>`` steps that ran
    attempts: list[JournalAttempt] = []  # steps started or failed, not completed


class TenantMeta(BaseModel):
    tenant: str | None = None
    project: str | None = None
    organisation: str | None = None


class RunMeta(BaseModel):
    attempt: int = 1
    tags: list[str] = []
    queue: str | None = None
    parent_id: str | None = None
    created_at: datetime | None = None
    generation: int = 0
    step_rule: int = 2  # how the run names its steps and waits (RunRow.step_rule)


class Invocation(BaseModel):
    """One request: drive run `run_id` of `workflow` from its journal."""

    protocol: int
    run_id: str = Field(min_length=1)
    workflow: str = Field(min_length=1)
    version: str | None = None
    invocation: int = Field(ge=1)
    input: str | None = None  # JSON text; None: the run has no input
    journal: Journal
    deadline: float = Field(allow_inf_nan=False)  # unix seconds: the tenant stops then
    # "compensate": the run was cancelled with compensation; replay the body to learn
    # the compensations of its completed steps and run them (answer: compensated,
    # compensation_failed, or cancelled when there were none)
    mode: Literal["run", "compensate"] = "run"
    tenant: TenantMeta = TenantMeta()
    run: RunMeta = RunMeta()
    # the run's durable state (JSON text) as recorded; None: not sent (an orchestrator
    # of an earlier release), the body then starts from a state of None
    state: str | None = None
    # the line types beyond the first release's that this orchestrator records
    # ("attempt", "wait"; a tenant sends no others), "value_events": it records the
    # events on a value's line (a tenant sends them to others as "event" lines), and
    # "value_state": it records the state on a value's line (to others: a "state" line)
    accepts: list[str] = []


class Waitpoint(BaseModel):
    """What the body waits on: the orchestrator parks the run on it with tether's waits.

    `name` is the signal name, the event type, the token id or the child run id;
    `due_at` the timer's due time or the wait's timeout on the tenant's clock, and
    `timeout` the same as seconds from when the tenant registered it (what an
    orchestrator uses when it is given: the two clocks need not agree); a child
    names its `workflow` and carries its `input` (JSON text).
    """

    key: str
    kind: Literal["signal", "event", "token", "sleep", "child"]
    name: str | None = None
    match: str | None = None  # JSON object: payload fields an event must equal
    due_at: datetime | None = None
    workflow: str | None = None
    input: str | None = None
    timeout: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _complete(self) -> Waitpoint:
        """What the orchestrator parks on must be there: a name to wait for, a timer's
        time, a child's workflow."""
        if self.kind == "sleep" and self.timeout is None and self.due_at is None:
            raise ValueError("a sleep waitpoint needs a timeout or a due_at")
        if self.kind != "sleep" and not self.name:
            raise ValueError(f"a {self.kind} waitpoint needs a name")
        if self.kind == "child" and not self.workflow:
            raise ValueError("a child waitpoint needs the workflow to start")
        if self.due_at is not None and self.due_at.utcoffset() is None:
            # compared with the orchestrator's aware clock, it failed the run with
            # "TypeError: can't subtract offset-naive and offset-aware datetimes"
            raise ValueError("a waitpoint's due_at needs a UTC offset (e.g. +00:00)")
        return self


class Answer(BaseModel):
    """How the invocation ended."""

    status: Status
    output: str | None = None  # JSON text of a completed run's result
    error: dict[str, Any] | None = None  # {"type", "module", "message", ...}
    waitpoints: list[Waitpoint] = []
    # empty from a tenant of this release: what the invocation completed went in lines
    # of their own. One of an earlier release repeated the whole journal here (the
    # orchestrator reads none of it), so a long run's answers grew with every invocation
    journal: Journal = Journal()


class Line(BaseModel):
    """One line of the tenant's streamed answer."""

    type: Literal["step", "attempt", "wait", "event", "state", "start_child", "answer", "aborted"]
    step: JournalStep | None = None
    attempt: JournalAttempt | None = None
    wait: Waitpoint | None = None  # a token created: the orchestrator registers it now
    event: dict[str, Any] | None = None  # {"type", "message", "detail"}
    state: str | None = None  # JSON text
    child: Waitpoint | None = None
    answer: Answer | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _carries(self) -> Line:
        """A line carries what its type names (an ``answer`` line its answer, ...)."""
        field = _CARRIES.get(self.type)
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"a {self.type!r} line needs its {field!r}")
        return self


_CARRIES = {
    "step": "step", "attempt": "attempt", "wait": "wait", "event": "event",
    "state": "state", "start_child": "child", "answer": "answer",
}  # fmt: skip
