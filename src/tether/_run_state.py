"""`RunState`: what one drive of a run knows, owned by the driver.

The driver (`Runner`, or `App.aopen` for an observer) opens it from the
store, hands it to the `Workflow` context, and reads back from it what the
run did (its pending waits, its compensations, the steps in flight). The
context and its parts (steps, waits, locks) read and update it through the
methods here; nobody else reaches into the context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from ._attach import outside_step
from ._control import Suspend
from ._fanout import ITEM_PATH
from ._runtime import EventHook
from .errors import InvalidArgumentError, WorkflowTimeoutError
from .retry import RetryPolicy
from .serde import load_json
from .store import Fence, RunRow, StepRow, WaitRow, WaitStatus

__all__ = ["STEP_RULE", "Compensation", "RunState", "name_scope", "undo_step"]

# the newest rule by which this release names steps, waits and recorded values (the
# default of `NewRun.step_rule`); a run started under a newer one is not driven here.
# 2: ``name#2``, ``name@key``; 3: inside `for_each` item i, ``name[i]``; 4: inside a
# step, ``outer/name`` (else a replay that answers ``outer`` from the record skips the
# steps it called, and a later call of one of their names took its number: its answer);
# 5: a run driven from inside another's code (a child awaited in a for_each item or a
# step) names its calls from its own root, as it does when woken on its own (else its
# steps were ``a[0]`` in one drive and ``a`` in the next: run again)
STEP_RULE = 5


def undo_step(key: str) -> str:
    """The name of the step that runs step `key`'s compensation."""
    return f"compensate:{key}"


log = logging.getLogger("tether")

# the prefix of the names of steps, waits and recorded values called in this task (a
# stage's id and "/"): two stages running side by side may name their steps alike
NAME_SCOPE: ContextVar[str] = ContextVar("tether_name_scope", default="")


@contextmanager
def name_scope(prefix: str, within: str | None = None) -> Iterator[None]:
    """Name what runs inside ``prefix/...``, joined to the scope `within` (default: the
    current one; nested scopes join: ``a/b/...``)."""
    token = NAME_SCOPE.set(f"{NAME_SCOPE.get() if within is None else within}{prefix}/")
    try:
        yield
    finally:
        NAME_SCOPE.reset(token)


class Compensation(NamedTuple):
    """How to undo a completed step: its key, the undo function, the step's result,
    and how often to try the undo (`retry=` of a step: attempts or a policy)."""

    key: str
    fn: Callable[..., Any]
    value: Any
    retry: int | RetryPolicy | None = None


@dataclass(eq=False)
class RunState:
    """The explicit state of one drive of a run (fence, record, counters, waits)."""

    run: RunRow
    fence: Fence
    started: datetime  # when this drive started executing (compute time counts from here)
    steps: dict[str, StepRow] = field(default_factory=dict)  # by key, loaded then kept current
    waits: dict[str, WaitRow] = field(default_factory=dict)  # resolved waitpoints, by key
    pending: frozenset[str] = frozenset()  # keys of the waitpoints pending when it opened
    state: Any = None  # the durable user state as the run's code last wrote (or replayed) it
    state_seq: int = 0  # the place in the run of the write that `state` is (0: its creation)
    timeout: float | None = None  # the workflow's compute budget in seconds
    on_event: EventHook | None = None
    compensating: bool = False  # replaying only to learn compensations: run no new work
    # running its compensations: past its timeout they still run (`check_budget`)
    undoing: bool = False
    counters: dict[str, int] = field(default_factory=dict)  # wait/value key -> occurrences
    occurrences: dict[str, int] = field(default_factory=dict)  # step name -> calls so far
    key_bases: dict[str, str] = field(default_factory=dict)  # key given -> the name it is for
    blocked_on: list[str] = field(default_factory=list)  # pending waits that suspended it
    # the wait registrations in flight: each one's event (set when answered) -> its key
    # (branches may register one key at once: a budget raise they all wait for)
    registering: dict[asyncio.Event, str] = field(default_factory=dict)
    parking: asyncio.Event | None = None  # the code suspended; set once the park is settled
    compensations: list[Compensation] = field(default_factory=list)
    # the steps whose function runs now: each one's key, and the task that awaits it if
    # it is async (`interrupt` cancels those when the run is cancelled meanwhile)
    in_flight: dict[str, asyncio.Task[Any] | None] = field(default_factory=dict)
    interrupting: set[asyncio.Task[Any]] = field(default_factory=set)  # (`interrupt`)
    step_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    driver: asyncio.Task[Any] | None = None  # the task that drives the run (see `unwind`)
    listener_failed: bool = False  # an `on_event` listener raised in this drive (logged)
    # driven for a worker's job: a long retry back-off hands the run back to the queue
    # (`HandBack.not_before`) instead of holding one of the worker's slots while it waits
    job_drive: bool = False
    resume_at: datetime | None = None  # handed back for a back-off: when it may go on
    # a step failed in an earlier drive waits out the rest of its recorded back-off; not
    # in a remote tenant's invocation, which its deadline would cut at every invocation
    # (there the next invocation makes the next attempt, as the wait ended with the last)
    resumes_back_offs: bool = True

    @classmethod
    def open(
        cls,
        run: RunRow,
        *,
        generation: int | None,
        started: datetime,
        steps: Iterable[StepRow] = (),
        waits: Iterable[WaitRow] = (),
        timeout: float | None = None,
        on_event: EventHook | None = None,
        compensating: bool = False,
        replay: bool = True,
    ) -> RunState:
        """The state of a drive of `run` from its loaded steps and waitpoints (only
        resolved waitpoints are kept: a pending one may resolve meanwhile).

        A drive that `replay`s the run's code from its start starts from the state
        the run was created with, as its first drive did; a context opened on the run
        (`App.open`: to inspect it, or go on from where it stands) from the latest."""
        by_key = {s.key: s for s in steps}
        latest = not replay or run.initial_state is None  # None: an older tether's run
        return cls(
            run=run,
            fence=Fence(run.workflow_id, generation, compensating),
            started=started,
            steps=by_key,
            waits={w.key: w for w in waits if w.status is not WaitStatus.PENDING},
            pending=frozenset(w.key for w in waits if w.status is WaitStatus.PENDING),
            state=load_json(run.state if latest else run.initial_state),
            # the latest state: no recorded update is newer (each is replayed as a value)
            state_seq=max((s.seq or 0 for s in by_key.values()), default=0) if not replay else 0,
            timeout=timeout,
            on_event=on_event,
            compensating=compensating,
            driver=asyncio.current_task(),
        )

    def replay_state(self, row: StepRow) -> Any:
        """The state an `update_state` recorded in `row`, replayed: the run's state too
        unless a later write was replayed already (`for_each` items replay their writes
        in the order they reach them, not the order they wrote them)."""
        value = load_json(row.result)
        if row.seq is None or row.seq > self.state_seq:  # (None: written by an older tether)
            self.state, self.state_seq = value, row.seq or self.state_seq
        return value

    async def register(self, key: str, register: Callable[[], Awaitable[WaitRow]]) -> WaitRow:
        """Waitpoint `key` as `register` gives it (registered in the store, answered at
        once if what it waits for is there).

        A branch of the run's code (a task it started) may register a wait while a
        sibling's wait suspends the run: the park waits for registrations in flight
        (`settle`), and one that starts after the code suspended waits for the park.
        Else the store answered the wait of a run not yet parked, the park did not
        see that answer, and nothing woke the run for it."""
        if self.parking is not None:
            await self.parking.wait()  # then the store wakes a parked run it answers
        done = asyncio.Event()
        earlier = list(self.registering)
        self.registering[done] = key
        try:
            # one at a time, in the order the code asked: waits answered at once from
            # the inbox (two kept signals of one name) take its items in that order
            for before in earlier:
                await before.wait()
            return await register()
        finally:
            del self.registering[done]
            done.set()

    async def settle(self) -> list[str]:
        """Once the run's code suspended: wait for the registrations in flight to be
        answered, and hold back any new one until `parked`. The waits to park on: the
        pending ones, and those registered meanwhile (answered: the park resumes)."""
        self.parking = asyncio.Event()
        keys = list(self.registering.values())
        for done in list(self.registering):
            await done.wait()
        return list(dict.fromkeys([*self.pending_waits(), *keys]))

    def parked(self) -> None:
        """The park is settled (parked, or resuming at once): waits may register."""
        if self.parking is not None:
            self.parking.set()

    def unwind(self, exc: Suspend) -> Suspend:
        """`exc`, to raise now. Raised in a task the workflow started and never awaited
        (fire and forget), it ends that task, nobody retrieves it, and asyncio would log
        "Task exception was never retrieved" as an error for what is a normal park or
        hand-back: that task's end is retrieved here instead."""
        task = asyncio.current_task()
        if task is not None and task is not self.driver:
            task.add_done_callback(_retrieve_unwind)
        return exc

    @contextmanager
    def own_root(self) -> Iterator[None]:
        """Drive the run's code as its own, whoever's code drives it (a parent awaiting
        it as a child from a for_each item or a step): its names start from its root
        (rule 5) and no step of the parent's collects what it attaches."""
        own = self.run.step_rule >= 5  # (before: named under the driver's scope, kept so)
        scope, path = (NAME_SCOPE.set(""), ITEM_PATH.set(())) if own else (None, None)
        try:
            with outside_step():
                yield
        finally:
            if scope is not None and path is not None:
                ITEM_PATH.reset(path)
                NAME_SCOPE.reset(scope)

    @property
    def nests(self) -> bool:
        """Whether what a step's function calls is named under the step (rule 4)."""
        return self.run.step_rule >= 4

    @property
    def workflow_id(self) -> str:
        return self.fence.workflow_id

    def emit(self, type_: str, message: str | None = None, detail: Any = None) -> None:
        """Tell the drive's listeners (`on_event=`, interceptors' `on_event`). A listener
        that raises is logged, not raised: a bug in a logging or tracing hook failed the
        run for good, at a step whose result was already recorded."""
        if self.on_event is None:
            return
        try:
            self.on_event(self.workflow_id, type_, message, detail)
        except Exception:
            if self.listener_failed:  # said once a drive, with its traceback
                log.debug("an on_event listener failed again on %s of run %s", type_,
                          self.workflow_id, exc_info=True)  # fmt: skip
                return
            self.listener_failed = True
            log.exception("an on_event listener failed on %s of run %s; the run goes on",
                          type_, self.workflow_id)  # fmt: skip

    # -- the compute budget --------------------------------------------------------

    def executed(self, now: datetime) -> float:
        """Seconds this run has spent executing by `now`, parked time excluded."""
        return self.run.compute_seconds + (now - self.started).total_seconds()

    def elapsed(self, now: datetime) -> float:
        """Seconds this drive has spent executing by `now`."""
        return max(0.0, (now - self.started).total_seconds())

    def check_budget(self, now: datetime) -> None:
        """Raise `WorkflowTimeoutError` once the run executed past its timeout; never
        while it runs its compensations: a run that timed out is undone all the same."""
        if self.undoing:
            return
        if self.timeout is not None and self.executed(now) > self.timeout:
            raise WorkflowTimeoutError(self.workflow_id, self.timeout)

    # -- identities ----------------------------------------------------------------

    def next_key(self, base: str) -> str:
        """The key of the next wait or recorded value named `base` (``base#n``; inside
        `for_each` item i ``base[i]#n``, so that items reaching it in another order on
        a replay get their own answers back; runs recorded before that rule count
        across items)."""
        base = NAME_SCOPE.get() + base
        path = ITEM_PATH.get() if self.run.step_rule >= 3 else ()
        if path:
            base += "".join(f"[{i}]" for i in path)
        n = self.counters.get(base, 0) + 1
        self.counters[base] = n
        return self._claim(f"{base}#{n}", base)

    def step_key(self, name: str, idempotency_key: str | None) -> str:
        """The step's key in the run's record: its name and occurrence (``name``,
        ``name#2``, ...; ``name[i]`` inside `for_each` item i), or its name and
        idempotency key (``name@key``: a second call with both equal is answered
        from the record). Runs recorded before this rule name a step by its name."""
        if self.run.step_rule < 2:
            return name
        name = NAME_SCOPE.get() + name
        if idempotency_key is not None:
            return f"{name}@{idempotency_key}"
        path = ITEM_PATH.get()
        base = name + "".join(f"[{i}]" for i in path) if path else name
        n = self.occurrences.get(base, 0) + 1
        self.occurrences[base] = n
        return self._claim(base if n == 1 else f"{base}#{n}", base)

    def _claim(self, key: str, base: str) -> str:
        """`key`, for the calls named `base`; refused if calls of another name were given
        it (a step named ``a#2`` and the second call of ``a``): one record would answer
        both, and the second would never run."""
        owner = self.key_bases.setdefault(key, base)
        if owner != base:
            odd = owner if "#" in owner else base
            raise InvalidArgumentError(
                f"{base!r} and {owner!r} both name {key!r} in run {self.workflow_id!r} (a "
                f"call's number follows '#'): rename {odd!r}, e.g. {odd.replace('#', '-')!r}"
            )
        return key

    def step_lock(self, key: str) -> asyncio.Lock:
        lock = self.step_locks.get(key)
        if lock is None:
            lock = self.step_locks[key] = asyncio.Lock()
        return lock

    def running_async_steps(self) -> bool:
        """Whether an async step function of the run is running now (`interrupt` would
        stop it)."""
        return any(task is not None for task in self.in_flight.values())

    def interrupt(self) -> list[str]:
        """Cancel the async step functions running now, as the run was cancelled: their
        results would be refused at the step boundary anyway, and an agent's call may
        run for minutes. A sync function's thread cannot be stopped: it runs on, and its
        result is discarded. The keys of the steps interrupted."""
        hit = []
        for key, task in self.in_flight.items():
            if task is None or task.done():
                continue
            hit.append(key)
            if task not in self.interrupting:
                self.interrupting.add(task)
                task.cancel("tether: the run was cancelled")
        return hit

    def interrupted(self) -> bool:
        """Whether `interrupt` stopped the step the current task runs, and nothing else
        is stopping that task: the cancellation is taken back, for the step to end as
        the run's cancel (`RunCancelledError`). Called once the step function ended
        (raised, or returned after catching the cancellation)."""
        task = asyncio.current_task()
        if task is None or task not in self.interrupting:
            return False
        self.interrupting.discard(task)
        task.uncancel()
        return task.cancelling() == 0

    # -- what the driver reads back ---------------------------------------------------

    def pending_waits(self) -> list[str]:
        """The waits the run is blocked on, each once, in the order reached."""
        return list(dict.fromkeys(self.blocked_on))

    def undoes(self, key: str) -> bool:
        """Whether step `key` is (or runs inside) the compensation of one of this run's
        steps (`undo_step`): one an earlier drive left `running` was interrupted, and
        runs again."""
        root = key.split("/", 1)[0]
        return any(root == undo_step(c.key) for c in self.compensations)

    def begin_compensation(self) -> None:
        """Switch a cancelled run's replay to running its compensations: its writes
        are now fenced as compensating (allowed on a cancelled run)."""
        self.fence = Fence(self.workflow_id, self.fence.generation, compensating=True)
        self.compensating = False


def _retrieve_unwind(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved: asyncio logs nothing of it
    if exc is not None and not isinstance(exc, Suspend):  # the workflow caught it, then
        # failed otherwise: say so, as asyncio would have had it not been retrieved
        task.get_loop().call_exception_handler(
            {"message": "Task exception was never retrieved", "exception": exc, "future": task}
        )
