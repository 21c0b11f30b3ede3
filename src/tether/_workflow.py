"""The `Workflow` context handed to workflow code.

A workflow function runs from the top on every resume (checkpoint, don't
replay code): a step that completed returns its recorded result at once; only
unfinished work runs again. Completed steps and resolved waits are loaded once
when the run is opened, so a cached step costs a dictionary lookup and a fresh
step costs two small transactions (start marker, completion), whatever the
run's length.

`Workflow` is a facade composed of parts that share the drive's `RunState`:
`StepExecutor` (steps), `Waits` (waits, children, recorded values), `Locks`
(mutexes, leases, heartbeats) and `run_for_each` (fan-out).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast, overload

from ._attach import attach, in_step
from ._compensation import check_compensation
from ._durations import check_seconds, seconds_of
from ._fanout import ForEachSummary, run_for_each
from ._locks import LEASE_SCOPE, Locks, MutexHandle, lease_scope
from ._mutex_guard import mutex_block
from ._names import check_name, check_own_event
from ._results import load_result, recorded_as
from ._run_state import Compensation, RunState
from ._runtime import Runtime
from ._stage_record import stage_usage
from ._steps import StepContext, StepExecutor, StepSpec, check_depth
from ._waits import MISSING, Host, Waits
from .ai import Budget, WorkflowAI
from .clock import Clock
from .errors import InvalidArgumentError, RunCancelledError, TetherError
from .record import LeaseRecord, RunRecord, RunUsage
from .retry import RetryPolicy, as_policy
from .serde import check_type, dump_json, load_json, return_type_of
from .store import NewEvent, RunRow, StepRow, StepStatus, Store

__all__ = ["MutexHandle", "StepContext", "Workflow", "load_history", "load_record"]

T = TypeVar("T")
R = TypeVar("R")
D = TypeVar("D")  # a wait's `default`: what it answers past its timeout
# what a step whose declared result type cannot be stored may do instead
_TYPE_FIX = " as its return annotation or result_type=, or declare none and return plain JSON"


def _check_step_args(name: str, fn: object, timeout: float | None) -> None:
    if not callable(fn):
        raise InvalidArgumentError(
            f"step {name!r}: fn must be callable (a function, a lambda or an async def), "
            f"got {type(fn).__name__} {fn!r}; e.g. wf.step({name!r}, lambda: value)"
        )
    _check_timeout(name, timeout)


def _check_timeout(name: str, timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise InvalidArgumentError(
            f"timeout of step {name!r} must be a number of seconds > 0, got {timeout!r}"
        )


class Workflow:
    """The durable context of one run: steps, waits, mutexes, leases, heartbeats, state."""

    def __init__(
        self,
        runtime: Runtime,
        run: RunState,
        *,
        host: Host | None = None,
        owns_store: bool = False,
    ) -> None:
        self._rt = runtime
        self._run = run
        self._owns_store = owns_store
        self._steps = StepExecutor(runtime, run)
        self._waits = Waits(runtime, run, host)
        self._locks = Locks(runtime, run)
        self._ai: WorkflowAI | None = None

    # -- identity ------------------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        return self._run.workflow_id

    @property
    def workflow_name(self) -> str:
        return self._run.run.workflow_name

    @property
    def workflow_version(self) -> str | None:
        return self._run.run.workflow_version

    @property
    def ai(self) -> WorkflowAI:
        """Model calls as durable steps, priced, logged and budgeted (`tether.ai`)."""
        if self._ai is None:
            if self._rt.ai is None:
                raise InvalidArgumentError(
                    "this App has no AI providers; configure them with "
                    "tether.App(ai=tether.ai.Providers(openai=tether.ai.OpenAI(), ...))"
                )
            own = self._run.run.budget
            budget = (
                Budget.of(json.loads(own))
                if own is not None
                else self._rt.workflow_budget(self.workflow_name)
            )
            self._ai = WorkflowAI(
                self, self._rt.ai, self._rt.store, budget, self._rt.clock.now,
                workflow_budget=self._rt.workflow_budget,
            )  # fmt: skip
        return self._ai

    @property
    def clock(self) -> Clock:
        """The App's clock. Inside a step read the time from it; in workflow code use
        ``await wf.now()``, which is recorded so a replay sees the same value."""
        return self._rt.clock

    @property
    def attempt(self) -> int:
        """1, then one more each time `rerun_from` sent this run round again."""
        return self._run.run.attempt

    @property
    def blobs(self) -> Any:
        """The App's blob store (a `tether.blobs.BlobStore`): artifacts and large outputs."""
        if self._rt.blobs is None:
            raise InvalidArgumentError(
                "this App has no blob store; pass one, e.g. "
                "tether.App(blobs=tether.blobs.FileBlobStore('.tether/blobs'))"
            )
        return self._rt.blobs

    @property
    def generation(self) -> int | None:
        """The owner generation this context writes with (None: unfenced observer)."""
        return self._run.fence.generation

    @property
    def compensating(self) -> bool:
        """True while a cancelled run is replayed only to learn its compensations: a
        step that did not complete stops the replay instead of running."""
        return self._run.compensating

    @property
    def draining(self) -> bool:
        """True once this process is shutting down: it starts no new step, and code
        that starts work of its own (a remote invocation) should stop too."""
        return self._rt.draining

    @property
    def state(self) -> Any:
        """The durable state as last written by this context (or loaded): None for a run
        started without ``initial_state=`` that has written none yet."""
        return self._run.state

    def _no_state(self) -> TetherError:
        """The error of an `update_state` function that failed on a run holding no state."""
        return TetherError(
            f"run {self.workflow_id!r} has no state (None): it was started without "
            "initial_state= and no value was written with wf.update_state(value), so the "
            "function given to update_state got None; start it with e.g. "
            'initial_state={"applied": 0}, or write a value first'
        )

    @property
    def in_flight(self) -> set[str]:
        """The steps whose function is running now."""
        return set(self._run.in_flight)

    # -- steps ---------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *,
        idempotency_key: str | None = None,
        retry: int | RetryPolicy | None = None,
        compensate: Callable[..., Any] | None = None,
        timeout: float | timedelta | None = None,
        result_type: Any = None,
        compensate_retry: int | RetryPolicy | None = None,
    ) -> T:
        """Run `fn` once for this run and record its result; return the record on replay.

        A step is identified by its name and its occurrence: the second
        ``step("call-llm", ...)`` of a run is a new step, recorded as
        ``call-llm#2`` (inside `for_each` item i, ``call-llm[i]``), so a loop
        gets a fresh answer each turn and a replay gets them back in order.
        With an `idempotency_key` the identity is the name and the key
        (``name@key``): a second call with both equal returns the first
        call's result without calling `fn`.

        `fn` may be sync (run in a step thread) or async, and receives a
        `StepContext` if it takes an argument. The result must be JSON data, a
        pydantic model or anything pydantic can dump; if `fn` declares its
        return type, a cached result is validated back into that type.

        `compensate` undoes the step if the run later fails (or is cancelled
        with compensation): compensations of completed steps run in reverse
        order, each once, recorded like steps. Like `fn`, it takes what it
        declares: nothing, the step's result, or a `StepContext` and the result.
        It is tried as `compensate_retry` says (attempts or a `RetryPolicy`),
        by default as the step itself is (`retry`).

        The first run returns exactly what a replay will: the result typed by
        `fn`'s declared return type or `result_type`, a pydantic model or
        dataclass revived as its class, or plain JSON; a value that would come
        back different (a tuple, a set, a date, a dict with int keys) without
        a declared type is refused with `NotSerializableError`.

        `timeout` (seconds or a timedelta) ends an attempt that runs longer as a failed attempt
        with `StepTimeoutError`, retried as the policy says: an async `fn` is
        cancelled; a sync one cannot be, and its late result is discarded.
        """
        if compensate_retry is not None:
            if compensate is None:
                raise InvalidArgumentError(
                    f"step {name!r} has compensate_retry= but no compensate=: pass the "
                    "function that undoes the step too, or drop compensate_retry"
                )
            as_policy(compensate_retry)  # a bad one refused before the step runs
        return cast(
            T,
            await self._step(
                name,
                fn,
                idempotency_key,
                retry,
                None if compensate is None else (compensate, compensate_retry),
                seconds_of(timeout),
                result_type,
                settled=False,
            ),
        )

    async def record_now(self, name: str, value: Any, *, idempotency_key: str | None = None) -> Any:
        """Record `value`, obtained elsewhere (a remote tenant's step), as step `name`'s
        result, as `step` would; also while the process drains, which starts no new
        step but must not lose a result already in hand."""

        async def known() -> Any:
            return value

        return await self._step(name, known, idempotency_key, None, None, None, None, settled=True)

    def undo_recorded(
        self, key: str, fn: Callable[..., Any], *, retry: int | RetryPolicy | None = None
    ) -> None:
        """Register `fn` as the undo of step `key` (its key as recorded), already
        completed, as ``step(..., compensate=fn)`` would have. Internal, for a layer that
        learns only once the step is recorded whether it needs an undo (the remote
        orchestrator, whose run was cancelled with compensation mid-invocation): calling
        the step again would be a new step (``key#2``). Registered once per key."""
        run = self._run
        done = run.steps.get(key)
        if done is None or done.status is not StepStatus.COMPLETED:
            raise InvalidArgumentError(
                f"step {key!r} of run {run.workflow_id!r} has not completed, so it has "
                "nothing to undo: pass compensate= to wf.step instead"
            )
        check_compensation(fn, key)
        if all(c.key != key for c in run.compensations):
            value = load_result(done.result, None)
            run.compensations.append(Compensation(key, fn, value, retry))

    async def _step(
        self,
        name: str,
        fn: Callable[..., Any],
        idempotency_key: str | None,
        retry: int | RetryPolicy | None,
        undo: tuple[Callable[..., Any], int | RetryPolicy | None] | None,
        timeout: float | None,
        result_type: Any,
        *,
        settled: bool,
    ) -> Any:
        _check_step_args(name, fn, timeout)
        tp = return_type_of(fn) if result_type is None else result_type
        check_name("step name", name)
        check_type(tp, f"step {name!r}", _TYPE_FIX)
        if undo is not None:
            check_compensation(undo[0], name)
        if idempotency_key is not None:
            check_name(f"idempotency_key of step {name!r}", idempotency_key)
        run = self._run
        key = run.step_key(name, idempotency_key)
        done = run.steps.get(key)
        if (
            done is not None
            and done.status is StepStatus.COMPLETED
            and done.idempotency_key == idempotency_key
        ):
            value = _recorded_as(done, tp, run.workflow_id)
        else:
            if run.compensating:
                raise RunCancelledError(run.workflow_id)
            if run.timeout is not None:  # no budget: no reading of the clock
                run.check_budget(self._rt.clock.now())
            policy = as_policy(retry)
            spec = StepSpec(key, name, fn, idempotency_key, policy, tp, timeout, settled)
            async with run.step_lock(key):
                value = await self._steps.execute(spec)
        # a second call answered by its idempotency key has its undo registered already
        if undo is not None and (
            idempotency_key is None or all(c.key != key for c in run.compensations)
        ):
            undo_retry = retry if undo[1] is None else undo[1]
            run.compensations.append(Compensation(key, undo[0], value, undo_retry))
        return value

    def recorded(self, key: str, *, result_type: Any = None, default: Any = None) -> Any:
        """What step `key` (its key as recorded: ``name``, ``name#2``, ``stage/name``)
        completed with, typed by `result_type`; `default` if it has not completed.

        Nothing runs and nothing is written: layers above the core (stages) use it to
        skip code whose outcome is already recorded.
        """
        done = self._run.steps.get(key)
        if done is None or done.status is not StepStatus.COMPLETED:
            return default
        return load_result(done.result, result_type)

    async def list_events(self, *, after_seq: int = 0) -> list[Any]:
        """The run's events recorded so far (`EventRow`s, in order), read fresh."""
        return await self._rt.store.list_events(self.workflow_id, after_seq=after_seq)

    # -- waits -----------------------------------------------------------------------

    # A wait given `result_type=` is typed as that type (or its `default`'s, past its
    # timeout), as `step` is by `fn`'s; a type that is no class (``int | None``,
    # ``Annotated[...]``) or none at all leaves the answer `Any`, as plain JSON is.
    @overload
    async def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        key: str | None = None,
        result_type: type[T],
    ) -> T: ...

    @overload
    async def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        default: D,
        key: str | None = None,
        result_type: type[T],
    ) -> T | D: ...

    @overload
    async def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        key: str | None = None,
        result_type: Any = None,
    ) -> Any: ...

    async def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        key: str | None = None,
        result_type: Any = None,
    ) -> Any:
        """The payload of the first event of `event_type` matching `match`.

        An event counts if it was sent after this run was created (events that
        arrive just before the wait registers are kept, not lost) and no other
        wait of this run took it. `match` names payload fields (dotted for
        nested ones) and the values they must equal. `result_type` (a pydantic
        model, a dataclass, ``list[int]``...) validates the payload into that
        type, the same on every replay; a payload that does not fit raises
        `WaitPayloadError`.
        """
        check_depth("wf.wait_for_event", self.workflow_id)
        return await self._waits.wait_for_event(
            event_type, match, seconds_of(timeout), default, key, result_type
        )

    @overload
    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | timedelta | None = None,
        key: str | None = None,
        result_type: type[T],
    ) -> T: ...

    @overload
    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | timedelta | None = None,
        default: D,
        key: str | None = None,
        result_type: type[T],
    ) -> T | D: ...

    @overload
    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        key: str | None = None,
        result_type: Any = None,
    ) -> Any: ...

    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        key: str | None = None,
        result_type: Any = None,
    ) -> Any:
        """The payload of the next signal `name` sent to this run (kept if sent early).
        Past `timeout` (seconds or a timedelta), `default`, else `WaitTimeout`.
        `result_type` validates the payload into that type, first time and replay
        alike (`WaitPayloadError` if it does not fit)."""
        check_depth("wf.wait_for_signal", self.workflow_id)
        return await self._waits.wait_for_signal(
            name, seconds_of(timeout), default, key, result_type
        )

    async def create_token(self, timeout: float | timedelta | None = None) -> str:
        """A completion token for an outside party (a person, a webhook) to complete by id."""
        check_depth("wf.create_token", self.workflow_id)
        return await self._waits.create_token(seconds_of(timeout))

    @overload
    async def wait_for_token(
        self,
        token: str,
        *,
        timeout: float | timedelta | None = None,
        result_type: type[T],
    ) -> T: ...

    @overload
    async def wait_for_token(
        self,
        token: str,
        *,
        timeout: float | timedelta | None = None,
        default: D,
        result_type: type[T],
    ) -> T | D: ...

    @overload
    async def wait_for_token(
        self,
        token: str,
        *,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        result_type: Any = None,
    ) -> Any: ...

    async def wait_for_token(
        self,
        token: str,
        *,
        timeout: float | timedelta | None = None,
        default: Any = MISSING,
        result_type: Any = None,
    ) -> Any:
        """The payload the token was completed with (at once if it already was).

        `timeout` (seconds from the first time this wait is reached) applies
        when `create_token` set none; then `WaitTimeout`, or `default`.
        `result_type` validates the payload as `wait_for_signal`'s does.
        """
        check_depth("wf.wait_for_token", self.workflow_id)
        return await self._waits.wait_for_token(token, seconds_of(timeout), default, result_type)

    async def sleep(self, seconds: float | timedelta) -> None:
        """A durable timer: the run parks and wakes once `seconds` (or a timedelta)
        have passed."""
        check_depth("wf.sleep", self.workflow_id)
        await self._waits.sleep(seconds_of(seconds))

    async def sleep_until(self, when: datetime, *, key: str | None = None) -> None:
        """A durable timer to a point in time (timezone-aware); `key` names the
        waitpoint (default: ``sleep#n``, its occurrence)."""
        check_depth("wf.sleep_until", self.workflow_id)
        await self._waits.sleep_until(when, key)

    async def child(
        self,
        workflow: Callable[..., Awaitable[R]],
        input: Any = MISSING,
        *,
        workflow_id: str | None = None,
        budget: Any = None,
    ) -> R:
        """Start a child run and wait for its result.

        Cancelling this run cancels the child. A child that fails or is
        cancelled raises `ChildRunError` here. This run's AI budget covers the
        child's calls too; `budget` (a `tether.ai.Budget` or a dict of its
        fields) gives the child one of its own as well, instead of its
        workflow's (both hold).
        """
        check_depth("wf.child", self.workflow_id)
        # answered as the child's declared return type reads its record (`recorded_as`)
        return cast(R, await self._waits.child(workflow, input, workflow_id, Budget.stored(budget)))

    async def start_child(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = MISSING,
        *,
        workflow_id: str | None = None,
        budget: Any = None,
    ) -> str:
        """Start a detached child run (not waited on, not cancelled with this run); its id.
        This run's AI budget covers it too; `budget` as for `child`."""
        check_depth("wf.start_child", self.workflow_id)
        return await self._waits.start_child(workflow, input, workflow_id, Budget.stored(budget))

    async def now(self) -> datetime:
        """The current time, recorded on first use so a replay sees the same value."""
        check_depth("wf.now", self.workflow_id)
        return await self._waits.now()

    async def random(self) -> float:
        """A random float in [0, 1), recorded on first use."""
        check_depth("wf.random", self.workflow_id)
        return await self._waits.random()

    async def uuid(self) -> str:
        """A random UUID (hex), recorded on first use."""
        check_depth("wf.uuid", self.workflow_id)
        return await self._waits.uuid()

    # -- mutexes, heartbeats and leases -------------------------------------------------

    @mutex_block
    async def mutex(
        self,
        key: str,
        timeout: float | timedelta = 30.0,
        poll: float | timedelta = 0.05,
        stale_after: float | timedelta | None = None,
    ) -> AsyncIterator[MutexHandle]:
        """Hold the keyed mutex `key` across every process sharing the store.

        The holder renews its claim every `stale_after / 3` seconds while the
        block runs; another process may evict it only once it stopped renewing
        for `stale_after` seconds (default 30), i.e. when it died, or at once when
        its process is known gone (on the same machine). A sync step given up on
        inside the block (its `timeout`) keeps the key until it returns, or until
        this process exits (the step dies with it). A wait for the key ends with
        `MutexTimeoutError` after `timeout` seconds, or on a `FakeClock` once the
        test moves the clock past them.

        A block the run left in an earlier drive is not taken again when the run is
        replayed (nothing in it runs again): its exit is recorded (``mutex.left:key``).

        Floors (`InvalidArgumentError` below them): `poll` at least 0.005 s (a waiter
        asks the database every poll; a release in this process wakes it at once
        anyway), `stale_after` at least 0.3 s (renewed every third of it: a shorter
        claim lapses within a database round trip, letting another holder in beside
        a live one). `timeout` may be 0 (one try).
        """
        check_depth("wf.mutex", self.workflow_id)
        durations = seconds_of(timeout), seconds_of(poll), seconds_of(stale_after)
        check_name("mutex key", key)
        left = self._run.next_key(f"mutex.left:{key}")
        done = self._run.steps.get(left)
        if done is not None and done.status is StepStatus.COMPLETED:
            # left before: waiting for the key again (behind a run parked in its own
            # block) stalled a replay for up to its timeout, then failed it
            yield MutexHandle(key, "(left in an earlier drive)")
            return
        async with self._locks.mutex(key, *durations) as handle:
            yield handle
        await self._waits.save(left, "true")  # after the release: a crash between re-takes it

    async def with_mutex(
        self,
        key: str,
        fn: Callable[[], Awaitable[T]] | Callable[[], T],
        *,
        timeout: float | timedelta = 30.0,
        poll: float | timedelta = 0.05,
        stale_after: float | timedelta | None = None,
    ) -> T:
        """Call `fn` while holding mutex `key`; sync `fn` runs in a worker thread.

        `timeout`, `poll` and `stale_after` are `mutex`'s, with its floors (`poll` at
        least 0.005 s, `stale_after` at least 0.3 s)."""
        check_depth("wf.with_mutex", self.workflow_id)
        durations = seconds_of(timeout), seconds_of(poll), seconds_of(stale_after)
        return await self._locks.with_mutex(key, fn, *durations)

    async def heartbeat(self, key: str, detail: Any = None) -> None:
        """Record that `key` (a worker, a phase) is alive, with an optional detail."""
        check_depth("wf.heartbeat", self.workflow_id)
        await self._locks.heartbeat(key, detail)

    async def touch_lease(
        self,
        key: str,
        *,
        holder: str,
        ttl: float | timedelta,
        detail: Any = None,
        scope: str = "global",
    ) -> LeaseRecord:
        """Acquire lease `key` for `holder` for `ttl` seconds, or renew it in place.

        Raises `LeaseConflictError` while another holder's lease is active. A
        lease is exclusive across every run and process sharing the store;
        with ``scope="run"`` it is kept inside this run only (the seed's
        record), and other runs may hold a lease of the same key.

        `ttl` is at least 1 second (`InvalidArgumentError` below): nothing renews a
        lease but the holder's next `touch_lease`, so a shorter one lapses between
        two writes of a live holder and another takes it.
        """
        check_depth("wf.touch_lease", self.workflow_id)
        return await self._locks.touch_lease(key, holder, seconds_of(ttl), detail, scope)

    async def release_lease(
        self, key: str, holder: str | None = None, *, scope: str = "global"
    ) -> bool:
        """Release lease `key`; with `holder`, only if that holder holds it.

        Returns False when there was no active lease to release.
        """
        check_depth("wf.release_lease", self.workflow_id)
        return await self._locks.release_lease(key, holder, scope)

    # -- fan-out -----------------------------------------------------------------------

    async def for_each(
        self,
        items: Iterable[T],
        fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
        *,
        max_parallel: int = 1,
        mutex_key: Callable[[T], str] | None = None,
        stop_on_error: bool = True,
        stale_after: float | timedelta | None = None,
        mutex_timeout: float | timedelta = 3600.0,
    ) -> ForEachSummary[T, R]:
        """Run `fn(item)` for each item, at most `max_parallel` at once.

        Items with equal `mutex_key(item)` never overlap (here or in any other
        process using the same key). Returns every outcome in input order; with
        `stop_on_error`, the first failure stops new items from starting and
        raises `ForEachError` carrying the summary. `stale_after` is passed to
        each item's mutex (see `mutex`); an item waits up to `mutex_timeout`
        seconds for its key (held by another run, perhaps parked), then fails
        with `MutexTimeoutError`.

        `fn` is the run's code, not a step: a replay calls it again, so what must
        happen once goes in a `wf.step` inside it (an async `fn`).
        """
        mutex_timeout = check_seconds("mutex_timeout", mutex_timeout)
        stale_after = seconds_of(stale_after)
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise InvalidArgumentError(
                f"for_each needs an iterable of items (a list, a tuple, a generator), got "
                f"{type(items).__name__} {items!r}; e.g. wf.for_each([a, b], fn)"
            )
        if not callable(fn):
            raise InvalidArgumentError(
                f"for_each needs a function to call on each item, got {type(fn).__name__} "
                f"{fn!r}; e.g. wf.for_each(items, handle_item)"
            )
        if not isinstance(items, set | frozenset):  # (refused by run_for_each, saying why)
            items = list(items)
            await self._same_items(items)
        return await run_for_each(
            items,
            fn,
            max_parallel=max_parallel,
            mutex_key=mutex_key,
            stop_on_error=stop_on_error,
            hold=lambda key: self.mutex(key, timeout=mutex_timeout, stale_after=stale_after),
        )

    async def _same_items(self, items: list[Any]) -> None:
        """Refuse items other than those this call was given when the run first came
        here (recorded as their count and digest): item i's steps are ``name[i]``, so a
        resume given ``["x", "a", "b"]`` for ``["a", "b"]`` handed each item the recorded
        results of the one before it, silently. Items that are not JSON go unchecked."""
        try:
            text = dump_json(items, what="for_each items")
        except TetherError:
            return
        told = {"items": len(items), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
        first = await self._waits.recorded(self._run.next_key("for_each.items"), lambda: told)
        if first != told:
            raise TetherError(
                f"for_each in run {self.workflow_id!r} was given other items than when the "
                f"run first came here ({first.get('items')} items then, {len(items)} now), "
                "and each item would get the recorded steps of the one that had its place. "
                "Give for_each what a step returned (its result is recorded), or rerun the "
                "run from a step before this call (app.rerun_from)"
            )

    # -- state and events ----------------------------------------------------------------

    async def update_state(self, value_or_fn: Any) -> Any:
        """Replace the durable state with a value, or with `fn(current_state)`.

        Once per call in the run's code, as a step is: a resume that runs this
        code again gets the state this call wrote, and neither calls `fn` nor
        writes again (an increment is applied once, however often the run resumes).
        """
        check_depth("wf.update_state", self.workflow_id)
        run = self._run
        key = self._once_key("tether.state")
        done = run.steps.get(key)
        if done is not None and done.status is StepStatus.COMPLETED:
            return run.replay_state(done)
        # one update at a time: for_each items updating side by side would each build on
        # the state before the others' (an increment lost)
        async with run.step_lock("tether.state"):
            text = await self._new_state(value_or_fn)
            seq = await self._waits.save(key, text, state=text, events=[NewEvent("state.updated")])
            run.state, run.state_seq = load_json(text), seq
        run.emit("state.updated")
        return run.state

    async def append_event(self, type: str, message: str | None = None, detail: Any = None) -> None:
        """Append a custom event to the run's history.

        Once per call in the run's code: a resume that runs this code again does
        not write it again. Inside a step it is written with the step's completion.
        A type in one of tether's own namespaces (``workflow.``, ``step.``, ...) is
        refused: readers of the history take those for what the engine did.
        """
        await self.record_event(check_own_event(type), message, detail)

    async def record_event(self, type: str, message: str | None = None, detail: Any = None) -> None:
        """`append_event` for tether's layers, whose events are in the engine's
        namespaces (``ai.batch.cancel_failed``, ``budget.raise_refused``)."""
        event = _custom_event(type, message, detail)
        if in_step():  # listeners hear of it once it is written, with the step
            attach(event)
            return
        check_depth("wf.append_event", self.workflow_id)
        key = self._once_key("tether.event")
        done = self._run.steps.get(key)
        if done is not None and done.status is StepStatus.COMPLETED:
            return
        await self._waits.save(key, json.dumps(type), events=[event])
        self._run.emit(type, message, detail)

    def _once_key(self, name: str) -> str:
        """The key of a write the run's code makes once (its occurrence, as a step's)."""
        run = self._run
        return run.step_key(name, None) if run.run.step_rule >= 2 else run.next_key(name)

    async def _new_state(self, value_or_fn: Any) -> str:
        if callable(value_or_fn):
            try:
                new = value_or_fn(copy.deepcopy(self._run.state))
            except TypeError as exc:  # ({**s}, s + 1, s["n"] of no state at all)
                if self._run.state is None:
                    raise self._no_state() from exc
                raise
            if inspect.isawaitable(new):
                new = await new
        else:
            new = value_or_fn
        return dump_json(new, what="workflow state")

    def keep_state(self, text: str, seq: int | None) -> None:
        """Take `text` as the run's state, already written with its event by a layer that
        records what code elsewhere wrote (the remote orchestrator, a tenant's update)."""
        run = self._run
        run.state = load_json(text)
        if seq:
            run.state_seq = seq

    async def write_state_now(self, value: Any) -> None:
        """Write the state now, each time this runs (for a layer whose code is not
        replayed, such as the remote orchestrator recording what a tenant sent)."""
        text = dump_json(value, what="workflow state")
        run = self._run
        await self._rt.store.set_state(
            run.fence, text, self._rt.clock.now(), NewEvent("state.updated")
        )
        run.state = load_json(text)
        run.emit("state.updated")

    async def log_event_now(
        self, type: str, message: str | None = None, detail: Any = None
    ) -> None:
        """Append an event now, each time this runs (what happened in this drive: a
        failed stage attempt, an invocation of a remote workflow)."""
        event = _custom_event(type, message, detail)
        await self._rt.store.append_events(self._run.fence, [event], self._rt.clock.now())
        self._run.emit(type, message, detail)

    def notify(self, type: str, message: str | None = None, detail: Any = None) -> None:
        """Tell the run's listeners (`on_event`, interceptors) of an event that a layer
        recorded through the store itself (the remote orchestrator, a tenant's steps)."""
        self._run.emit(type, message, detail)

    async def stop_given_up_batches(self) -> int:
        """Cancel at their providers the batches whose `wf.ai.batch` calls this drive left
        parked or cancelled; the driver calls it as the run ends (completed or failed),
        when nothing will poll them again. How many."""
        return 0 if self._ai is None else await self._ai.given_up()

    async def stop_open_batches(
        self, which: Callable[[str], bool], *, besides: Iterable[str] = ()
    ) -> int:
        """Cancel at their providers the batches, not ended, that the steps whose keys
        `which` picks submitted, but `besides` (`WorkflowAI.stop_open_batches`); how
        many. None on an App without AI providers."""
        if self._ai is None and self._rt.ai is None:
            return 0
        return await self.ai.stop_open_batches(which, besides=besides)

    async def get_record(self) -> RunRecord:
        """Everything recorded about this run, read fresh from the store."""
        return await load_record(self._rt.store, self.workflow_id)

    # -- lifecycle of a standalone context (open_workflow) ---------------------------

    async def aclose(self) -> None:
        if self._owns_store:
            await self._rt.store.close()

    async def __aenter__(self) -> Workflow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def load_record(store: Store, workflow_id: str) -> RunRecord:
    """Everything recorded about run `workflow_id`."""
    return (await load_history(store, workflow_id))[1]


async def load_history(store: Store, workflow_id: str) -> tuple[RunRow, RunRecord]:
    """The run's row and its record, read at once (`Store.run_history`)."""
    from .errors import RunNotFoundError

    h = await store.run_history(workflow_id, lease_scopes=(LEASE_SCOPE, lease_scope(workflow_id)))
    if h is None:
        raise RunNotFoundError(workflow_id)
    usage = RunUsage.build(h.usage)
    per_stage = None
    if usage is not None and any(e.type == "pipeline.planned" for e in h.events):
        by_step = await store.ai_usage_by_step(workflow_id)
        per_stage = stage_usage(h.steps, h.events, by_step)
    record = RunRecord.build(h.run, h.steps, h.events, h.heartbeats, h.locks, usage, per_stage)
    return h.run, record


def _custom_event(type: str, message: str | None, detail: Any) -> NewEvent:
    """A run's own event, its type and detail checked (one line: a type is a field of
    the live event stream, where a line break would start a forged frame)."""
    check_name("event type", type)
    if any(c < " " or c == "\x7f" for c in type):
        raise InvalidArgumentError(
            f"event type {type!r} contains a line break or another control character; "
            "an event type is one line of text, e.g. 'progress' (put the rest in its detail)"
        )
    text = None if detail is None else dump_json(detail, what=f"event {type!r} detail")
    return NewEvent(type, message, text)


def _recorded_as(row: StepRow, tp: Any, workflow_id: str) -> Any:
    """A completed step's recorded result as `tp`; when the code changed since and it no
    longer fits, an error naming the step, what was recorded and the way out."""
    return recorded_as(
        row.result,
        tp,
        what=f"step {row.key!r} of run {workflow_id!r}",
        since="the step ran",
        way_out=f"resume the run with the code that started it, or rerun it from this "
        f"step: app.rerun_from({workflow_id!r}, {row.key!r})",
    )
