"""The tenant's side of a drive: tether's own `Workflow` on a journal in memory.

A tenant keeps no database. Each invocation opens a `RunState` loaded from the
journal the orchestrator sent (completed steps and resolved waits, so replay
answers them from memory exactly as it does from a store) and gives the
workflow body an ordinary `tether.Workflow` whose store is a `JournalStore`:
the few store verbs a body reaches while it runs (start, complete or fail a
step; save a recorded value; register a wait; write state or events),
answered in memory. Everything else a store does (runs, queues, mutexes,
leases) belongs to the orchestrator and is refused with a clear error.

The one write that matters goes out at once: `complete_step` (and
`save_value`) hands the step's result to the response stream and returns only
once it was sent, so the body starts no new work before the orchestrator can
record what it finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from .._waits import MISSING
from ..definition import WorkflowDef
from ..errors import InvalidArgumentError
from ..serde import dump_json
from ..store import (
    Fence,
    NewEvent,
    NewWait,
    StepRow,
    StepStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
)
from ._wire import JournalStep, Line, Waitpoint

__all__ = ["JournalHost", "JournalStore", "Send"]

Send = Callable[[Line], Awaitable[None]]

_WAIT_KINDS = {
    WaitKind.SIGNAL: "signal",
    WaitKind.EVENT: "event",
    WaitKind.TOKEN: "token",
    WaitKind.TIMER: "sleep",
    WaitKind.RUN: "child",
}


class JournalStore:
    """The store verbs of one invocation's drive, kept in memory and streamed out.

    A verb takes the arguments of its `Store` verb and names only those it reads
    (the rest, such as the event and the rows a step attached, is the
    orchestrator's to record).
    """

    def __init__(self, workflow_id: str, send: Send) -> None:
        self.workflow_id = workflow_id
        self._send = send
        self._attempts: dict[str, int] = {}
        self._idempotency: dict[str, str | None] = {}
        self.completed: list[JournalStep] = []
        self.waits: dict[str, WaitRow] = {}  # registered during this invocation
        self.children: dict[str, Waitpoint] = {}  # child run id -> what to start

    # -- steps ----------------------------------------------------------------------

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        if self._idempotency.get(key, idempotency_key) != idempotency_key:
            self._attempts.pop(key, None)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        self._idempotency[key] = idempotency_key
        return StepRow(
            self.workflow_id, key, key, StepStatus.RUNNING, attempts, idempotency_key,
            None, None, at, None, at,
        )  # fmt: skip

    async def complete_step(self, fence: Fence, key: str, *, result: str, **_: object) -> None:
        idem = self._idempotency.get(key)
        name = key[: -len(idem) - 1] if idem is not None else key
        step = JournalStep(
            key=key,
            name=name,
            result=result,
            idempotency_key=idem,
            attempts=self._attempts.get(key, 1),
        )
        self.completed.append(step)
        await self._send(Line(type="step", step=step))

    async def fail_step(self, fence: Fence, key: str, **_: object) -> None:
        """A failed attempt stays on the tenant: a retry runs here, a final failure
        ends the body and is answered as the run's failure."""

    async def save_value(
        self,
        fence: Fence,
        key: str,
        value: str,
        at: datetime,
        *,
        state: str | None = None,
        events: Sequence[NewEvent] = (),
    ) -> None:
        # what the value carries goes first: lost with the line after it, it is sent
        # again by the next invocation, which replays the body up to here
        if state is not None:
            await self.set_state(fence, state, at, NewEvent("state.updated"))
        await self.append_events(fence, events, at)
        step = JournalStep(key=key, name=key, result=value)
        self.completed.append(step)
        await self._send(Line(type="step", step=step))

    # -- waits ----------------------------------------------------------------------

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        row = WaitRow(
            wait.wait_id or wait.key, self.workflow_id, wait.key, wait.kind, wait.name,
            wait.match, WaitStatus.PENDING, None, wait.due_at, at, None,
        )  # fmt: skip
        self.waits[wait.key] = row
        return row

    def waitpoint(self, key: str) -> Waitpoint:
        """The waitpoint the orchestrator parks on for the pending wait `key`."""
        row = self.waits[key]
        child = self.children.get(row.name or "") if row.kind is WaitKind.RUN else None
        if child is not None:
            return child.model_copy(update={"key": key})
        name = row.id if row.kind is WaitKind.TOKEN else row.name  # a token by its id
        return Waitpoint.model_validate(
            {"key": key, "kind": _WAIT_KINDS[row.kind], "name": name, "match": row.match,
             "due_at": row.due_at}
        )  # fmt: skip

    # -- state and events -------------------------------------------------------------

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        await self._send(Line(type="state", state=state))

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        for e in events:
            detail = {"type": e.type, "message": e.message, "detail": e.detail}
            await self._send(Line(type="event", event=detail))

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Any]:
        raise _unavailable("list_events")

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("__"):
            raise AttributeError(name)

        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise _unavailable(name)

        return refused


def _unavailable(verb: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"a remote workflow cannot use {verb!r} on the tenant: mutexes, leases, "
        "heartbeats and the run's history live in the orchestrator's database; use "
        "steps, waits, children and wf.update_state / wf.append_event"
    )


class JournalHost:
    """The `Host` of a tenant's workflow: a child run is started by the orchestrator,
    so creating one records what to start, and driving it is the orchestrator's job."""

    def __init__(self, store: JournalStore, send: Send) -> None:
        self._store = store
        self._send = send

    async def create_child(
        self, defn: WorkflowDef, input: Any, workflow_id: str, parent_id: str, *, detached: bool
    ) -> None:
        text = (
            None
            if input is MISSING
            else dump_json(
                defn.coerce_input(input),
                what=f"the input of child workflow {defn.name!r}",
                tp=defn.input_type,
            )
        )
        child = Waitpoint(
            key=f"child:{workflow_id}",
            kind="child",
            name=workflow_id,
            workflow=defn.name,
            input=text,
        )
        if detached:
            await self._send(Line(type="start_child", child=child))
        else:
            self._store.children[workflow_id] = child

    async def drive_child(self, workflow_id: str) -> None:
        """Nothing to do here: the orchestrator drives the child once it parks on it."""
