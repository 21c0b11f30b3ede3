"""What the verbs run on: a transaction port, and the helpers every verb group shares.

Each dialect module supplies a `Tx` (named queries of its ``queries/*.sql``,
its placeholders and time values) and `_tx`, which runs a verb body in one
transaction. The verbs (`_verbs_*.py`) are written once against `Tx`:

    async def body(tx: Tx) -> ...: ...
    return await self._tx("write", body)

Modes: ``"read"`` (no transaction), ``"write"`` (durable commit), ``"fast"``
(a commit that only has to survive a process crash). ``single=True`` marks a
body of one statement, which PostgreSQL runs without BEGIN/COMMIT.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from ..errors import (
    RunAlreadyRunningError,
    RunCancelledError,
    RunFinishedError,
    RunNotFoundError,
    StaleOwnerError,
    TetherError,
)
from ._deferred import Deferred
from ._records import Fence, NewEvent, NewRun, RunRow, RunStatus
from ._rows import Rows

__all__ = ["Mode", "StoreBase", "Tx", "event_params", "fenced_params", "outcome", "params"]

T = TypeVar("T")
Mode = Literal["read", "write", "fast"]


def params(record: Any) -> dict[str, Any]:
    """A flat record's fields as query parameters, the values as they are
    (`dataclasses.asdict` deep-copies each one: on an AI call's completion that
    cost more than the statement it feeds)."""
    cls = type(record)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return {name: getattr(record, name) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {}  # a record class's field names


def event_params(event: NewEvent) -> dict[str, Any]:
    """The parameters of a query that writes `event` itself (``:etype``, ...)."""
    return {"etype": event.type, "emsg": event.message, "edetail": event.detail}


def fenced_params(fence: Fence, event: NewEvent) -> dict[str, Any]:
    """The parameters of a query that checks `fence` and writes `event` itself
    (`StoreBase.fenced_queries`)."""
    return {"wid": fence.workflow_id, "gen": fence.generation, "comp": fence.compensating,
            "etype": event.type, "emsg": event.message, "edetail": event.detail}  # fmt: skip


class Tx(Protocol):
    """One transaction (or one autocommit statement) of one dialect.

    Parameters are named (``:wid`` in the .sql files); a `datetime` is turned
    into the dialect's time value, and `rows` turns its time values back.
    """

    rows: Rows

    async def one(self, name: str, /, **params: Any) -> Any:
        """The first row of named query `name`, or None."""
        ...

    async def all(self, name: str, /, **params: Any) -> list[Any]: ...

    async def execute(self, name: str, /, **params: Any) -> int:
        """Run `name`; the rows it changed."""
        ...

    async def many(self, reads: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
        """The rows of several read queries, in order: on PostgreSQL sent at once and
        answered in one round trip (pipeline mode), not one per query."""
        ...

    async def read_blob(self, key: str) -> bytes | None:
        """The body of blob `key`, or None: read in one snapshot (never part of one put
        and part of another) straight into the bytes returned, never held twice."""
        ...

    async def write_blob(self, key: str, body: bytes, at: datetime) -> None:
        """Write blob `key` (replacing one of the same key) in this transaction, with no
        copy of `body` where the dialect can (SQLite writes it in place)."""
        ...

    def now(self, now: datetime | None) -> Any:
        """The value for ``:now``: the pinned time, else the store's clock."""
        ...

    def array(self, items: Sequence[Any]) -> Any:
        """A list parameter (``json_each`` on SQLite, an array on PostgreSQL)."""
        ...

    async def notify(self, what: str) -> None:
        """Announce a change ("jobs", "run:<id>") at commit (SQLite: to its own waiters)."""
        ...


def outcome(status: str, output: str | None, error: str | None) -> str:
    """The payload a parent's wait on a child run resolves with (JSON text)."""
    return (
        f'{{"status":{json.dumps(status)},"output":{output if output is not None else "null"},'
        f'"error":{error if error is not None else "null"}}}'
    )


class StoreBase(abc.ABC):
    """Shared helpers of the verbs; a dialect adds `_tx` and the plumbing."""

    dialect: str
    # whether the queries of fenced writes (start_step, complete_step, ...) check the
    # owner fence and number and write their event themselves, in one statement
    fenced_queries = False
    # where step completions wait for the next write (see `_deferred`); None: written at once
    deferred: Deferred | None = None

    def __init__(self) -> None:
        # jobs closed with their run's end (`finish_run`), which their worker's
        # `finish_job` need not write again: job id -> None, the newest few
        self._closed_jobs: dict[int, None] = {}
        # runs this store cancelled (None) or gave to an owner of that generation: a held
        # completion under an older fence is written (and refused) at once, see `_may_hold`
        self._moved: dict[str, int | None] = {}
        # queue sets whose last claim here took nothing: the next asks first whether a
        # job of them is due (`claim_jobs`)
        self._idle_claims: set[tuple[str, ...]] = set()

    @abc.abstractmethod
    async def _tx(
        self, mode: Mode, body: Callable[[Tx], Awaitable[T]], *, single: bool = False
    ) -> T:
        """Run `body` in one transaction of `mode` (see the module docstring)."""

    def _closed_with_run(self, rows: Sequence[Any]) -> None:
        """Note the jobs `finish_run` closed (rows of one job id, or None)."""
        closed = self._closed_jobs
        for job_id, *_ in rows:
            if job_id is not None:
                closed[int(job_id)] = None
        while len(closed) > 4096:  # a worker that never came to close one: forget it
            del closed[next(iter(closed))]

    def _note_moved(self, workflow_id: str, generation: int | None) -> None:
        """Remember that this store cancelled a run (None) or fenced its owners below
        `generation` (a few thousand runs, the newest)."""
        self._moved.pop(workflow_id, None)
        self._moved[workflow_id] = generation
        if len(self._moved) > 4096:
            del self._moved[next(iter(self._moved))]

    def _already_closed(self, job_id: int) -> bool:
        """Whether `finish_run` closed this job (then forgotten: asked once)."""
        return self._closed_jobs.pop(job_id, 0) is None

    def _variant(self, name: str, mode: Mode) -> str:
        """The query to run for `name` in `mode` (a dialect may keep a faster one)."""
        return name

    async def _execute(
        self, mode: Mode, name: str, /, *, single: bool = False, **params: Any
    ) -> int:
        """Run the one statement `name` in its own transaction; the rows it changed."""
        return await self._tx(mode, lambda tx: tx.execute(name, **params), single=single)

    async def _get(self, name: str, build: Callable[[Rows, Any], T], **params: Any) -> T | None:
        """The record of read query `name`'s first row, or None."""

        async def body(tx: Tx) -> T | None:
            row = await tx.one(name, **params)
            return None if row is None else build(tx.rows, row)

        return await self._tx("read", body)

    async def _list(self, name: str, build: Callable[[Rows, Any], T], **params: Any) -> list[T]:
        """The records of read query `name`'s rows."""

        async def body(tx: Tx) -> list[T]:
            return [build(tx.rows, r) for r in await tx.all(name, **params)]

        return await self._tx("read", body)

    async def _fence_failure(self, tx: Tx, fence: Fence) -> TetherError | RunCancelledError:
        row = await tx.one("run_generation", wid=fence.workflow_id)
        if row is None:
            return RunNotFoundError(fence.workflow_id)
        if fence.generation is not None and row[0] != fence.generation:
            return StaleOwnerError(fence.workflow_id, fence.generation)
        return RunCancelledError(fence.workflow_id)

    async def _claim_refusal(
        self, tx: Tx, workflow_id: str, compensating: bool = False
    ) -> TetherError:
        """Why `claim_run` changed no row: the run is missing, owned (running, or for a
        compensating claim, compensated by a live owner now), or has ended."""
        found = await tx.one("claim_refused", wid=workflow_id)
        if found is None:
            return RunNotFoundError(workflow_id)
        undoing = compensating and found[0] == "cancelled" and found[3] == "compensate"
        if found[0] == "running" or (undoing and found[1] is not None):
            return RunAlreadyRunningError(workflow_id, found[1], tx.rows.ot(found[2]))
        return RunFinishedError(workflow_id, found[0], "resume")

    async def _events(
        self,
        tx: Tx,
        fence: Fence,
        events: Sequence[NewEvent],
        at: datetime,
        *,
        ats: Sequence[datetime] = (),
    ) -> int:
        """Check the fence, reserve sequence numbers and write `events` (none: fence
        only), each at `at` or, given `ats`, at its own time; the run's event number
        after them (its last event's)."""
        wid = fence.workflow_id
        row = await tx.one(
            "bump", n=len(events), at=at, wid=wid, gen=fence.generation, comp=fence.compensating
        )
        if row is None:
            raise await self._fence_failure(tx, fence)
        first = int(row[0]) - len(events) + 1
        for i, e in enumerate(events):  # one or two: plain executes beat executemany
            await tx.execute(
                "insert_event",
                wid=wid,
                seq=first + i,
                type=e.type,
                message=e.message,
                detail=e.detail,
                at=ats[i] if ats else at,
            )
        return int(row[0])

    async def _insert_run(
        self, tx: Tx, run: NewRun, at: datetime, *, ckey: str | None = None
    ) -> tuple[RunRow, bool]:
        """Insert unless the id (or idempotency key) exists; (row, created)."""
        tags = json.dumps(list(run.tags))
        created = await tx.execute("insert_run", **params(run) | {"tags": tags}, ckey=ckey, at=at)
        row = await tx.one("run_by_id_or_key", id=run.workflow_id, ikey=run.idempotency_key)
        return tx.rows.run(row), created == 1

    async def _wake(self, tx: Tx, waits: Sequence[tuple[str, str, str]], at: datetime) -> list[str]:
        """Record resolutions (run id, wait key, outcome); waiting runs become runnable."""
        woken: list[str] = []
        for run_id, key, result in waits:
            await self._events(tx, Fence(run_id), [NewEvent(f"wait.{result}", key)], at)
            row = await tx.one("wake_run", id=run_id)
            if row is not None and run_id not in woken:
                woken.append(run_id)
                if row[0] is not None:
                    await self._enqueue_next(tx, run_id, at)
        return woken

    async def _enqueue_next(self, tx: Tx, run_id: str, at: datetime) -> None:
        """Queue a job for a queue-managed run unless it has an open one."""
        await tx.execute("enqueue_next", at=at, id=run_id)
        await tx.notify("jobs")

    async def _end_run(self, tx: Tx, wid: str, status: RunStatus, at: datetime, **p: Any) -> None:
        """Write the run's move to `status` (``finish_run``: `p` its output, error, cs and
        reason) and what goes with an end: a parent waiting on it is woken, and its
        waits still pending (a for_each sibling's, a task's never awaited) are
        cancelled, as no timer fires for it and no event or token resolves them now."""
        await tx.execute("finish_run", status=status.value, at=at, wid=wid, **p)
        if status.terminal:
            await self._child_ended(tx, wid, status.value, p["output"], p["error"], at)
            await tx.execute("waits_cancel", at=at, id=wid)
        await tx.notify(f"run:{wid}")

    async def _child_ended(
        self, tx: Tx, child: str, status: str, output: str | None, error: str | None, at: datetime
    ) -> list[str]:
        """Resolve the waits of parents on `child` (which ended) and wake them."""
        rows = await tx.all(
            "child_waits_resolve", payload=outcome(status, output, error), at=at, child=child
        )
        return await self._wake(tx, [(r[0], r[1], "resolved") for r in rows], at)
