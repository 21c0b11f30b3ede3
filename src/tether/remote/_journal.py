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
record what it finished. To an orchestrator that accepts them, `start_step`
and `fail_step` send the attempt the same way (before the step's function
runs, and before a retry or the failure goes on), and a token the body creates
is sent at once, so the orchestrator knows it before the body waits on it.

Attempts made in earlier invocations come with the journal (its `attempts`):
a step's count goes on from them, as it does from a store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from .._failure import encode_error
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
from ._errors import RemoteTooLargeError
from ._wire import MAX_BODY, JournalAttempt, JournalStep, Line, Waitpoint

__all__ = ["RESERVED", "JournalHost", "JournalStore", "Send"]

# the keys of the orchestrator's own steps in a remote run's record: a tenant's step or
# recorded value may not take one
RESERVED = frozenset(
    {"remote.tenant", "remote.compensations", "compensate:remote.tenant",
     "compensate:remote.compensations"}
)  # fmt: skip

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

    def __init__(
        self,
        workflow_id: str,
        send: Send,
        *,
        prior: Sequence[JournalAttempt] = (),
        accepts: Sequence[str] = (),
        room: int | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self._send = send
        self._accepts = frozenset(accepts)
        # bytes the next invocation may grow by before a tenant refuses it (None: not
        # counted); each step completed here goes back in its journal
        self._room = room
        # attempts so far, from the journal (earlier invocations) and this invocation
        self._attempts: dict[str, int] = {a.key: a.attempts for a in prior}
        self._idempotency: dict[str, str | None] = {a.key: a.idempotency_key for a in prior}
        self.waits: dict[str, WaitRow] = {}  # registered during this invocation
        self.children: dict[str, Waitpoint] = {}  # child run id -> what to start

    # -- steps ----------------------------------------------------------------------

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        _check_free(key)
        if self._idempotency.get(key, idempotency_key) != idempotency_key:
            self._attempts.pop(key, None)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        self._idempotency[key] = idempotency_key
        if "attempt" in self._accepts:  # counted on the orchestrator before fn runs
            attempt = JournalAttempt(
                key=key, status="running", attempts=attempts, idempotency_key=idempotency_key
            )
            await self._send(Line(type="attempt", attempt=attempt))
        return StepRow(
            self.workflow_id, key, key, StepStatus.RUNNING, attempts, idempotency_key,
            None, None, at, None, at,
        )  # fmt: skip

    async def complete_step(
        self, fence: Fence, key: str, *, result: str, rows: Sequence[object] = (), **_: object
    ) -> None:
        idem = self._idempotency.get(key)
        name = key[: -len(idem) - 1] if idem is not None else key
        # the events the step appended go with it, as a store writes them with it
        events = [_event(r) for r in rows if isinstance(r, NewEvent)]
        step = JournalStep(
            key=key,
            name=name,
            result=result,
            idempotency_key=idem,
            attempts=self._attempts.get(key, 1),
            events=events or None,
        )
        try:
            self._spend(step, f"step {key!r}")
        except RemoteTooLargeError as exc:  # for good: its next attempt returns as much
            await self.fail_step(fence, key, error=encode_error(exc, retryable=False), final=True)
            raise
        await self._send(Line(type="step", step=step))

    def _spend(self, step: JournalStep, what: str) -> None:
        """Count `step` against the room left in the next invocation, which carries it
        back; `RemoteTooLargeError` before it is sent if it does not fit (the run could
        never be invoked again: better now, saying why, than at its next invocation)."""
        if self._room is None:
            return
        # as the journal has it: without the events and the state the value's line carried
        size = len(step.model_dump_json(exclude={"events", "state"}).encode())
        if size > self._room:
            limit = MAX_BODY
            raise RemoteTooLargeError.of(
                f"{what} of run {self.workflow_id!r} returned {len(step.result):,} "
                "characters of JSON: with it, the run's next invocation",
                limit - self._room + size,
                limit,
            )
        self._room -= size

    async def fail_step(
        self, fence: Fence, key: str, *, error: str, final: bool, **_: object
    ) -> None:
        """A failed attempt goes to the orchestrator (if it accepts it) before the body
        goes on: it counts towards the step's attempts, and a step that failed for
        good is answered with its error on every later replay, never run again."""
        if "attempt" not in self._accepts:
            return
        attempt = JournalAttempt(
            key=key,
            status="failed",
            attempts=self._attempts.get(key, 1),
            idempotency_key=self._idempotency.get(key),
            error=error,
            final=final,
        )
        await self._send(Line(type="attempt", attempt=attempt))

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
        _check_free(key)
        if state is not None:  # the orchestrator records "state.updated" with the state
            events = [e for e in events if e.type != "state.updated"]
        together = "value_events" in self._accepts and bool(events)
        with_state = state is not None and "value_state" in self._accepts
        # the events and the state in the value's own line: recorded with it in one
        # write, so a cut cannot leave them recorded without the key that marks them
        # written (a resume would write them a second time)
        step = JournalStep(
            key=key,
            name=key,
            result=value,
            value=True,
            events=[_event(e) for e in events] if together else None,
            state=state if with_state else None,
        )
        self._spend(step, f"recorded value {key!r}")
        # to an orchestrator of an earlier release, a line each, before the value's: lost
        # with the line after it, it is sent again by the next invocation
        if state is not None and not with_state:
            await self.set_state(fence, state, at, NewEvent("state.updated"))
        if not together:
            await self.append_events(fence, events, at)
        await self._send(Line(type="step", step=step))

    # -- waits ----------------------------------------------------------------------

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        row = WaitRow(
            wait.wait_id or wait.key, self.workflow_id, wait.key, wait.kind, wait.name,
            wait.match, WaitStatus.PENDING, None, wait.due_at, at, None,
        )  # fmt: skip
        self.waits[wait.key] = row
        if row.kind is WaitKind.TOKEN and "wait" in self._accepts:
            # a token exists once created: the orchestrator registers it now, so it can
            # be completed before the body waits on it
            await self._send(Line(type="wait", wait=self.waitpoint(wait.key)))
        return row

    def waitpoint(self, key: str) -> Waitpoint:
        """The waitpoint the orchestrator parks on for the pending wait `key`."""
        row = self.waits[key]
        child = self.children.get(row.name or "") if row.kind is WaitKind.RUN else None
        if child is not None:
            return child.model_copy(update={"key": key})
        name = row.id if row.kind is WaitKind.TOKEN else row.name  # a token by its id
        # the timeout also as a duration: the orchestrator's clock may not be the tenant's
        timeout = (
            None if row.due_at is None else max(0.0, (row.due_at - row.created_at).total_seconds())
        )
        return Waitpoint.model_validate(
            {"key": key, "kind": _WAIT_KINDS[row.kind], "name": name, "match": row.match,
             "due_at": row.due_at, "timeout": timeout}
        )  # fmt: skip

    # -- state and events -------------------------------------------------------------

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        await self._send(Line(type="state", state=state))

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        for e in events:
            await self._send(Line(type="event", event=_event(e)))

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


def _event(e: NewEvent) -> dict[str, Any]:
    return {"type": e.type, "message": e.message, "detail": e.detail}


def _check_free(key: str) -> None:
    if key in RESERVED:
        raise InvalidArgumentError(
            f"a remote workflow cannot record a step or value under {key!r}: the "
            f"orchestrator records its own steps under {sorted(RESERVED)}; give it "
            "another name"
        )


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
        self, defn: WorkflowDef, input: Any, workflow_id: str, parent_id: str, *,
        detached: bool, budget: str | None = None,
    ) -> None:  # fmt: skip
        if budget is not None:
            raise InvalidArgumentError(
                "a remote workflow cannot give a child run an AI budget (budget=): declare "
                "it on the child's workflow in the orchestrator's App"
            )
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
