"""The SQLite adapter of the Store port.

One connection, so statements stay prepared (sqlite3 caches them per
connection). Writes use ``BEGIN IMMEDIATE``: the write lock is taken up front,
so concurrent processes queue instead of deadlocking on a read-to-write
upgrade.

Where a transaction runs: SQLite has one writer at a time, and handing a
transaction to a thread costs more (a wake-up of the event loop, ~0.1-0.2 ms
on a VM) than the fsync it would hide. So a transaction first runs right on
the event loop with no busy wait; only if another process holds the write
lock does it move to a helper thread that waits for the lock (up to
`busy_timeout`) without blocking the loop. A lock keeps the two paths (and
loops in other threads sharing the store) from using the connection at once.

Durability per transaction: WAL mode, and ``synchronous`` switched per
transaction. A step's start marker only has to survive a process crash, so it
commits with ``NORMAL`` (no fsync); its completion commits with ``FULL``
(fsync of the WAL, which also hardens every earlier frame).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    IncompatibleStoreError,
    InvalidArgumentError,
    RunCancelledError,
    RunFinishedError,
    RunNotFoundError,
    StaleOwnerError,
    StoreError,
    StoreUnavailableError,
    TokenNotFoundError,
)
from ._match import matches
from ._migrations import latest_version, migrations
from ._records import (
    EventRow,
    Fence,
    HeartbeatRow,
    LockOutcome,
    LockResult,
    LockRow,
    NewEvent,
    NewRun,
    NewWait,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WaitKind,
    WaitRow,
    WaitStatus,
)
from ._url import Durability, parse_sqlite_url

__all__ = ["SQLiteStore"]

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Busy(Exception):
    """Another connection holds the write lock; the transaction did not begin."""


T = TypeVar("T")

# PRAGMA application_id marks a file as tether's ("TETH").
APPLICATION_ID = 0x54455448

_RUN_COLS = (
    "id, workflow_name, workflow_version, status, input, output, error, state, priority, "
    "tags, tenant, parent_id, idempotency_key, owner, owner_generation, created_at, "
    "updated_at, started_at, finished_at, compute_seconds, cancel_requested"
)
_WAIT_COLS = (
    "id, run_id, wait_key, kind, name, match, status, payload, due_at, created_at, resolved_at"
)
_CLOSED = "('cancelled', 'compensated', 'compensation_failed')"
_TERMINAL = "('completed', 'failed', 'cancelled', 'compensated', 'compensation_failed')"
_STEP_COLS = (
    "run_id, step_key, name, status, attempts, idempotency_key, result, error, "
    "started_at, completed_at, updated_at"
)
_LOCK_COLS = (
    "scope, key, holder, generation, run_id, detail, acquired_at, heartbeat_at, "
    "expires_at, released_at"
)


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


def _odt(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(x, UTC)


def _run(r: Sequence[Any]) -> RunRow:
    return RunRow(
        workflow_id=r[0],
        workflow_name=r[1],
        workflow_version=r[2],
        status=RunStatus(r[3]),
        input=r[4],
        output=r[5],
        error=r[6],
        state=r[7],
        priority=r[8],
        tags=tuple(json.loads(r[9])),
        tenant=r[10],
        parent_id=r[11],
        idempotency_key=r[12],
        owner=r[13],
        generation=r[14],
        created_at=_dt(r[15]),
        updated_at=_dt(r[16]),
        started_at=_odt(r[17]),
        finished_at=_odt(r[18]),
        compute_seconds=r[19],
        cancel_requested=r[20],
    )


def _wait(r: Sequence[Any]) -> WaitRow:
    return WaitRow(
        id=r[0],
        workflow_id=r[1],
        key=r[2],
        kind=WaitKind(r[3]),
        name=r[4],
        match=r[5],
        status=WaitStatus(r[6]),
        payload=r[7],
        due_at=_odt(r[8]),
        created_at=_dt(r[9]),
        resolved_at=_odt(r[10]),
    )


def _step(r: Sequence[Any]) -> StepRow:
    return StepRow(
        workflow_id=r[0],
        key=r[1],
        name=r[2],
        status=StepStatus(r[3]),
        attempts=r[4],
        idempotency_key=r[5],
        result=r[6],
        error=r[7],
        started_at=_odt(r[8]),
        completed_at=_odt(r[9]),
        updated_at=_dt(r[10]),
    )


def _lock(r: Sequence[Any]) -> LockRow:
    return LockRow(
        scope=r[0],
        key=r[1],
        holder=r[2],
        generation=r[3],
        run_id=r[4],
        detail=r[5],
        acquired_at=_dt(r[6]),
        heartbeat_at=_dt(r[7]),
        expires_at=_dt(r[8]),
        released_at=_odt(r[9]),
    )


class SQLiteStore:
    """Store on a SQLite file (or ``:memory:``)."""

    dialect = "sqlite"

    def __init__(self, url: str, *, durability: str | Durability | None = None) -> None:
        self.url = url
        self.config = parse_sqlite_url(url, durability)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        # held while a transaction uses the connection, whichever thread runs it
        self._conn_lock = threading.Lock()
        self._sync: str | None = None
        self._full = "FULL" if self.config.durability is Durability.FULL else "NORMAL"

    # -- plumbing ------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            # one lock per event loop (the sync facade runs a new loop per call)
            self._locks = {lp: lk for lp, lk in self._locks.items() if not lp.is_closed()}
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            await self.open()
        async with self._lock():
            if self._conn_lock.acquire(blocking=False):
                try:
                    return self._guard(fn)
                except _Busy:
                    pass
                finally:
                    self._conn_lock.release()
            assert self._executor is not None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._patient, fn)

    def _guard(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("the SQLite store is closed")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.config.path}: {exc}") from exc

    def _patient(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Retry `fn` while another process holds the write lock (in a helper thread)."""
        deadline = time.monotonic() + self.config.busy_timeout
        delay = 0.0005
        while True:
            try:
                with self._conn_lock:
                    return self._guard(fn)
            except _Busy:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"SQLite database {self.config.path!r} stayed locked by another "
                        f"process for {self.config.busy_timeout:g}s; raise ?busy_timeout= "
                        "or find the process holding a long write transaction"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    def _write(self, conn: sqlite3.Connection, sync: str, fn: Callable[[], T]) -> T:
        if sync != self._sync:
            conn.execute(f"PRAGMA synchronous={sync}")
            self._sync = sync
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in _BUSY_CODES:
                raise _Busy from None
            raise
        try:
            result = fn()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tether-sqlite")
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if conn is not None:
                executor.submit(conn.close).result()
            executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        path = self.config.path
        if not self.config.in_memory:
            parent = Path(path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot create the folder {str(parent)!r} for the SQLite database: {exc}"
                ) from exc
            if Path(path).is_dir():
                raise StoreUnavailableError(f"{path!r} is a directory, not a SQLite database file")
        try:
            conn = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.config.busy_timeout,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite database {path!r}: {exc}") from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        path = self.config.path
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise IncompatibleStoreError(
                f"{path!r} is not a readable SQLite database ({exc}); point tether at a new "
                "file or at an existing tether database"
            ) from exc
        if app_id not in (0, APPLICATION_ID) or (tables and "schema_version" not in tables):
            raise IncompatibleStoreError(
                f"{path!r} is a SQLite database that tether did not create (it has other "
                "tables); give tether its own file, e.g. sqlite:///.tether/tether.db"
            )
        try:
            if not self.config.in_memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.config.busy_timeout * 1000)}")
            self._migrate(conn)
            conn.execute("PRAGMA busy_timeout=0")  # from here on, _call handles waiting
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"cannot prepare SQLite database {path!r}: {exc}") from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        known = latest_version(self.dialect)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()[0]
            if current > known:
                raise IncompatibleStoreError(
                    f"{self.config.path!r} was written by a newer tether (schema version "
                    f"{current}; this tether knows up to {known}); upgrade tether to open it"
                )
            for mig in migrations(self.dialect):
                if mig.version <= current:
                    continue
                for statement in _statements(mig.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (mig.version, mig.name, time.time()),
                )
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def schema_version(self) -> int:
        assert self._conn is not None
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # -- fencing and event sequence ------------------------------------------------------

    def _bump(self, conn: sqlite3.Connection, fence: Fence, n_events: int, at: float) -> int:
        """Check the fence and reserve `n_events` sequence numbers; the first one."""
        if fence.generation is None:
            row = conn.execute(
                "UPDATE runs SET event_seq = event_seq + ?, updated_at = ? WHERE id = ? "
                "RETURNING event_seq",
                (n_events, at, fence.workflow_id),
            ).fetchone()
        elif fence.compensating:
            row = conn.execute(
                "UPDATE runs SET event_seq = event_seq + ?, updated_at = ? "
                "WHERE id = ? AND owner_generation = ? RETURNING event_seq",
                (n_events, at, fence.workflow_id, fence.generation),
            ).fetchone()
        else:
            row = conn.execute(
                "UPDATE runs SET event_seq = event_seq + ?, updated_at = ? "
                f"WHERE id = ? AND owner_generation = ? AND status NOT IN {_CLOSED} "
                "RETURNING event_seq",
                (n_events, at, fence.workflow_id, fence.generation),
            ).fetchone()
        if row is None:
            found = conn.execute(
                "SELECT owner_generation FROM runs WHERE id = ?", (fence.workflow_id,)
            ).fetchone()
            if found is None:
                raise RunNotFoundError(fence.workflow_id)
            if found[0] != fence.generation:
                raise StaleOwnerError(fence.workflow_id, fence.generation)
            raise RunCancelledError(fence.workflow_id)
        return int(row[0]) - n_events + 1

    def _events(
        self,
        conn: sqlite3.Connection,
        fence: Fence,
        events: Sequence[NewEvent],
        at: float,
    ) -> None:
        first = self._bump(conn, fence, len(events), at)
        conn.executemany(
            "INSERT INTO events (run_id, seq, type, message, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (fence.workflow_id, first + i, e.type, e.message, e.detail, at)
                for i, e in enumerate(events)
            ],
        )

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> tuple[RunRow, bool]:
            def tx() -> tuple[RunRow, bool]:
                cur = conn.execute(
                    "INSERT INTO runs (id, workflow_name, workflow_version, status, input, state, "
                    "priority, tags, tenant, parent_id, idempotency_key, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        run.workflow_id,
                        run.workflow_name,
                        run.workflow_version,
                        run.input,
                        run.state,
                        run.priority,
                        json.dumps(list(run.tags)),
                        run.tenant,
                        run.parent_id,
                        run.idempotency_key,
                        ts,
                        ts,
                    ),
                )
                created = cur.rowcount == 1
                row = conn.execute(
                    f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run.workflow_id,)
                ).fetchone()
                if row is None:  # the idempotency key names an existing run
                    row = conn.execute(
                        f"SELECT {_RUN_COLS} FROM runs WHERE idempotency_key = ?",
                        (run.idempotency_key,),
                    ).fetchone()
                return _run(row), created

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def get_run(self, workflow_id: str) -> RunRow | None:
        def go(conn: sqlite3.Connection) -> RunRow | None:
            row = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (workflow_id,)
            ).fetchone()
            return None if row is None else _run(row)

        return await self._call(go)

    async def list_runs(self, *, status: RunStatus | None = None, limit: int = 100) -> list[RunRow]:
        def go(conn: sqlite3.Connection) -> list[RunRow]:
            if status is None:
                rows = conn.execute(
                    f"SELECT {_RUN_COLS} FROM runs ORDER BY created_at DESC, id LIMIT ?", (limit,)
                )
            else:
                rows = conn.execute(
                    f"SELECT {_RUN_COLS} FROM runs WHERE status = ? "
                    "ORDER BY created_at DESC, id LIMIT ?",
                    (status.value, limit),
                )
            return [_run(r) for r in rows]

        return await self._call(go)

    async def claim_run(
        self,
        workflow_id: str,
        owner: str,
        at: datetime,
        event: NewEvent,
        *,
        compensating: bool = False,
    ) -> RunRow:
        ts = _ts(at)
        if compensating:
            sql = (
                "UPDATE runs SET owner = ?, owner_generation = owner_generation + 1, "
                "updated_at = ? WHERE id = ? AND status = 'cancelled' "
                f"AND cancel_requested = 'compensate' RETURNING {_RUN_COLS}"
            )
            params: tuple[Any, ...] = (owner, ts, workflow_id)
        else:
            sql = (
                "UPDATE runs SET owner = ?, owner_generation = owner_generation + 1, "
                "status = 'running', started_at = COALESCE(started_at, ?), finished_at = NULL, "
                f"updated_at = ? WHERE id = ? AND status NOT IN {_CLOSED} RETURNING {_RUN_COLS}"
            )
            params = (owner, ts, ts, workflow_id)

        def go(conn: sqlite3.Connection) -> RunRow:
            def tx() -> RunRow:
                row = conn.execute(sql, params).fetchone()
                if row is None:
                    found = conn.execute(
                        "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                    ).fetchone()
                    if found is None:
                        raise RunNotFoundError(workflow_id)
                    raise RunFinishedError(workflow_id, found[0], "resume")
                claimed = _run(row)
                self._events(
                    conn, Fence(workflow_id, claimed.generation, compensating), [event], ts
                )
                return claimed

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def finish_run(
        self,
        fence: Fence,
        status: RunStatus,
        *,
        output: str | None,
        error: str | None,
        at: datetime,
        event: NewEvent,
        compute_seconds: float = 0.0,
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE runs SET status = ?, output = ?, error = COALESCE(?, error), "
                    "finished_at = ?, compute_seconds = compute_seconds + ?, "
                    "cancel_requested = NULL WHERE id = ?",
                    (status.value, output, error, ts, compute_seconds, fence.workflow_id),
                )
                if status.terminal:
                    self._child_ended(conn, fence.workflow_id, status, output, error, ts)

            self._write(conn, self._full, tx)

        await self._call(go)

    async def set_state(self, fence: Fence, state: str, at: datetime, event: NewEvent) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute("UPDATE runs SET state = ? WHERE id = ?", (state, fence.workflow_id))

            self._write(conn, self._full, tx)

        await self._call(go)

    # -- events ------------------------------------------------------------------------------

    async def append_events(self, fence: Fence, events: Sequence[NewEvent], at: datetime) -> None:
        if not events:
            return
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            self._write(conn, self._full, lambda: self._events(conn, fence, events, ts))

        await self._call(go)

    async def list_events(
        self, workflow_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRow]:
        def go(conn: sqlite3.Connection) -> list[EventRow]:
            rows = conn.execute(
                "SELECT run_id, seq, type, message, detail, at FROM events "
                "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (workflow_id, after_seq, -1 if limit is None else limit),
            )
            return [EventRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5])) for r in rows]

        return await self._call(go)

    # -- steps -------------------------------------------------------------------------------

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        def go(conn: sqlite3.Connection) -> list[StepRow]:
            rows = conn.execute(
                f"SELECT {_STEP_COLS} FROM steps WHERE run_id = ? ORDER BY started_at, step_key",
                (workflow_id,),
            )
            return [_step(r) for r in rows]

        return await self._call(go)

    async def start_step(
        self,
        fence: Fence,
        key: str,
        *,
        idempotency_key: str | None,
        at: datetime,
        event: NewEvent,
    ) -> StepRow:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> StepRow:
            def tx() -> StepRow:
                self._events(conn, fence, [event], ts)
                row = conn.execute(
                    "INSERT INTO steps (run_id, step_key, name, status, attempts, idempotency_key, "
                    "started_at, updated_at) VALUES (?, ?, ?, 'running', 1, ?, ?, ?) "
                    "ON CONFLICT (run_id, step_key) DO UPDATE SET status = 'running', "
                    "attempts = CASE WHEN steps.idempotency_key IS excluded.idempotency_key "
                    "  THEN steps.attempts + 1 ELSE 1 END, "
                    "result = CASE WHEN steps.idempotency_key IS excluded.idempotency_key "
                    "  THEN steps.result ELSE NULL END, "
                    "idempotency_key = excluded.idempotency_key, completed_at = NULL, "
                    "started_at = excluded.started_at, updated_at = excluded.updated_at "
                    f"RETURNING {_STEP_COLS}",
                    (fence.workflow_id, key, key, idempotency_key, ts, ts),
                ).fetchone()
                return _step(row)

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def complete_step(
        self, fence: Fence, key: str, *, result: str, at: datetime, event: NewEvent
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE steps SET status = 'completed', result = ?, error = NULL, "
                    "completed_at = ?, updated_at = ? WHERE run_id = ? AND step_key = ?",
                    (result, ts, ts, fence.workflow_id, key),
                )

            self._write(conn, self._full, tx)

        await self._call(go)

    async def fail_step(
        self,
        fence: Fence,
        key: str,
        *,
        error: str,
        final: bool,
        at: datetime,
        event: NewEvent,
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "UPDATE steps SET status = 'failed', error = ?, updated_at = ? "
                    "WHERE run_id = ? AND step_key = ?",
                    (error, ts, fence.workflow_id, key),
                )

            self._write(conn, self._full if final else "NORMAL", tx)

        await self._call(go)

    # -- locks ---------------------------------------------------------------------------------

    async def acquire_lock(
        self,
        scope: str,
        key: str,
        holder: str,
        *,
        ttl: float,
        now: datetime | None,
        fence: Fence | None = None,
        detail: str | None = None,
        on_acquire: NewEvent | None = None,
        on_renew: NewEvent | None = None,
        at: datetime,
    ) -> LockResult:
        at_ts = _ts(at)

        def go(conn: sqlite3.Connection) -> LockResult:
            def tx() -> LockResult:
                now_ts = time.time() if now is None else _ts(now)
                cur = conn.execute(
                    f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
                ).fetchone()
                active = cur is not None and cur[9] is None and cur[8] > now_ts
                if active and cur[2] != holder:
                    return LockResult(LockOutcome.CONFLICT, _lock(cur))
                run_id = fence.workflow_id if fence else None
                if active:
                    outcome, event = LockOutcome.RENEWED, on_renew
                    row = conn.execute(
                        "UPDATE locks SET heartbeat_at = ?, expires_at = ?, "
                        "detail = COALESCE(?, detail) "
                        f"WHERE scope = ? AND key = ? RETURNING {_LOCK_COLS}",
                        (now_ts, now_ts + ttl, detail, scope, key),
                    ).fetchone()
                else:
                    outcome, event = LockOutcome.ACQUIRED, on_acquire
                    row = conn.execute(
                        "INSERT INTO locks (scope, key, holder, generation, run_id, detail, "
                        "acquired_at, heartbeat_at, expires_at, released_at) "
                        "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, NULL) "
                        "ON CONFLICT (scope, key) DO UPDATE SET holder = excluded.holder, "
                        "generation = locks.generation + 1, run_id = excluded.run_id, "
                        "detail = excluded.detail, acquired_at = excluded.acquired_at, "
                        "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, "
                        f"released_at = NULL RETURNING {_LOCK_COLS}",
                        (scope, key, holder, run_id, detail, now_ts, now_ts, now_ts + ttl),
                    ).fetchone()
                if fence is not None and event is not None:
                    self._events(conn, fence, [event], at_ts)
                return LockResult(outcome, _lock(row))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def renew_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None
    ) -> LockRow | None:
        def go(conn: sqlite3.Connection) -> LockRow | None:
            def tx() -> LockRow | None:
                now_ts = time.time() if now is None else _ts(now)
                row = conn.execute(
                    "UPDATE locks SET heartbeat_at = ?, expires_at = ? "
                    "WHERE scope = ? AND key = ? AND holder = ? AND released_at IS NULL "
                    f"AND expires_at > ? RETURNING {_LOCK_COLS}",
                    (now_ts, now_ts + ttl, scope, key, holder, now_ts),
                ).fetchone()
                return None if row is None else _lock(row)

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def release_lock(
        self,
        scope: str,
        key: str,
        holder: str | None,
        *,
        now: datetime | None,
        fence: Fence | None = None,
        event: NewEvent | None = None,
        at: datetime,
    ) -> LockResult | None:
        at_ts = _ts(at)

        def go(conn: sqlite3.Connection) -> LockResult | None:
            def tx() -> LockResult | None:
                now_ts = time.time() if now is None else _ts(now)
                cur = conn.execute(
                    f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
                ).fetchone()
                if cur is None or cur[9] is not None:
                    return None
                if holder is not None and cur[2] != holder:
                    if cur[8] > now_ts:
                        return LockResult(LockOutcome.CONFLICT, _lock(cur))
                    return None  # someone else's expired lock: nothing of ours to release
                row = conn.execute(
                    f"UPDATE locks SET released_at = ? WHERE scope = ? AND key = ? "
                    f"RETURNING {_LOCK_COLS}",
                    (now_ts, scope, key),
                ).fetchone()
                if fence is not None and event is not None:
                    self._events(conn, fence, [event], at_ts)
                return LockResult(LockOutcome.ACQUIRED, _lock(row))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def get_lock(self, scope: str, key: str) -> LockRow | None:
        def go(conn: sqlite3.Connection) -> LockRow | None:
            row = conn.execute(
                f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            return None if row is None else _lock(row)

        return await self._call(go)

    async def list_locks(self, scope: str) -> list[LockRow]:
        def go(conn: sqlite3.Connection) -> list[LockRow]:
            rows = conn.execute(
                f"SELECT {_LOCK_COLS} FROM locks WHERE scope = ? ORDER BY key", (scope,)
            )
            return [_lock(r) for r in rows]

        return await self._call(go)

    # -- heartbeats ----------------------------------------------------------------------------

    async def record_heartbeat(
        self, fence: Fence, key: str, detail: str | None, at: datetime, event: NewEvent
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._events(conn, fence, [event], ts)
                conn.execute(
                    "INSERT INTO heartbeats (run_id, key, at, detail) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id, key) DO UPDATE SET at = excluded.at, "
                    "detail = excluded.detail",
                    (fence.workflow_id, key, ts, detail),
                )

            self._write(conn, "NORMAL", tx)

        await self._call(go)

    async def list_heartbeats(self, workflow_id: str) -> list[HeartbeatRow]:
        def go(conn: sqlite3.Connection) -> list[HeartbeatRow]:
            rows = conn.execute(
                "SELECT run_id, key, at, detail FROM heartbeats WHERE run_id = ? ORDER BY key",
                (workflow_id,),
            )
            return [HeartbeatRow(r[0], r[1], _dt(r[2]), r[3]) for r in rows]

        return await self._call(go)

    # -- parked runs -----------------------------------------------------------------------

    def _wake(
        self, conn: sqlite3.Connection, waits: Sequence[tuple[str, str, str]], at: float
    ) -> list[str]:
        """Record resolutions (run id, wait key, outcome) and make waiting runs runnable."""
        woken: list[str] = []
        for run_id, key, outcome in waits:
            self._events(
                conn,
                Fence(run_id),
                [NewEvent(f"wait.{outcome}", key)],
                at,
            )
            row = conn.execute(
                "UPDATE runs SET status = 'pending' WHERE id = ? AND status = 'waiting' "
                "RETURNING id",
                (run_id,),
            ).fetchone()
            if row is not None and run_id not in woken:
                woken.append(run_id)
        return woken

    def _child_ended(
        self,
        conn: sqlite3.Connection,
        child_id: str,
        status: RunStatus,
        output: str | None,
        error: str | None,
        at: float,
    ) -> list[str]:
        payload = _outcome(status.value, output, error)
        rows = conn.execute(
            "UPDATE waitpoints SET status = 'resolved', payload = ?, resolved_at = ? "
            "WHERE kind = 'run' AND name = ? AND status = 'pending' RETURNING run_id, wait_key",
            (payload, at, child_id),
        ).fetchall()
        return self._wake(conn, [(r[0], r[1], "resolved") for r in rows], at)

    def _try_resolve(self, conn: sqlite3.Connection, w: WaitRow, at: float) -> WaitRow:
        """Resolve a fresh pending waitpoint from what already arrived, if anything did."""
        payload: str | None = None
        inbox_id: int | None = None
        if w.kind is WaitKind.SIGNAL:
            hit = conn.execute(
                "SELECT id, payload FROM inbox WHERE kind = 'signal' AND name = ? AND target = ? "
                "AND consumed_by IS NULL AND expires_at > ? ORDER BY id LIMIT 1",
                (w.name, w.workflow_id, at),
            ).fetchone()
            if hit is None:
                return w
            inbox_id, payload = hit
            conn.execute("UPDATE inbox SET consumed_by = ? WHERE id = ?", (w.id, inbox_id))
        elif w.kind is WaitKind.EVENT:
            created = conn.execute(
                "SELECT created_at FROM runs WHERE id = ?", (w.workflow_id,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT id, payload FROM inbox WHERE kind = 'event' AND name = ? "
                "AND created_at >= ? AND expires_at > ? AND id NOT IN "
                "(SELECT inbox_id FROM waitpoints WHERE run_id = ? AND inbox_id IS NOT NULL) "
                "ORDER BY id",
                (w.name, created, at, w.workflow_id),
            )
            for iid, body in rows:
                if matches(w.match, body):
                    inbox_id, payload = iid, body
                    break
            else:
                return w
        elif w.kind is WaitKind.RUN:
            child = conn.execute(
                "SELECT status, output, error FROM runs WHERE id = ?", (w.name,)
            ).fetchone()
            if child is None or not RunStatus(child[0]).terminal:
                return w
            payload = _outcome(child[0], child[1], child[2])
        else:
            return w
        row = conn.execute(
            "UPDATE waitpoints SET status = 'resolved', payload = ?, inbox_id = ?, "
            f"resolved_at = ? WHERE id = ? RETURNING {_WAIT_COLS}",
            (payload, inbox_id, at, w.id),
        ).fetchone()
        return _wait(row)

    async def register_wait(self, fence: Fence, wait: NewWait, at: datetime) -> WaitRow:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> WaitRow:
            def tx() -> WaitRow:
                found = conn.execute(
                    f"SELECT {_WAIT_COLS} FROM waitpoints WHERE run_id = ? AND wait_key = ?",
                    (fence.workflow_id, wait.key),
                ).fetchone()
                if found is not None:
                    existing = _wait(found)
                    if existing.status is WaitStatus.PENDING:
                        return self._try_resolve(conn, existing, ts)
                    return existing
                self._events(conn, fence, [NewEvent("wait.registered", wait.key)], ts)
                row = conn.execute(
                    "INSERT INTO waitpoints (id, run_id, wait_key, kind, name, match, status, "
                    "due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
                    f"RETURNING {_WAIT_COLS}",
                    (
                        wait.wait_id or uuid.uuid4().hex,
                        fence.workflow_id,
                        wait.key,
                        wait.kind.value,
                        wait.name,
                        wait.match,
                        None if wait.due_at is None else _ts(wait.due_at),
                        ts,
                    ),
                ).fetchone()
                return self._try_resolve(conn, _wait(row), ts)

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def list_waits(self, workflow_id: str) -> list[WaitRow]:
        def go(conn: sqlite3.Connection) -> list[WaitRow]:
            rows = conn.execute(
                f"SELECT {_WAIT_COLS} FROM waitpoints WHERE run_id = ? ORDER BY created_at, wait_key",
                (workflow_id,),
            )
            return [_wait(r) for r in rows]

        return await self._call(go)

    async def park_run(
        self, fence: Fence, keys: Sequence[str], *, compute_seconds: float, at: datetime
    ) -> bool:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> bool:
            def tx() -> bool:
                marks = ",".join("?" * len(keys))
                ready = conn.execute(
                    f"SELECT 1 FROM waitpoints WHERE run_id = ? AND wait_key IN ({marks}) "
                    "AND status != 'pending' LIMIT 1",
                    (fence.workflow_id, *keys),
                ).fetchone()
                if ready is not None:
                    return False
                self._events(conn, fence, [NewEvent("workflow.waiting", ", ".join(keys))], ts)
                conn.execute(
                    "UPDATE runs SET status = 'waiting', compute_seconds = compute_seconds + ? "
                    "WHERE id = ?",
                    (compute_seconds, fence.workflow_id),
                )
                return True

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def send_event(
        self, type: str, payload: str | None, *, at: datetime, expires_at: datetime
    ) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                inbox_id = conn.execute(
                    "INSERT INTO inbox (kind, name, payload, created_at, expires_at) "
                    "VALUES ('event', ?, ?, ?, ?) RETURNING id",
                    (type, payload, ts, _ts(expires_at)),
                ).fetchone()[0]
                pending = conn.execute(
                    "SELECT id, run_id, wait_key, match FROM waitpoints "
                    "WHERE kind = 'event' AND name = ? AND status = 'pending' ORDER BY created_at",
                    (type,),
                ).fetchall()
                resolved: list[tuple[str, str, str]] = []
                seen_runs: set[str] = set()
                for wid, run_id, key, match in pending:
                    if run_id in seen_runs or not matches(match, payload):
                        continue  # one event resolves at most one wait per run
                    seen_runs.add(run_id)
                    conn.execute(
                        "UPDATE waitpoints SET status = 'resolved', payload = ?, inbox_id = ?, "
                        "resolved_at = ? WHERE id = ?",
                        (payload, inbox_id, ts, wid),
                    )
                    resolved.append((run_id, key, "resolved"))
                return self._wake(conn, resolved, ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: str | None,
        *,
        at: datetime,
        expires_at: datetime,
    ) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                run = conn.execute(
                    "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                ).fetchone()
                if run is None:
                    raise RunNotFoundError(workflow_id)
                if RunStatus(run[0]).terminal:
                    raise RunFinishedError(workflow_id, run[0], f"signal {name!r} to")
                wait = conn.execute(
                    "SELECT id, wait_key FROM waitpoints WHERE run_id = ? AND kind = 'signal' "
                    "AND name = ? AND status = 'pending' ORDER BY created_at LIMIT 1",
                    (workflow_id, name),
                ).fetchone()
                if wait is None:
                    conn.execute(
                        "INSERT INTO inbox (kind, target, name, payload, created_at, expires_at) "
                        "VALUES ('signal', ?, ?, ?, ?, ?)",
                        (workflow_id, name, payload, ts, _ts(expires_at)),
                    )
                    self._events(conn, Fence(workflow_id), [NewEvent("signal.kept", name)], ts)
                    return []
                conn.execute(
                    "UPDATE waitpoints SET status = 'resolved', payload = ?, resolved_at = ? "
                    "WHERE id = ?",
                    (payload, ts, wait[0]),
                )
                return self._wake(conn, [(workflow_id, wait[1], "resolved")], ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def complete_token(self, token_id: str, payload: str | None, *, at: datetime) -> str:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> str:
            def tx() -> str:
                row = conn.execute(
                    "SELECT run_id, wait_key, status FROM waitpoints WHERE id = ? AND kind = 'token'",
                    (token_id,),
                ).fetchone()
                if row is None:
                    raise TokenNotFoundError(token_id)
                if row[2] != "pending":
                    raise InvalidArgumentError(
                        f"token {token_id!r} was already {row[2].replace('_', ' ')}; "
                        "a token completes once"
                    )
                conn.execute(
                    "UPDATE waitpoints SET status = 'resolved', payload = ?, resolved_at = ? "
                    "WHERE id = ?",
                    (payload, ts, token_id),
                )
                self._wake(conn, [(row[0], row[1], "resolved")], ts)
                return str(row[0])

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def fire_due(self, *, now: datetime | None, at: datetime) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                now_ts = time.time() if now is None else _ts(now)
                rows = conn.execute(
                    "UPDATE waitpoints SET status = CASE kind WHEN 'timer' THEN 'resolved' "
                    "ELSE 'timed_out' END, resolved_at = ? "
                    "WHERE status = 'pending' AND due_at IS NOT NULL AND due_at <= ? "
                    "RETURNING run_id, wait_key, status",
                    (ts, now_ts),
                ).fetchall()
                conn.execute("DELETE FROM inbox WHERE expires_at <= ?", (now_ts,))
                return self._wake(conn, [(r[0], r[1], r[2]) for r in rows], ts)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def cancel_run(
        self, workflow_id: str, *, reason: str | None, compensate: bool, at: datetime
    ) -> list[str]:
        ts = _ts(at)
        error = json.dumps(
            {"type": "Cancelled", "message": reason or "cancelled", "traceback": None}
        )

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                run = conn.execute(
                    "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                ).fetchone()
                if run is None:
                    raise RunNotFoundError(workflow_id)
                if RunStatus(run[0]).terminal:
                    raise RunFinishedError(workflow_id, run[0], "cancel")
                cancelled: list[str] = []
                todo = [workflow_id]
                while todo:
                    rid = todo.pop(0)
                    row = conn.execute(
                        "UPDATE runs SET status = 'cancelled', error = ?, finished_at = ?, "
                        "cancel_requested = ? "
                        f"WHERE id = ? AND status NOT IN {_TERMINAL} RETURNING id",
                        (error, ts, "compensate" if compensate else None, rid),
                    ).fetchone()
                    if row is None:
                        continue
                    cancelled.append(rid)
                    self._events(conn, Fence(rid), [NewEvent("workflow.cancelled", reason)], ts)
                    children = conn.execute(
                        "UPDATE waitpoints SET status = 'cancelled', resolved_at = ? "
                        "WHERE run_id = ? AND status = 'pending' RETURNING kind, name",
                        (ts, rid),
                    ).fetchall()
                    todo.extend(name for kind, name in children if kind == "run")
                    for parent in self._child_ended(
                        conn, rid, RunStatus.CANCELLED, None, error, ts
                    ):
                        del parent  # a parent waiting on a cancelled child is woken to see it
                return cancelled

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def save_value(self, fence: Fence, key: str, value: str, at: datetime) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                self._bump(conn, fence, 0, ts)
                conn.execute(
                    "INSERT INTO steps (run_id, step_key, name, status, attempts, result, "
                    "started_at, completed_at, updated_at) "
                    "VALUES (?, ?, ?, 'completed', 1, ?, ?, ?, ?) "
                    "ON CONFLICT (run_id, step_key) DO NOTHING",
                    (fence.workflow_id, key, key, value, ts, ts, ts),
                )

            self._write(conn, self._full, tx)

        await self._call(go)


def _outcome(status: str, output: str | None, error: str | None) -> str:
    """The payload a parent's wait on a child run resolves with."""
    return (
        '{"status":'
        + json.dumps(status)
        + ',"output":'
        + (output if output is not None else "null")
        + ',"error":'
        + (error if error is not None else "null")
        + "}"
    )


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit early)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf.append(line)
        text = "".join(buf)
        if sqlite3.complete_statement(text):
            out.append(text.strip())
            buf = []
    if "".join(buf).strip():
        raise StoreError(f"incomplete SQL statement in migration: {''.join(buf)[:80]!r}")
    return out
