"""The wire protocol between an orchestrator and a tenant, version 1.

One invocation is one ``POST`` of an `Invocation` (JSON), signed with
``X-Tether-Timestamp`` and ``X-Tether-Signature`` (``sha256=`` + hex
HMAC-SHA256 of ``timestamp + "." + body``, `tether.kernel.sign`), and
``X-Tether-Protocol: 1``. The tenant answers 200 with newline-delimited JSON
(``application/x-ndjson``), one `Line` each:

- ``{"type": "step", "step": {...}}`` as soon as a step (or a recorded value,
  or a compensation) completes on the tenant, before the body goes on;
- ``{"type": "event" | "state" | "start_child", ...}`` for what the body
  writes besides steps (events, durable state, detached children);
- last, ``{"type": "answer", "answer": {...}}``: the run's status after this
  invocation, or ``{"type": "aborted", "reason": ...}`` when the deadline came
  first.

Refusals are JSON ``{"error": {"code", "message", "details"}}`` with a status:
401 (signature missing, bad, stale or replayed), 400 (invalid request), 404
(workflow not served here), 408 (deadline passed on arrival), 409 (workflow
version not served: ``details.versions``), 426 (protocol version not spoken:
``details.supported``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOLS",
    "Answer",
    "Invocation",
    "Journal",
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
    deadline: float  # unix seconds: the tenant stops working on it then
    # "compensate": the run was cancelled with compensation; replay the body to learn
    # the compensations of its completed steps and run them (answer: compensated,
    # compensation_failed, or cancelled when there were none)
    mode: Literal["run", "compensate"] = "run"
    tenant: TenantMeta = TenantMeta()
    run: RunMeta = RunMeta()


class Waitpoint(BaseModel):
    """What the body waits on: the orchestrator parks the run on it with tether's waits.

    `name` is the signal name, the event type, the token id or the child run id;
    `due_at` the timer's due time or the wait's timeout; a child names its
    `workflow` and carries its `input` (JSON text).
    """

    key: str
    kind: Literal["signal", "event", "token", "sleep", "child"]
    name: str | None = None
    match: str | None = None  # JSON object: payload fields an event must equal
    due_at: datetime | None = None
    workflow: str | None = None
    input: str | None = None


class Answer(BaseModel):
    """How the invocation ended, with the journal as the tenant left it."""

    status: Status
    output: str | None = None  # JSON text of a completed run's result
    error: dict[str, Any] | None = None  # {"type", "module", "message", ...}
    waitpoints: list[Waitpoint] = []
    journal: Journal = Journal()


class Line(BaseModel):
    """One line of the tenant's streamed answer."""

    type: Literal["step", "event", "state", "start_child", "answer", "aborted"]
    step: JournalStep | None = None
    event: dict[str, Any] | None = None  # {"type", "message", "detail"}
    state: str | None = None  # JSON text
    child: Waitpoint | None = None
    answer: Answer | None = None
    reason: str | None = None
