"""Waiting inside a workflow: events, signals, tokens, timers, child runs, recorded values.

A wait registers a waitpoint under a key that is the same on every replay
(its kind and name plus an occurrence number, or a key you give). If the
waitpoint is already resolved the wait returns its payload at once; if not,
the wait raises `Suspend`, which unwinds the workflow function so the engine
can park the run and free the process. Resolving the waitpoint later makes
the run runnable; replay reaches the same wait and gets the payload.
"""

from __future__ import annotations

import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from ._control import Suspend
from ._names import check_name
from ._results import load_result
from .clock import Clock
from .definition import WorkflowDef
from .errors import (
    ChildRunError,
    InvalidArgumentError,
    RunCancelledError,
    WaitTimeout,
    WorkflowTimeoutError,
)
from .serde import dump_json, load_json, return_type_of
from .store import Fence, NewWait, StepRow, StepStatus, Store, WaitKind, WaitRow, WaitStatus

__all__ = ["Host", "Suspend", "WaitsMixin"]

MISSING: Any = object()


class Host(Protocol):
    """What a workflow needs from the App that runs it, to start and drive children."""

    async def create_child(
        self, defn: WorkflowDef, input: Any, workflow_id: str, parent_id: str, *, detached: bool
    ) -> None:
        """Create the child run (once); a detached one is also set going."""
        ...

    async def drive_child(self, workflow_id: str) -> None: ...


_MAX_SECONDS = 100 * 366 * 24 * 3600.0  # a century: beyond it a datetime soon overflows


def _seconds(what: str, value: float | None) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= _MAX_SECONDS  # also refuses NaN
    ):
        raise InvalidArgumentError(
            f"{what} must be a number of seconds from 0 to {_MAX_SECONDS:.0f} (a century), "
            f"got {value!r}; pass a finite number such as 60"
        )
    return float(value)


class WaitsMixin:
    """The waiting half of `Workflow` (see its docstring)."""

    _store: Store
    _clock: Clock
    _fence: Fence
    _steps: dict[str, StepRow]
    _counters: dict[str, int]
    _blocked_on: list[str]
    _host: Host | None
    _compensating: bool
    _timeout: float | None
    _compute_before: float
    _exec_started: datetime

    @property
    def workflow_id(self) -> str:
        return self._fence.workflow_id

    def _executed(self) -> float:
        """Seconds this run has spent executing, parked time excluded."""
        return self._compute_before + (self._clock.now() - self._exec_started).total_seconds()

    def _check_budget(self) -> None:
        if self._timeout is not None and self._executed() > self._timeout:
            raise WorkflowTimeoutError(self.workflow_id, self._timeout)

    def _next_key(self, base: str) -> str:
        n = self._counters.get(base, 0) + 1
        self._counters[base] = n
        return f"{base}#{n}"

    async def _wait(self, wait: NewWait, default: Any) -> WaitRow:
        if self._compensating:
            raise RunCancelledError(self.workflow_id)
        self._check_budget()
        row = await self._store.register_wait(self._fence, wait, self._clock.now())
        if row.status is WaitStatus.PENDING:
            self._blocked_on.append(row.key)
            raise Suspend(row.key)
        if row.status is WaitStatus.CANCELLED:
            raise RunCancelledError(self.workflow_id)
        if row.status is WaitStatus.TIMED_OUT and default is MISSING:
            raise WaitTimeout(row.key, row.kind.value)
        return row

    def _due(self, timeout: float | None) -> datetime | None:
        seconds = _seconds("timeout", timeout)
        return None if seconds is None else self._clock.now() + timedelta(seconds=seconds)

    async def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict[str, Any] | None = None,
        timeout: float | None = None,
        default: Any = MISSING,
        key: str | None = None,
    ) -> Any:
        """The payload of the first event of `event_type` matching `match`.

        An event counts if it was sent after this run was created (events that
        arrive just before the wait registers are kept, not lost) and no other
        wait of this run took it. `match` names payload fields (dotted for
        nested ones) and the values they must equal.
        """
        check_name("event_type", event_type)
        if match is not None and not isinstance(match, dict):
            raise InvalidArgumentError("match must be a dict of payload field -> value")
        wait = NewWait(
            key or self._next_key(f"event:{event_type}"),
            WaitKind.EVENT,
            event_type,
            None if match is None else dump_json(match, what="the event match filter"),
            self._due(timeout),
        )
        row = await self._wait(wait, default)
        return default if row.status is WaitStatus.TIMED_OUT else load_json(row.payload)

    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | None = None,
        default: Any = MISSING,
        key: str | None = None,
    ) -> Any:
        """The payload of the next signal `name` sent to this run (kept if sent early)."""
        check_name("signal name", name)
        wait = NewWait(
            key or self._next_key(f"signal:{name}"), WaitKind.SIGNAL, name, None, self._due(timeout)
        )
        row = await self._wait(wait, default)
        return default if row.status is WaitStatus.TIMED_OUT else load_json(row.payload)

    async def create_token(self, timeout: float | None = None) -> str:
        """A completion token for an outside party (a person, a webhook) to complete by id."""
        key = self._next_key("token")
        token = await self._recorded(key, lambda: _uuid.uuid4().hex)
        await self._store.register_wait(
            self._fence,
            NewWait(f"token:{token}", WaitKind.TOKEN, None, None, self._due(timeout), token),
            self._clock.now(),
        )
        return str(token)

    async def wait_for_token(
        self, token: str, *, timeout: float | None = None, default: Any = MISSING
    ) -> Any:
        """The payload the token was completed with (at once if it already was).

        `timeout` (seconds from the first time this wait is reached) applies
        when `create_token` set none; then `WaitTimeout`, or `default`.
        """
        if not isinstance(token, str) or not token:
            raise InvalidArgumentError(f"token must be a token id from create_token, got {token!r}")
        wait = NewWait(f"token:{token}", WaitKind.TOKEN, None, None, self._due(timeout), token)
        row = await self._wait(wait, default)
        return default if row.status is WaitStatus.TIMED_OUT else load_json(row.payload)

    async def sleep(self, seconds: float) -> None:
        """A durable timer: the run parks and wakes once `seconds` have passed."""
        secs = _seconds("sleep seconds", seconds)
        assert secs is not None
        key = self._next_key("sleep")
        due = self._clock.now() + timedelta(seconds=secs)
        await self._wait(NewWait(key, WaitKind.TIMER, None, None, due), MISSING)

    async def sleep_until(self, when: datetime) -> None:
        """A durable timer to a point in time (timezone-aware)."""
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidArgumentError("sleep_until needs a timezone-aware datetime")
        key = self._next_key("sleep")
        await self._wait(NewWait(key, WaitKind.TIMER, None, None, when), MISSING)

    async def child(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = MISSING,
        *,
        workflow_id: str | None = None,
    ) -> Any:
        """Start a child run and wait for its result.

        Cancelling this run cancels the child. A child that fails or is
        cancelled raises `ChildRunError` here.
        """
        defn = WorkflowDef.of(workflow)
        cid = workflow_id or f"{self.workflow_id}/{self._next_key(defn.name)}"
        host = self._require_host()
        await host.create_child(defn, input, cid, self.workflow_id, detached=False)
        wait = NewWait(f"child:{cid}", WaitKind.RUN, cid)
        try:
            row = await self._wait(wait, MISSING)
        except Suspend:
            self._blocked_on.pop()
            await host.drive_child(cid)
            row = await self._wait(wait, MISSING)
        outcome = load_json(row.payload) or {}
        if outcome.get("status") != "completed":
            raise ChildRunError(cid, str(outcome.get("status")), outcome.get("error"))
        tp = return_type_of(defn.fn)
        return load_result(dump_json(outcome.get("output"), what="child output"), tp)

    async def start_child(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = MISSING,
        *,
        workflow_id: str | None = None,
    ) -> str:
        """Start a detached child run (not waited on, not cancelled with this run); its id."""
        defn = WorkflowDef.of(workflow)
        cid = workflow_id or f"{self.workflow_id}/{self._next_key(defn.name)}"
        host = self._require_host()
        await host.create_child(defn, input, cid, self.workflow_id, detached=True)
        return cid

    def _require_host(self) -> Host:
        if self._host is None:
            raise InvalidArgumentError(
                "child runs need a workflow run by an App (app.run / app.start), "
                "not a context from open_workflow"
            )
        return self._host

    # -- values recorded on first use ------------------------------------------------

    async def _recorded(self, key: str, make: Callable[[], Any]) -> Any:
        done = self._steps.get(key)
        if done is not None and done.status is StepStatus.COMPLETED:
            return load_json(done.result)
        value = make()
        text = dump_json(value, what=f"recorded value {key!r}")
        await self._store.save_value(self._fence, key, text, self._clock.now())
        now = self._clock.now()
        self._steps[key] = StepRow(
            self.workflow_id, key, key, StepStatus.COMPLETED, 1, None, text, None, now, now, now
        )
        return load_json(text)

    async def now(self) -> datetime:
        """The current time, recorded on first use so a replay sees the same value."""
        text = await self._recorded(self._next_key("now"), lambda: self._clock.now().isoformat())
        return datetime.fromisoformat(text)

    async def random(self) -> float:
        """A random float in [0, 1), recorded on first use."""
        return float(await self._recorded(self._next_key("random"), _random.random))

    async def uuid(self) -> str:
        """A random UUID (hex), recorded on first use."""
        return str(await self._recorded(self._next_key("uuid"), lambda: _uuid.uuid4().hex))
