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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ..errors import (
    IncompatibleStoreError,
    RunCancelledError,
    RunNotFoundError,
    StaleOwnerError,
    StoreError,
    StoreUnavailableError,
)
from ._migrations import latest_version, migrations
from ._records import (
    Fence,
    NewEvent,
    NewRun,
    RunRow,
    RunStatus,
)
from ._rows import SQLITE_ROWS
from ._url import Durability, parse_sqlite_url

__all__ = ["SQLiteBase"]

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Busy(Exception):
    """Another connection holds the write lock; the transaction did not begin."""


T = TypeVar("T")

# PRAGMA application_id marks a file as tether's ("TETH").
APPLICATION_ID = 0x54455448

_RUN_COLS = (
    "id, workflow_name, workflow_version, status, input, output, error, state, priority, "
    "tags, tenant, parent_id, idempotency_key, owner, owner_generation, created_at, "
    "updated_at, started_at, finished_at, compute_seconds, cancel_requested, queue, "
    "owner_expires_at, step_rule"
)
_JOB_COLS = (
    "id, run_id, queue, status, priority, attempt, max_attempts, concurrency_key, worker, "
    "locked_until, run_after, last_error"
)
_WAIT_COLS = (
    "id, run_id, wait_key, kind, name, match, status, payload, due_at, created_at, resolved_at"
)
_CLOSED = "('cancelled', 'compensated', 'compensation_failed')"
# a run may be claimed unless another owner's claim on it is live; parameters: force (no
# check), the claimant, the time now, and an owner known to be dead (taken over by name)
_CLAIMABLE = (
    "(? OR status != 'running' OR owner IS NULL OR owner = ? OR owner_expires_at IS NULL "
    "OR owner_expires_at <= ? OR owner IS ?)"
)
# a run nobody drives: its owner's claim lapsed, or it sat runnable (pending) past a grace
# period; parameters: now, now - grace, now - grace
_ORPHAN = (
    "((status = 'running' AND (owner_expires_at <= ? OR (owner_expires_at IS NULL "
    "AND updated_at <= ?))) OR (status = 'pending' AND updated_at <= ?))"
)
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


_run = SQLITE_ROWS.run
_job = SQLITE_ROWS.job
_wait = SQLITE_ROWS.wait
_step = SQLITE_ROWS.step
_lock = SQLITE_ROWS.lock


class SQLiteBase:
    """Connection, transactions and shared helpers of the SQLite store."""

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
                self._enable_wal(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.config.busy_timeout * 1000)}")
            self._migrate(conn)
            conn.execute("PRAGMA busy_timeout=0")  # from here on, _call handles waiting
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"cannot prepare SQLite database {path!r}: {exc}") from exc

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting out other processes that open the same new file.

        Changing the journal mode needs an exclusive lock and SQLite does not
        run the busy handler for it, so the wait is ours.
        """
        deadline = time.monotonic() + self.config.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode not in _BUSY_CODES or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

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

    async def schema_version(self) -> int:
        def go(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

        return await self._call(go)

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
        for i, e in enumerate(events):  # one or two: plain executes beat executemany
            conn.execute(
                "INSERT INTO events (run_id, seq, type, message, detail, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (fence.workflow_id, first + i, e.type, e.message, e.detail, at),
            )

    async def wait_for_change(self, channel: str, timeout: float) -> bool:
        """SQLite has no notifications: wait one short poll interval."""
        await asyncio.sleep(max(0.0, min(timeout, 0.05)))
        return False

    # -- shared by the verbs -------------------------------------------------------

    def _insert_run(self, conn: sqlite3.Connection, run: NewRun, ts: float) -> tuple[RunRow, bool]:
        """Insert unless the id (or idempotency key) exists; (row, created)."""
        cur = conn.execute(
            "INSERT INTO runs (id, workflow_name, workflow_version, status, input, state, "
            "priority, tags, tenant, parent_id, idempotency_key, queue, created_at, updated_at, "
            "step_rule) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
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
                run.queue,
                ts,
                ts,
                run.step_rule,
            ),
        )
        created = cur.rowcount == 1
        row = conn.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run.workflow_id,)
        ).fetchone()
        if row is None:  # the idempotency key names an existing run
            row = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE idempotency_key = ?", (run.idempotency_key,)
            ).fetchone()
        return _run(row), created

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
                self._enqueue_next(conn, run_id, at)
        return woken

    def _enqueue_next(self, conn: sqlite3.Connection, run_id: str, at: float) -> None:
        """Queue a job for a queue-managed run unless it has an open one."""
        conn.execute(
            "INSERT INTO jobs (run_id, queue, status, priority, concurrency_key, run_after, "
            "created_at, updated_at) SELECT id, queue, 'queued', priority, concurrency_key, ?, ?, ? "
            "FROM runs WHERE id = ? AND queue IS NOT NULL ON CONFLICT DO NOTHING",
            (at, at, at, run_id),
        )

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
