"""Waiting inside a workflow: events, signals, tokens, timers, child runs, recorded values.

A wait registers a waitpoint under a key that is the same on every replay
(its kind and name plus an occurrence number, or a key you give). If the
waitpoint is already resolved the wait returns its payload at once; if not,
the wait raises `Suspend`, which unwinds the workflow function so the engine
can park the run and free the process. Resolving the waitpoint later makes
the run runnable; replay reaches the same wait and gets the payload.

The waitpoints already resolved when a drive starts are loaded with its
steps (`RunState.waits`): a replay answers them from memory and writes
nothing, so resuming a run costs the same however many waits it went through.
"""

from __future__ import annotations

import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from ._control import Suspend
from ._durations import check_seconds, due_after, due_at
from ._names import check_name
from ._results import recorded_as
from ._run_state import RunState
from ._runtime import Runtime
from .definition import WorkflowDef
from .errors import (
    ChildRunError,
    InvalidArgumentError,
    RunCancelledError,
    WaitPayloadError,
    WaitTimeout,
    explain_validation,
)
from .serde import check_type, dump_json, load_json, return_type_of, type_name
from .store import NewEvent, NewWait, StepRow, StepStatus, WaitKind, WaitRow, WaitStatus

__all__ = ["MISSING", "Host", "Waits"]

MISSING: Any = object()


class Host(Protocol):
    """What a workflow needs from the App that runs it, to start and drive children."""

    async def create_child(
        self, defn: WorkflowDef, input: Any, workflow_id: str, parent_id: str, *,
        detached: bool, budget: str | None = None,
    ) -> None:  # fmt: skip
        """Create the child run (once), with its own AI `budget` (JSON) if given; a
        detached one is also set going."""
        ...

    async def drive_child(self, workflow_id: str) -> None: ...


def _seconds(what: str, value: float | None) -> float | None:
    return None if value is None else check_seconds(what, value)


def _check_key(key: object) -> None:
    """A wait's own key names its waitpoint in an indexed column: "" does not fall back
    to the occurrence (as None does) but is refused, as a key the database cannot hold."""
    if key is not None:
        check_name("wait key", key)


def _payload(row: WaitRow, default: Any, tp: Any = None) -> Any:
    """The wait's answer, validated into `tp` when the wait declared one (the first
    time and on every replay alike); a timeout's `default` is returned as given."""
    if row.status is WaitStatus.TIMED_OUT:
        return default
    if tp is None:
        return load_json(row.payload)
    try:
        return load_json(row.payload, tp)
    except ValidationError as exc:
        raise WaitPayloadError(
            row.workflow_id, row.key, type_name(tp), explain_validation(exc)
        ) from None


def _check_answer_type(tp: Any, what: str) -> None:
    """Refuse a `result_type` no payload can be read as, before the wait registers."""
    check_type(tp, what, "; or declare none and take the payload as plain JSON")


def _check_child_input(defn: WorkflowDef, input: Any) -> None:
    """Refuse a child's input that its function cannot take, as `app.run` does: an input
    to a workflow without the parameter was dropped unseen, and a missing one ran the
    child with None for a parameter that has no default."""
    if input is not MISSING and not defn.takes_input:
        raise InvalidArgumentError(
            f"workflow {defn.name!r} takes no input (its function has one parameter, the "
            "Workflow); drop the input from the child call or add a parameter"
        )
    if input is MISSING and defn.input_required:
        raise InvalidArgumentError(
            f"workflow {defn.name!r} takes an input and the child call passes none; "
            "pass one: wf.child(workflow, input)"
        )


def _refuse_any_of(match: dict[str, Any] | None) -> None:
    """A set in a match filter reads as "any of these", but a filter compares each field
    for equality, and a set is written as a list in no set order: such a wait matched
    no event, silently, until its timeout."""
    for field, value in (match or {}).items():
        if isinstance(value, set | frozenset):
            raise InvalidArgumentError(
                f"match[{field!r}] is a set, but a match filter compares each field for "
                "equality with the event's value (it has no 'any of'); match one value, or "
                "wait with no match for that field and check it in the workflow"
            )


class Waits:
    """The waiting verbs of one run's context (see `Workflow.wait_for_event` and friends)."""

    def __init__(self, rt: Runtime, run: RunState, host: Host | None) -> None:
        self._rt = rt
        self._run = run
        self._host = host
        self._given: set[str] = set()  # the wait keys given by the caller, this drive
        self._numbered: set[str] = set()  # the keys tether numbered (``base#n``), this drive

    def _key_of(self, key: str | None, base: str) -> str:
        """The waitpoint's key: `key` as given, else the next occurrence of `base`
        (``base#n``). A given key that is also a numbered one of this run is refused,
        whichever came first: both waits were one waitpoint, and the later returned
        the earlier's answer at once (``sleep_until(..., key="sleep#2")`` made the
        second ``wf.sleep`` return without sleeping, a second signal wait returned
        the first's payload)."""
        if key is not None:
            self._given.add(key)
            if key not in self._numbered:
                return key
        else:
            key = self._run.next_key(base)
            self._numbered.add(key)
            if key not in self._given:
                return key
        raise InvalidArgumentError(
            f"wait key {key!r} of run {self._run.workflow_id!r} is given to one wait and is "
            f"also the key tether numbers another by (its name, '#', its occurrence): the "
            f"two would share one waitpoint and the later return the earlier's answer. "
            f"Give a key that does not end in '#<number>', e.g. {key.replace('#', '-')!r}"
        )

    async def _wait(self, wait: NewWait, default: Any) -> WaitRow:
        """The resolved waitpoint (from the record if it was resolved when this drive
        started, else registered now); `Suspend` while it is pending."""
        run = self._run
        row = run.waits.get(wait.key)
        if run.compensating and row is None:
            # a replay to learn the compensations goes on past the waits the run passed
            # (stopping at the first left the steps after it undone), and stops here
            raise RunCancelledError(run.workflow_id)
        if not run.compensating:
            run.check_budget(self._rt.clock.now())
        if row is None:
            store, clock = self._rt.store, self._rt.clock
            row = await run.register(
                wait.key, lambda: store.register_wait(run.fence, wait, clock.now())
            )
        # its answer is another wait's (a remote tenant's journal carries kinds, not names)
        if row.kind is not wait.kind or row.name not in (None, wait.name):
            raise InvalidArgumentError(
                f"wait key {wait.key!r} already names a {row.kind.value} wait"
                f"{'' if row.name is None else f' for {row.name!r}'} in run {run.workflow_id!r}; "
                "give each wait a key of its own (or none: waits are numbered by occurrence)"
            )
        if row.status is WaitStatus.PENDING:
            run.blocked_on.append(row.key)
            raise run.unwind(Suspend(row.key))
        if row.status is WaitStatus.CANCELLED:
            raise RunCancelledError(run.workflow_id)
        if row.status is WaitStatus.TIMED_OUT and default is MISSING:
            raise WaitTimeout(row.key, row.kind.value)
        return row

    def _due(self, timeout: float | None) -> datetime | None:
        seconds = _seconds("timeout", timeout)
        return None if seconds is None else due_after(self._rt.clock.now(), seconds)

    async def wait_for_event(
        self,
        event_type: str,
        match: dict[str, Any] | None,
        timeout: float | None,
        default: Any,
        key: str | None,
        result_type: Any = None,
    ) -> Any:
        check_name("event_type", event_type)
        _check_key(key)
        _check_answer_type(result_type, f"wait_for_event({event_type!r})")
        if match is not None and not isinstance(match, dict):
            raise InvalidArgumentError("match must be a dict of payload field -> value")
        _refuse_any_of(match)
        wait = NewWait(
            self._key_of(key, f"event:{event_type}"),
            WaitKind.EVENT,
            event_type,
            None if match is None else dump_json(match, what="the event match filter"),
            self._due(timeout),
        )
        return _payload(await self._wait(wait, default), default, result_type)

    async def wait_for_signal(
        self,
        name: str,
        timeout: float | None,
        default: Any,
        key: str | None,
        result_type: Any = None,
    ) -> Any:
        check_name("signal name", name)
        _check_key(key)
        _check_answer_type(result_type, f"wait_for_signal({name!r})")
        wait = NewWait(
            self._key_of(key, f"signal:{name}"),
            WaitKind.SIGNAL,
            name,
            None,
            self._due(timeout),
        )
        return _payload(await self._wait(wait, default), default, result_type)

    async def create_token(self, timeout: float | None) -> str:
        key = self._run.next_key("token")
        token = await self.recorded(key, lambda: _uuid.uuid4().hex)
        wait_key = f"token:{token}"
        if wait_key not in self._run.waits:  # registered (and resolved) before: nothing to do
            await self._rt.store.register_wait(
                self._run.fence,
                NewWait(wait_key, WaitKind.TOKEN, None, None, self._due(timeout), token),
                self._rt.clock.now(),
            )
        return str(token)

    async def wait_for_token(
        self, token: str, timeout: float | None, default: Any, result_type: Any = None
    ) -> Any:
        if not isinstance(token, str) or not token:
            raise InvalidArgumentError(f"token must be a token id from create_token, got {token!r}")
        check_name("token", token)
        _check_answer_type(result_type, "wait_for_token")
        wait = NewWait(f"token:{token}", WaitKind.TOKEN, None, None, self._due(timeout), token)
        return _payload(await self._wait(wait, default), default, result_type)

    async def sleep(self, seconds: float) -> None:
        secs = check_seconds("sleep seconds", seconds)  # None too: a sleep has a length
        key = self._key_of(None, "sleep")
        due = due_after(self._rt.clock.now(), secs)
        await self._wait(NewWait(key, WaitKind.TIMER, None, None, due), MISSING)

    async def sleep_until(self, when: datetime, key: str | None = None) -> None:
        """A timer due at `when`, held to the years a store keeps (`due_at`): one in the
        last moments of the year 9999 (``datetime.max``) is recorded due at `LAST_DUE`."""
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise InvalidArgumentError(
                f"sleep_until needs a timezone-aware datetime, got {when!r}; "
                "pass e.g. datetime(2026, 1, 1, tzinfo=timezone.utc)"
            )
        if key is not None:
            check_name("sleep key", key)
        key = self._key_of(key, "sleep")
        await self._wait(NewWait(key, WaitKind.TIMER, None, None, due_at(when)), MISSING)

    async def child(
        self, workflow: Callable[..., Awaitable[Any]], input: Any, workflow_id: str | None,
        budget: str | None = None,
    ) -> Any:  # fmt: skip
        defn, cid = self._child_of(workflow, input, workflow_id)
        if workflow_id is None:
            cid = self._this_rounds(cid)
        wait = NewWait(f"child:{cid}", WaitKind.RUN, cid)
        if wait.key in self._run.waits:  # it had ended when this drive started
            row = await self._wait(wait, MISSING)
        else:  # create it (once) and drive it
            host = self._require_host()
            await host.create_child(
                defn, input, cid, self._run.workflow_id, detached=False, budget=budget
            )
            try:
                row = await self._wait(wait, MISSING)
            except Suspend:
                # (by key: a sibling may have added its own wait since)
                self._run.blocked_on.remove(wait.key)
                await host.drive_child(cid)
                row = await self._wait(wait, MISSING)
        outcome = load_json(row.payload) or {}
        if outcome.get("status") != "completed":
            raise ChildRunError(cid, str(outcome.get("status")), outcome.get("error"))
        return recorded_as(
            dump_json(outcome.get("output"), what="child output"),
            return_type_of(defn.fn),
            what=f"child run {cid!r} of run {self._run.workflow_id!r}",
            since="the child ran",
            way_out=f"resume run {self._run.workflow_id!r} with the code that started it, or "
            + (  # a pipeline says it in its own terms: it has no return annotation
                getattr(defn.fn, "__tether_returns_said__", None)
                or f"declare on workflow {defn.name!r} a return type the recorded value fits"
            ),
        )

    async def start_child(
        self, workflow: Callable[..., Awaitable[Any]], input: Any, workflow_id: str | None,
        budget: str | None = None,
    ) -> str:  # fmt: skip
        defn, cid = self._child_of(workflow, input, workflow_id)
        host = self._require_host()
        await host.create_child(
            defn, input, cid, self._run.workflow_id, detached=True, budget=budget
        )
        return cid

    def _child_of(
        self, workflow: Callable[..., Awaitable[Any]], input: Any, workflow_id: str | None
    ) -> tuple[WorkflowDef, str]:
        """The child's definition and run id: `workflow_id` (checked before it names a
        run or a wait), or the parent's id and the child's occurrence. The input is
        checked against the workflow's parameters first, as `app.run` checks it."""
        defn = WorkflowDef.of(workflow)
        if workflow_id is not None:
            check_name("child workflow_id", workflow_id)
        _check_child_input(defn, input)
        return defn, workflow_id or f"{self._run.workflow_id}/{self._run.next_key(defn.name)}"

    def _this_rounds(self, cid: str) -> str:
        """The id of the child this call awaits in the run's current round: a rerun
        forgets what came after its step, children awaited there too, so such a call
        makes a child of the round (``<id>@<attempt>``; the earlier rounds' children
        stay as they ended). A call the rerun kept finds the child it awaited then, as
        does one whose wait the rerun kept pending (a failed child taken up again)."""
        attempt = self._run.run.attempt
        ids = [cid, *(f"{cid}@{n}" for n in range(2, attempt + 1))]
        known = self._run.waits.keys() | self._run.pending
        return next((c for c in ids if f"child:{c}" in known), ids[-1])

    def _require_host(self) -> Host:
        if self._host is None:
            raise InvalidArgumentError(
                "child runs need a workflow run by an App (app.run / app.start), "
                "not a context from open_workflow"
            )
        return self._host

    # -- values recorded on first use ------------------------------------------------

    async def recorded(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()` recorded under `key` on first use; the recorded value after."""
        done = self._run.steps.get(key)
        if done is not None and done.status is StepStatus.COMPLETED:
            return load_json(done.result)
        text = dump_json(make(), what=f"recorded value {key!r}")
        await self.save(key, text)
        return load_json(text)

    async def save(
        self, key: str, text: str, *, state: str | None = None, events: Sequence[NewEvent] = ()
    ) -> int:
        """Record `text` as the completed step `key`, with the run's new `state` and
        `events` in the same transaction, and remember it for this drive's replay; its
        place in the run (`StepRow.seq`)."""
        now = self._rt.clock.now()
        run = self._run
        seq = await self._rt.store.save_value(run.fence, key, text, now, state=state, events=events)
        run.steps[key] = StepRow(
            run.workflow_id, key, key, StepStatus.COMPLETED, 1, None, text, None, now, now, now,
            seq or None,
        )  # fmt: skip
        return seq or 0

    async def now(self) -> datetime:
        text = await self.recorded(
            self._run.next_key("now"), lambda: self._rt.clock.now().isoformat()
        )
        return datetime.fromisoformat(text)

    async def random(self) -> float:
        return float(await self.recorded(self._run.next_key("random"), _random.random))

    async def uuid(self) -> str:
        return str(await self.recorded(self._run.next_key("uuid"), lambda: _uuid.uuid4().hex))
