"""The SQLite adapter: its plumbing only; the verbs are shared (`_verbs_*`).

One connection, so statements stay prepared (sqlite3 caches them per
connection). Writes use ``BEGIN IMMEDIATE``: the write lock is taken up front,
so concurrent processes queue instead of deadlocking on a read-to-write
upgrade, and nothing else need be locked (`Tx.lock_run` is a plain read).

Where a transaction runs: right on the event loop. Handing it to a thread
costs more (a wake-up of the loop, ~0.1-0.2 ms on a VM) than the fsync it
would hide. A threading lock guards the connection against loops in other
threads; it is safe to hold across the body because a SQLite body never
truly suspends (its awaits finish at once). If the lock is taken, or another
process holds the write lock, the transaction backs off with ``asyncio.sleep``
(growing delays, up to ``busy_timeout``) without holding anything.

Durability per transaction: WAL mode, and ``synchronous`` switched per
transaction. A step's start marker only has to survive a process crash, so it
commits with ``NORMAL`` (no fsync); its completion commits with ``FULL``
(fsync of the WAL, which also hardens every earlier frame). A completion is
held for the store's next transaction (`_deferred`): in a sequential run that
is the next step's start marker, so a step costs one durable commit, not two.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    IncompatibleStoreError,
    RunCancelledError,
    RunNotFoundError,
    StaleOwnerError,
    StoreError,
    StoreUnavailableError,
)
from ._base import Mode, Tx
from ._deferred import Deferred
from ._migrations import failed, pending
from ._port import Store
from ._records import Claimed, Fence, NewEvent, StepRow
from ._rows import SQLITE_ROWS, started_step
from ._sql import queries
from ._sqlite_changes import Mark, Notes, mark, wait_for_news
from ._url import Durability, parse_sqlite_url
from ._verbs_ai import split_attached, write_calls
from ._verbs_runs import HeldCompletion

__all__ = ["SQLiteStore"]

T = TypeVar("T")
log = logging.getLogger("tether.store")
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_Q = queries("sqlite")
# A query `q` with a `q_then` answers with the rows of `q_then`, run right after it in
# the same transaction: the step path's writes without a RETURNING clause, which costs
# SQLite more than a second statement (queries/sqlite.sql, `bump`)
_THEN = {name: _Q[f"{name}_then"] for name in _Q if f"{name}_then" in _Q}
# PRAGMA application_id marks a file as tether's ("TETH").
APPLICATION_ID = 0x54455448


def _epoch(value: Any) -> Any:
    """A parameter as `SQLiteTx._run` passes it: a datetime as epoch seconds (a subclass
    too: a pandas Timestamp or a freezegun time was "type 'Timestamp' is not supported")."""
    return value.timestamp() if isinstance(value, datetime) else value


class _Busy(Exception):
    """The connection or the database's write lock is taken; nothing began."""


_BLOB_SLICE = 1 << 20  # a blob's body is written a MiB at a time (`SQLiteTx.write_blob`)


class SQLiteTx:
    """A transaction on the store's one connection; times are epoch seconds."""

    rows = SQLITE_ROWS

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.notified: list[str] = []  # the channels this transaction would notify

    def _run(self, name: str, params: dict[str, Any]) -> sqlite3.Cursor:
        for k, v in params.items():
            if isinstance(v, datetime):  # as `_epoch` does
                params[k] = v.timestamp()
        cursor = self._conn.execute(_Q[name], params)
        then = _THEN.get(name)
        return cursor if then is None else self._conn.execute(then, params)

    async def one(self, name: str, /, **params: Any) -> Any:
        return self._run(name, params).fetchone()

    async def all(self, name: str, /, **params: Any) -> list[Any]:
        return self._run(name, params).fetchall()

    async def execute(self, name: str, /, **params: Any) -> int:
        return self._run(name, params).rowcount

    async def many(self, reads: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
        return [self._run(name, dict(params)).fetchall() for name, params in reads]

    async def read_blob(self, key: str) -> bytes | None:
        """Blob `key`'s body, or None: its row found, then its bytes read into the bytes
        returned (`blobopen`), in one read transaction (the row of one put). As a
        column value it was held twice: SQLite's copy of the value, then Python's."""
        conn = self._conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # deferred: a snapshot from the first read, no lock
        try:
            rows = conn.execute(_Q["get_blob"], {"key": key}).fetchall()
            if not rows:
                return None
            with conn.blobopen("blobs", "body", rows[0][0], readonly=True) as blob:
                return blob.read()
        finally:
            if own:
                conn.execute("COMMIT")

    async def write_blob(self, key: str, body: bytes, at: datetime) -> None:
        """Blob `key`'s row made with room for its body, then the body written into it
        a slice at a time (`blobopen`), in this transaction. Bound as a value, SQLite
        copied the body and built the row from the copy: a put of N bytes grew the
        process by about 2 N; now by a few MiB, whatever N."""
        (rowid,) = self._run("put_blob_room", {"key": key, "size": len(body), "at": at}).fetchone()
        view = memoryview(body)
        with self._conn.blobopen("blobs", "body", rowid) as blob:
            for start in range(0, len(view), _BLOB_SLICE):
                blob.write(view[start : start + _BLOB_SLICE])

    def now(self, now: datetime | None) -> float:
        return time.time() if now is None else now.timestamp()

    def array(self, items: Sequence[Any]) -> str:
        return json.dumps(list(items))

    async def notify(self, what: str) -> None:
        """Noted, and told to this store's waiters once committed (`_sqlite_changes`)."""
        self.notified.append(what)


class SQLiteStore(Store):
    """Store on a SQLite file (or ``:memory:``)."""

    dialect = "sqlite"

    def __init__(self, url: str, *, durability: str | Durability | None = None) -> None:
        super().__init__()
        self.url = url
        self.config = parse_sqlite_url(url, durability)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._txs: SQLiteTx | None = None  # the one transaction object over `_conn`
        # held while a transaction uses the connection, whichever thread's loop runs it
        self._conn_lock = threading.Lock()
        self._sync: str | None = None
        self._full = "FULL" if self.config.durability is Durability.FULL else "NORMAL"
        self.deferred: Deferred = Deferred(self._flush_deferred)  # ride on the next write
        self._notes = Notes()  # what committed transactions notified, for `wait_for_change`
        self._jobs_mark: Mark | None = None  # "jobs" as the last claim began to look

    # -- transactions --------------------------------------------------------------

    async def _tx(
        self, mode: Mode, body: Callable[[Tx], Awaitable[T]], *, single: bool = False
    ) -> T:
        if self._conn is None:
            await self.open()
        deadline, delay = 0.0, 0.0005
        while True:
            if self._conn_lock.acquire(blocking=False):
                try:
                    return await self._attempt(mode, body)
                except _Busy:
                    pass
                finally:
                    self._conn_lock.release()
            deadline = deadline or time.monotonic() + self.config.busy_timeout
            if time.monotonic() >= deadline:
                raise StoreError(self._locked())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def _attempt(self, mode: Mode, body: Callable[[Tx], Awaitable[T]]) -> T:
        """One try, holding the connection lock: `_Busy` if the write lock is taken.
        Held step completions go first, and make the transaction a durable write."""
        conn, tx = self._conn, self._txs
        if conn is None or tx is None:
            raise StoreError("the SQLite store is closed")
        held = self.deferred.take()
        try:
            if mode == "read" and not held:
                return await body(tx)
            self._begin(conn, self._full if mode == "write" or held else "NORMAL")
            tx.notified.clear()
            try:
                if held:
                    await self.deferred.write(tx, held)
                result = await body(tx)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if tx.notified:
                self._notes.add(tx.notified)
            return result
        except BaseException as exc:
            self.deferred.give_back(held)  # nothing was committed: they wait for the next
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"SQLite error on {self.config.path}: {exc}") from exc
            raise

    def _locked(self) -> str:
        return (
            f"SQLite database {self.config.path!r} stayed locked by another process for "
            f"{self.config.busy_timeout:g}s; raise ?busy_timeout= or find the process "
            "holding a long write transaction"
        )

    def _begin(self, conn: sqlite3.Connection, sync: str) -> None:
        if sync != self._sync:
            conn.execute(f"PRAGMA synchronous={sync}")
            self._sync = sync
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in _BUSY_CODES:
                raise _Busy from None
            raise

    async def _flush_deferred(self) -> None:
        """A transaction of its own for the held completions (none came to carry them)."""
        if self.deferred and self._conn is not None:
            await self._tx("write", _nothing)

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        """The start marker, with the run's held completion of its previous step in the
        same transaction under one fence check and one event-number bump (written on
        its own, the completion checks and bumps again): five statements a step between
        BEGIN and COMMIT (each on its own: six, after a read of the fence)."""
        done = self._fold(fence, key)
        if done is None:
            return await super().start_step(
                fence, key, idempotency_key=idempotency_key, at=at, event=event
            )
        try:
            row = await self._tx(
                "write", self._start_carrying(done, key, idempotency_key, at, event)
            )
        except (StaleOwnerError, RunCancelledError, RunNotFoundError):
            log.info("a held step completion was refused with its carrier: %s", done.key)
            raise  # the run's new owner (or its cancel) refuses both; the start says so
        except BaseException:
            self.deferred.give_back([done])  # nothing was committed: held for the next
            raise
        return started_step(fence.workflow_id, key, idempotency_key, row, at)

    def _start_carrying(
        self, done: HeldCompletion, key: str, ikey: str | None, at: datetime, event: NewEvent
    ) -> Callable[[Tx], Awaitable[Any]]:
        """The body of `start_step` carrying `done`: its events, the attached ones (in the
        order `done` writes them on its own) and the start's in one bump, ``"write"``
        mode (FULL) as it carries a completion."""
        fence, wid = done.fence, done.fence.workflow_id
        attached, calls = split_attached(done.rows)
        events = [done.event, *attached, event]

        async def body(tx: Tx) -> Any:
            # each time as a parameter once: five statements took them, and turned
            # each datetime into epoch seconds again (`SQLiteTx._run`)
            now, then = _epoch(at), _epoch(done.at)
            await self._events(tx, fence, events, now, ats=[then] * (len(events) - 1) + [now])
            await tx.execute(done.name, wid=wid, key=done.key, result=done.result, at=then)
            if calls:
                await write_calls(tx, wid, done.key, calls, then)
            return await tx.one("start_step", wid=wid, key=key, ikey=ikey, at=now)

        return body

    # -- connection and schema -----------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tether-sqlite")
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(self._executor, self._connect)
        self._conn, self._txs = conn, SQLiteTx(conn)

    async def close(self) -> None:
        await self._flush_deferred()
        conn, self._conn, self._txs = self._conn, None, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if conn is not None:
                with self._conn_lock:  # not while a loop in another thread uses it
                    executor.submit(conn.close).result()
            executor.shutdown(wait=True)

    async def schema_version(self) -> int:
        async def body(tx: Tx) -> int:
            assert self._conn is not None
            return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

        return await self._tx("read", body)

    async def wait_for_change(self, channel: str, timeout: float) -> bool:
        """No notifications in SQLite: polls, every few milliseconds, for this store's
        own writes to `channel` and for other processes' commits that a cheap read
        finds to be news for it (`_sqlite_changes`); returns within 50 ms."""
        if self._conn is None:
            await self.open()
        conn = self._conn
        if conn is None:
            return False
        since = None
        if channel == "jobs":  # news since the last claim began, once
            since, self._jobs_mark = self._jobs_mark, None
        return await wait_for_news(conn, self._conn_lock, self._notes, channel, timeout, since)

    async def claim_jobs(self, worker: str, queues: Sequence[str], **kw: Any) -> Claimed:
        if self._conn is not None:  # a job queued from here on is news to the next wait
            self._jobs_mark = mark(self._conn, self._conn_lock, self._notes, "jobs")
        return await super().claim_jobs(worker, queues, **kw)

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
            if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:  # readable, once free
                raise StoreUnavailableError(self._locked()) from exc
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
            conn.execute("PRAGMA busy_timeout=0")  # from here on, _tx backs off itself
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in _BUSY_CODES:
                raise StoreUnavailableError(self._locked()) from exc
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
        if self._up_to_date(conn):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version, where = current.fetchone()[0], repr(self.config.path)
            for mig in pending(self.dialect, version, where):
                try:
                    for statement in _statements(mig.sql):
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
                        raise
                    raise failed(mig, version, where, exc) from None
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (mig.version, mig.name, time.time()),
                )
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _up_to_date(self, conn: sqlite3.Connection) -> bool:
        """Whether the database is at this tether's schema, read without the write lock:
        opening one took that lock to find nothing to do, so a read-only command (`runs
        list`) waited out a writer's transaction, or failed once it took too long."""
        try:
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        except sqlite3.OperationalError:  # a new file: no schema yet
            return False
        if current is None or conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return False
        return not pending(self.dialect, current, repr(self.config.path))


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


async def _nothing(tx: Tx) -> None:
    """The body of a transaction that only carries held completions."""
