"""The orchestrator's record of a tenant's lines, and the journal it sends back.

A tenant names its steps by tether's own rules (``name``, ``name#2``,
``name@key``, ``compensate:name``); the orchestrator records each under exactly
that key, through the drive's owner fence. So a line delivered twice (a
retrying proxy, a tenant that sent it again) finds its step recorded and is a
no-op, and the body's own second call of a step is never answered from it.

Attempts are recorded as a store records them in-process: a step's ``attempt``
line marks it running (one more attempt), a failed attempt marks it failed
(`final` for good), its ``step`` line completes it. The journal carries the
steps that did not complete (`Journal.attempts`), so the tenant's count goes on
from them across invocations: the retry policy's limit and its
``interrupted_reruns`` hold, and a step that failed for good is not run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from .._durations import due_after, due_at
from ..clock import Clock
from ..serde import load_json
from ..store import (
    Fence,
    NewEvent,
    NewWait,
    StepRow,
    StepStatus,
    Store,
    WaitKind,
    WaitRow,
    WaitStatus,
)
from ._errors import RemoteWorkflowError
from ._journal import RESERVED
from ._wire import Journal, JournalAttempt, JournalStep, JournalWait, Waitpoint

__all__ = ["ACCEPTS", "Recorder", "journal_of"]

# what this orchestrator records beyond the first release: line types ("attempt",
# "wait"), and the events and the state on a recorded value's line ("value_events",
# "value_state")
ACCEPTS = ("attempt", "wait", "value_events", "value_state")

# tells the run's listeners (`on_event`) of an event once it is recorded
Notify = Callable[[str, str | None, Any], None]
# tells the drive of a state recorded from a value's line (its JSON text, its seq)
KeepState = Callable[[str, int | None], None]


def _quiet(type_: str, message: str | None, detail: Any) -> None:
    """No listener."""


class Recorder:
    """Records one invocation's lines for run `fence.workflow_id`; `rows` are its
    steps as they stood when the invocation was sent. Each event it records goes to
    `notify` as an in-process drive emits it (a line delivered twice: once)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        fence: Fence,
        rows: Iterable[StepRow],
        notify: Notify = _quiet,
        keep_state: KeepState | None = None,
    ) -> None:
        self._store, self._clock, self._fence = store, clock, fence
        self._steps = {r.key: r for r in rows}
        self._notify = notify
        self._keep_state = keep_state

    async def completed(self, step: JournalStep) -> None:
        """A step (or recorded value, or compensation) the tenant completed; its result,
        its events' details and the state it carries were checked as JSON the store
        keeps (`parse_line`), and are recorded as the text they came as (not parsed
        again)."""
        self._check(step.key)
        row = self._mine(step.key, step.idempotency_key)
        if row is not None and row.status is StepStatus.COMPLETED:
            return  # delivered twice: recorded once
        if step.value:
            await self._value(step)
            return
        if row is None or row.status is not StepStatus.RUNNING:
            row = await self._start(step.key, step.idempotency_key)  # no attempt line came
        events = [self._event(e) for e in step.events or ()]
        at = self._clock.now()
        await self._store.complete_step(
            self._fence,
            step.key,
            result=step.result,
            at=at,
            event=NewEvent("step.completed", step.key, f'{{"attempt":{row.attempts}}}'),
            rows=tuple(events),
        )
        self._steps[step.key] = replace(
            row, status=StepStatus.COMPLETED, result=step.result, completed_at=at, updated_at=at
        )
        self._notify("step.completed", step.key, {"attempt": row.attempts})
        for e in events:
            self._notify(e.type, e.message, None if e.detail is None else load_json(e.detail))

    async def _value(self, step: JournalStep) -> None:
        """A recorded value, as a drive records one: with the state and the events it
        carries (those of a ``wf.update_state``, a ``wf.append_event``) in the same
        write, so they are recorded once; its listeners told after that write."""
        events = [self._event(e) for e in step.events or ()]
        if step.state is not None:  # as in-process: the update's event goes with it
            events.insert(0, NewEvent("state.updated"))
        at = self._clock.now()
        seq = await self._store.save_value(
            self._fence, step.key, step.result, at, state=step.state, events=events
        )
        self._steps[step.key] = StepRow(
            self._fence.workflow_id, step.key, step.key, StepStatus.COMPLETED, 1, None,
            step.result, None, at, at, at, seq or None,
        )  # fmt: skip
        if step.state is not None and self._keep_state is not None:
            self._keep_state(step.state, seq)  # as a "state" line's `write_state_now` does
        for e in events:
            self._notify(e.type, e.message, None if e.detail is None else load_json(e.detail))

    async def attempt(self, attempt: JournalAttempt) -> None:
        """An attempt the tenant started (before its function ran) or that failed."""
        key, ikey = attempt.key, attempt.idempotency_key
        self._check(key)
        row = self._mine(key, ikey)
        if row is not None and _seen(row, attempt):
            return  # delivered twice, or older than what is recorded
        if attempt.status == "running":
            await self._start(key, ikey)
            return
        if row is None or row.status is not StepStatus.RUNNING:
            row = await self._start(key, ikey)
        error = _error_text(attempt.error)
        what = "step.failed" if attempt.final else "step.retrying"
        await self._store.fail_step(
            self._fence,
            key,
            error=error,
            final=attempt.final,
            at=self._clock.now(),
            event=NewEvent(what, key, json.dumps({"attempt": row.attempts})),
        )
        self._steps[key] = replace(row, status=StepStatus.FAILED, error=error)
        self._notify(what, key, {"attempt": row.attempts})

    async def token(self, wp: Waitpoint) -> WaitRow:
        """Register the token the tenant's body created, so that it can be completed
        before the body waits on it (as in-process)."""
        if wp.kind != "token" or not wp.name:
            raise RemoteWorkflowError(
                self._fence.workflow_id,
                {"type": "ProtocolError", "message": f"a wait line for a {wp.kind}, not a token"},
            )
        now = self._clock.now()
        due = due_after(now, wp.timeout) if wp.timeout is not None else wp.due_at
        due = None if due is None else due_at(due)
        wait = NewWait(f"token:{wp.name}", WaitKind.TOKEN, None, None, due, wp.name)
        return await self._store.register_wait(self._fence, wait, now)

    def _mine(self, key: str, idempotency_key: str | None) -> StepRow | None:
        row = self._steps.get(key)
        return row if row is not None and row.idempotency_key == idempotency_key else None

    async def _start(self, key: str, idempotency_key: str | None) -> StepRow:
        known = self._mine(key, idempotency_key)
        n = 1 if known is None else known.attempts + 1
        row = await self._store.start_step(
            self._fence,
            key,
            idempotency_key=idempotency_key,
            at=self._clock.now(),
            event=NewEvent("step.started", key, f'{{"attempt":{n}}}'),
        )
        self._steps[key] = row
        self._notify("step.started", key, {"attempt": row.attempts})
        return row

    def _event(self, event: dict[str, Any]) -> NewEvent:
        """An event a step appended, checked: a type, a message, its detail JSON text."""
        kind, message, detail = event.get("type"), event.get("message"), event.get("detail")
        ok = isinstance(kind, str) and kind and isinstance(message, str | None)
        if ok and (detail is None or isinstance(detail, str)):
            return NewEvent(str(kind), message, detail)
        raise RemoteWorkflowError(
            self._fence.workflow_id,
            {"type": "ProtocolError", "message": f"not an event of a step: {event!r}"[:300]},
        )

    def _check(self, key: str) -> None:
        if key in RESERVED:
            raise RemoteWorkflowError(
                self._fence.workflow_id,
                {"type": "ProtocolError",
                 "message": f"the tenant sent a step under {key!r}, a key of the orchestrator's"},
            )  # fmt: skip


def _seen(row: StepRow, attempt: JournalAttempt) -> bool:
    """Whether `row` already records `attempt` (or something later)."""
    if row.status is StepStatus.COMPLETED or row.attempts > attempt.attempts:
        return True
    if row.attempts < attempt.attempts:
        return False
    return attempt.status == "running" or row.status is StepStatus.FAILED


def _error_text(error: str | None) -> str:
    """The failure as JSON text (what a store records), whatever the tenant sent."""
    if error is not None:
        try:
            json.loads(error)
            return error
        except ValueError:
            pass
    return json.dumps({"type": "Exception", "message": error or "failed on the tenant"})


def journal_of(steps: Iterable[StepRow], waits: Iterable[WaitRow]) -> Journal:
    """A run's journal as recorded: completed steps, compensations, the steps started
    or failed but not completed, and the waits that are no longer pending. The
    orchestrator's own steps (`RESERVED`) are not the tenant's and are left out."""
    rows = [s for s in steps if s.key not in RESERVED]
    done = [
        JournalStep(
            key=s.key,
            name=s.key[: -len(s.idempotency_key) - 1] if s.idempotency_key else s.key,
            result=s.result or "null",
            idempotency_key=s.idempotency_key,
            attempts=max(1, s.attempts),
        )
        for s in rows
        if s.status is StepStatus.COMPLETED
    ]
    attempts = [
        JournalAttempt(
            key=s.key, status="running" if s.status is StepStatus.RUNNING else "failed",
            attempts=max(1, s.attempts),
            idempotency_key=s.idempotency_key, error=s.error,
        )
        for s in rows
        if s.status is not StepStatus.COMPLETED
    ]  # fmt: skip
    journal_waits = [
        JournalWait.model_validate(
            {"key": w.key, "kind": w.kind.value, "status": w.status.value, "payload": w.payload}
        )
        for w in waits
        if w.status is not WaitStatus.PENDING
    ]
    return Journal(
        steps=[s for s in done if not s.key.startswith("compensate:")],
        waits=journal_waits,
        compensations=[s for s in done if s.key.startswith("compensate:")],
        attempts=attempts,
    )
