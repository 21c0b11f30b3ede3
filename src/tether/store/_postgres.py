"""The PostgreSQL adapter: its plumbing, and the hot paths as one statement each.

Connections are in autocommit mode; a verb body runs in one transaction
(`_tx`), or without one when it is a single statement. The verbs are shared
(`_verbs_*`); for the hot ones (a step's start, completion and failure, a
heartbeat, a submission, a claim of free jobs, a job's end, a run's claim,
end, release and state) its queries check the fence themselves
(`fenced_queries`), and it overrides the hooks the shared verbs run their
bodies through (`_variant`, `_claim`, `_finish_at_once`, `_claim_at_once`,
`_close_job`) or, for the few with short signatures, the verb. Each is one
statement in ``queries/postgresql.sql``: data-modifying CTEs check the owner
fence, reserve event numbers, write the events and the change together, so a
durable step costs one round trip and one WAL flush, where the shared body's
transaction costs BEGIN, a statement per row it writes, and COMMIT. A step's
start marker asks for ``synchronous_commit = off`` from inside that statement
(``set_config(..., true)``), so it does not wait for the flush; a completion
does.

Time for lock expiry comes from the server (``clock_timestamp()``) unless the
engine pins it (a fake clock in tests), so machines with skewed clocks agree.

Notifications: writes that make work available or end a run call
``pg_notify`` on one channel per schema; `wait_for_change` listens on a
dedicated connection, so workers and `App.result` wake at once.

JSON goes into ``json`` columns, which keep the text as written: an object's keys
in their order and a number as Python wrote it, as SQLite's TEXT does (migration
0023; jsonb sorted the keys and read 1e+16 back as an int). The tags stay ``jsonb``,
matched with ``@>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import random
import re
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ..errors import (
    RunCancelledError,
    RunNotFoundError,
    StaleOwnerError,
    StoreError,
    StoreUnavailableError,
    TetherError,
)
from ._base import Mode, Tx, event_params, fenced_params
from ._deferred import RETRY_DELAYS, Deferred
from ._loop_end import LoopEnd
from ._migrations import failed, pending
from ._port import Store
from ._records import (
    Fence,
    JobRow,
    NewEvent,
    NewJob,
    NewRun,
    RunRow,
    RunStatus,
    StepRow,
)
from ._rows import PG_ROWS, started_step
from ._sql import queries
from ._url import Durability, parse_pg_url
from ._verbs_runs import HeldCompletion

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg.abc import Buffer
    from psycopg.adapt import Loader
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - exercised when the extra is missing
    raise ImportError("the PostgreSQL store needs: pip install 'tether[postgres]'") from exc

__all__ = ["PostgresStore"]

log = logging.getLogger("tether.store")

T = TypeVar("T")
Conn = AsyncConnection[Any]
_Q = queries("postgresql")
# pauses before running a transaction again that the server rolled back (a deadlock);
# each is jittered, so two verbs that met do not meet again
ROLLBACK_RETRIES = (0.005, 0.02, 0.05, 0.1)
# Queries planned once, not at each execution. The server plans a prepared statement
# anew each time it deems a plan for the given parameters cheaper than a generic one;
# for the claims (arrays of workflows and queues, LIMIT :n, several writing CTEs) that
# replanning cost ~0.7 ms of a ~0.9 ms claim, on every worker's every poll, for the
# same plan: they read the jobs by the same index whatever the values.
GENERIC_PLAN = frozenset(
    {"claim_free", "claim_free_of", "ready_jobs", "ready_jobs_of", "queued_workflows"}
)
_GENERIC = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"


class _Slice(Loader):
    """A bytea as a view of the driver's result row, not copied into bytes of its own:
    valid only until the next row is read (`PgTx.read_blob` copies it at once)."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Buffer) -> Buffer:
        return data


_BLOB_SLICE = 1 << 20  # a blob's body goes to libpq a MiB at a time (`PgTx.write_blob`)
_COPY_HEAD = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, no extension
_COPY_TRAILER = struct.pack("!h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _blob_row_head(key: str, size: int, at: datetime) -> bytes:
    """A binary COPY stream up to the body's bytes: the header, then the row of
    ``copy_blob``'s four columns (key, size, created_at, then the body's length; its
    bytes follow). A timestamptz is microseconds since 2000-01-01 UTC."""
    name = key.encode()
    stamp = (at.replace(tzinfo=at.tzinfo or UTC) - _PG_EPOCH) // timedelta(microseconds=1)
    return b"".join((
        _COPY_HEAD, struct.pack("!h", 4),
        struct.pack("!i", len(name)), name,
        struct.pack("!iq", 8, size),
        struct.pack("!iq", 8, stamp),
        struct.pack("!i", size),
    ))  # fmt: skip


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (and has not taken it back)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _rolled_back(exc: psycopg.Error) -> bool:
    """A transaction the server rolled back for a deadlock or a serialization
    failure: it wrote nothing, and may simply run again."""
    return exc.sqlstate in ("40P01", "40001")


async def _on(conn: Conn, fn: Callable[[Conn], Awaitable[T]], tx: bool) -> T:
    if not tx:
        return await fn(conn)
    async with conn.transaction():
        return await fn(conn)


class PgTx:
    """A transaction (or one autocommit statement) on one pooled connection."""

    rows = PG_ROWS

    def __init__(self, conn: Conn, channel: str) -> None:
        self._conn = conn
        self._channel = channel

    async def one(self, name: str, /, **params: Any) -> Any:
        return await (await self._execute(name, params)).fetchone()

    async def all(self, name: str, /, **params: Any) -> list[Any]:
        rows: list[Any] = await (await self._execute(name, params)).fetchall()
        return rows

    async def execute(self, name: str, /, **params: Any) -> int:
        return int((await self._execute(name, params)).rowcount)

    async def _execute(self, name: str, params: dict[str, Any]) -> Any:
        if name not in GENERIC_PLAN:
            return await self._conn.execute(_Q[name], params)
        # the setting rides in the same round trip and (local) ends with the statement's
        # transaction: the implicit one of the pipeline, or the verb's own
        async with self._conn.pipeline():
            await self._conn.execute(_GENERIC)
            return await self._conn.execute(_Q[name], params)

    async def read_blob(self, key: str) -> bytes | None:
        """Blob `key`'s body, or None: one statement (one snapshot) whose rows, slices of
        1 MiB in binary, are copied as they come into one buffer of the body's size,
        handed back as the bytes (`BytesIO.getvalue` gives its buffer, no copy). Read at
        once, libpq held the body twice more (its input buffer, which stayed that large
        with the pooled connection, and its result): a read of N bytes grew the process
        by 3 N, now by N and ~4 MiB, and is quicker (the server sends a slice while the
        last one is copied)."""
        body: io.BytesIO | None = None
        async with self._conn.cursor() as cur:
            cur.adapters.register_loader("bytea", _Slice)
            rows = cur.stream(_Q["get_blob"], {"key": key}, binary=True)
            async for offset, size, piece in rows:
                if body is None:
                    body = io.BytesIO(bytes(size))  # zeroed pages, taken as they are written
                body.seek(offset)
                body.write(piece)
        return None if body is None else body.getvalue()

    async def write_blob(self, key: str, body: bytes, at: datetime) -> None:
        """The row sent by ``COPY ... (FORMAT BINARY)``, its body a MiB at a time from
        the caller's bytes. Bound as a value, the driver and libpq each copied the body:
        a put of N bytes grew the process by about 2 N, now by a slice. COPY does not
        replace, so the old row goes first, under a lock on the key that a put of the
        same key beside it waits for (where ON CONFLICT DO UPDATE serialised them)."""
        await self.execute("lock_blob_key", key=key)
        await self.execute("delete_blob", key=key)
        view = memoryview(body)
        async with self._conn.cursor() as cur, cur.copy(_Q["copy_blob"]) as copy:
            await copy.write(_blob_row_head(key, len(body), at))
            for start in range(0, len(view), _BLOB_SLICE):
                await copy.write(view[start : start + _BLOB_SLICE])
            await copy.write(_COPY_TRAILER)

    async def many(self, reads: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
        async with self._conn.pipeline():
            curs = [await self._conn.execute(_Q[name], p) for name, p in reads]
        return [await cur.fetchall() for cur in curs]

    def now(self, now: datetime | None) -> datetime | None:
        return now  # None: the queries read the server's clock

    def array(self, items: Sequence[Any]) -> list[Any]:
        return list(items)

    async def notify(self, what: str) -> None:
        await self.one("notify", chan=self._channel, what=what)


# what the server says when it refuses a connection for good (waiting will not mend it)
_REFUSED = re.compile(
    r"FATAL:\s+(database \S+ does not exist|role \S+ does not exist|password "
    r"authentication failed|no pg_hba\.conf entry)"
)


class PostgresStore(Store):
    """Store on a PostgreSQL database (in its own schema)."""

    dialect = "postgresql"
    fenced_queries = True  # `_event_cte` at the head of each
    holds_rows = False  # a completion with rows is several statements: it cannot fold

    def __init__(self, url: str, *, durability: str | Durability | None = None) -> None:
        super().__init__()
        self.url = url
        self.config = parse_pg_url(url, durability)
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: asyncio.Lock | None = None
        self._open_loop: asyncio.AbstractEventLoop | None = None
        self._migrated = False
        self._listener: Conn | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._changes: dict[str, asyncio.Event] = {}
        self._early: dict[str, None] = {}  # run notifications that came before their waiter
        self._sync_off = self.config.durability is Durability.NORMAL
        self._hot: Conn | None = None  # a connection kept out of the pool for the hot path
        self._hot_busy = False
        self.deferred: Deferred = Deferred(self._flush_deferred)  # folded into the next start
        # an App never closed (the async API under asyncio.run): closed as its loop ends
        self._loop_end = LoopEnd(self._close_at_loop_end, "the PostgreSQL connections")

    async def _tx(
        self, mode: Mode, body: Callable[[Tx], Awaitable[T]], *, single: bool = False
    ) -> T:
        channel = self.config.channel
        if self.deferred or self.deferred.writing:
            await self._write_held()  # before anything else, in statements of their own
        return await self._with(
            lambda conn: body(PgTx(conn, channel)), tx=not single and mode != "read"
        )

    # -- held completions (see `_deferred`) --------------------------------------------

    def _foldable(self, done: HeldCompletion) -> bool:
        """One statement carries a completion without attached rows (they are never
        held here), unless commits skip the WAL flush (no folded variant for that)."""
        return not self._sync_off

    async def _write_held(self) -> None:
        """Write what is held before another write, retrying a blip as a step retries
        its completion. If it still fails, the completions are dropped and the error
        is the caller's (in a sequential run, the same run's next write): as when a
        completion fails as its step ends, the step is not recorded and runs again on
        resume; kept, they would fail every write of this store behind them."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return await self._flush_deferred(keep=delay is not None)
            except StoreError as exc:
                if delay is None:
                    raise
                log.warning("writing held step completions failed (%s); again in %gs", exc, delay)
                await asyncio.sleep(delay)

    async def _flush_deferred(self, *, keep: bool = True) -> None:
        """Write what is held, once no other write of held completions is in flight
        (a flush of its own keeps them for a retry if it fails)."""
        channel = self.config.channel
        async with self.deferred.taking() as held:
            if not held:
                return
            try:
                await self._with(lambda conn: self.deferred.write(PgTx(conn, channel), held))
            except BaseException as exc:
                if keep or isinstance(exc, asyncio.CancelledError):
                    self.deferred.give_back(held)
                else:
                    log.warning("held step completions were not written and are dropped: %s", exc)
                raise

    @staticmethod
    def _folded(done: HeldCompletion) -> dict[str, Any]:
        """The parameters of the completion a statement carries (`_held_completion`)."""
        return {"ckey": done.key, "result": done.result, "cat": done.at,
                "ctype": done.event.type, "cmsg": done.event.message,
                "cdetail": done.event.detail}  # fmt: skip

    async def _carrying(
        self, done: HeldCompletion, body: Callable[[Tx], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """Run the one statement that carries `done`: (True, its answer), or (False,
        None) if the database failed it; `done` is held again then, and the caller
        goes the long way, which writes it first, retrying a blip (`_write_held`)."""
        try:
            return True, await self._with(lambda conn: body(PgTx(conn, self.config.channel)))
        except (StaleOwnerError, RunCancelledError, RunNotFoundError):
            log.info("a held step completion was refused with its carrier: %s", done.key)
            raise
        except (StoreError, asyncio.CancelledError) as exc:
            self.deferred.give_back([done])
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False, None

    async def start_step(
        self, fence: Fence, key: str, *, idempotency_key: str | None, at: datetime, event: NewEvent
    ) -> StepRow:
        """The start marker, with the run's held completion of its previous step folded
        in where there is exactly that (one durable statement instead of two)."""
        done = self._fold(fence, key)
        if done is not None:
            p = fenced_params(fence, event) | {"key": key, "ikey": idempotency_key, "at": at}
            p |= self._folded(done)

            async def body(tx: Tx) -> Any:
                row = await tx.one("complete_and_start_step", **p)
                if row is None:  # both refused: the completion is dropped, the start raises
                    raise await self._fence_failure(tx, fence)
                return row

            folded, row = await self._carrying(done, body)
            if folded and row is not None:
                return started_step(fence.workflow_id, key, idempotency_key, row, at)
        return await super().start_step(
            fence, key, idempotency_key=idempotency_key, at=at, event=event
        )

    # -- the one-statement verbs -----------------------------------------------------

    def _variant(self, name: str, mode: Mode) -> str:
        """``<name>_fast``, where there is one, for a fast write (and for every write
        under durability=normal): it skips the wait for the WAL flush."""
        fast = f"{name}_fast"
        return fast if (mode == "fast" or self._sync_off) and fast in _Q else name

    async def _claim(
        self, name: str, event: NewEvent, now: datetime | None, compensating: bool, **p: Any
    ) -> RunRow:
        """The claim numbers its event itself (no separate fence check, which would
        only re-read the row just claimed): one round trip where the shared body takes
        five (BEGIN, claim, bump, event, COMMIT). A refused claim is explained by a
        second read, as there."""

        async def body(tx: Tx) -> RunRow:
            row = await tx.one(name, now=now, **event_params(event), **p)
            if row is None:
                raise await self._claim_refusal(tx, p["wid"], compensating)
            return tx.rows.run(row)

        run = await self._tx("write", body, single=True)
        self._note_moved(run.workflow_id, run.generation)
        return run

    def _run_note(self, fence: Fence) -> dict[str, str]:
        """The parameters of a statement that notifies the run's waiters itself."""
        return {"chan": self.config.channel, "note": f"run:{fence.workflow_id}"}

    async def release_run(self, fence: Fence, *, at: datetime, event: NewEvent) -> bool:
        p = fenced_params(fence, event) | self._run_note(fence) | {"at": at}
        row = await self._tx("write", lambda tx: tx.one("release_run_one", **p), single=True)
        return row is not None

    async def _finish_at_once(
        self, fence: Fence, status: RunStatus, event: NewEvent, at: datetime, **p: Any
    ) -> bool:
        """One statement for the common end (the fence, the event, the end, the
        notification). An end that resolves a wait on this run (a parent's) must wake
        the waiter in the same transaction, and a failed fence must be explained: the
        statement changes nothing then, and the shared transaction does it all."""
        p |= fenced_params(fence, event) | self._run_note(fence)
        p |= {"at": at, "status": status.value, "ended": status.terminal}
        done = self._fold(fence)
        if done is None:
            row = await self._tx("write", lambda tx: tx.one("finish_run_one", **p), single=True)
        else:
            p |= self._folded(done)  # the last step's completion, in the same statement
            folded, row = await self._carrying(
                done, lambda tx: tx.one("complete_and_finish_run", **p)
            )
            if folded and row is None:  # nothing written: the shared transaction writes it first
                self.deferred.give_back([done])
        if row is None:
            return False
        self._closed_with_run([row[1:]])
        return True

    async def submit_run(self, run: NewRun, job: NewJob, at: datetime) -> tuple[RunRow, bool]:
        async def body(tx: Tx) -> tuple[RunRow, bool]:
            row = await tx.one(
                "submit_run", id=run.workflow_id, name=run.workflow_name,
                version=run.workflow_version, input=run.input, state=run.state,
                rpriority=run.priority, priority=job.priority, tags=json.dumps(list(run.tags)),
                tenant=run.tenant,
                parent=run.parent_id, ikey=run.idempotency_key, queue=job.queue,
                ckey=job.concurrency_key, max=job.max_attempts, after=job.run_after or at,
                at=at, chan=self.config.channel, rule=run.step_rule, budget=run.budget
            )  # fmt: skip
            if row is not None:
                return tx.rows.run(row[:-1]), True
            found = await tx.one("run_by_id_or_key", id=run.workflow_id, ikey=run.idempotency_key)
            return tx.rows.run(found), False  # it exists (by id or idempotency key)

        return await self._tx("write", body, single=True)

    async def _claim_at_once(
        self, free: list[str], limit: int, p: dict[str, Any]
    ) -> tuple[list[JobRow], bool, bool]:
        """Keyless jobs of uncapped queues in one statement; it also says whether keyed
        jobs wait, so only then (or with capped queues) the shared claim runs, and
        whether ready jobs were left when it took `limit` (`Claimed.more`)."""
        if not free:
            return [], True, False
        query = "claim_free_of" if "wnames" in p else "claim_free"
        rows = await self._tx("fast", lambda tx: tx.all(query, qs=free, n=limit, **p), single=True)
        keyed, more = (bool(rows[0][-2]), bool(rows[0][-1])) if rows else (False, False)
        jobs = (PG_ROWS.job_with_run(r[:-2]) for r in rows if r[0] is not None)
        return sorted(jobs, key=lambda j: (-j.priority, j.id)), keyed, more

    def _lost_race(self, exc: StoreError) -> bool:
        return isinstance(exc.__cause__, psycopg.errors.UniqueViolation)

    async def _close_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        async def body(tx: Tx) -> None:
            row = await tx.one(
                "finish_job_one", id=job_id, worker=worker, error=error, at=at,
                chan=self.config.channel
            )  # fmt: skip
            if row is not None and ghost:
                await self._events(tx, Fence(row[0]), [NewEvent("job.ghost", worker)], at)

        await self._tx("write", body, single=not ghost)

    # -- plumbing --------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """A failure to connect; `lasting` when the server itself refused."""
        return StoreUnavailableError(self._describe(exc), lasting=bool(_REFUSED.search(str(exc))))

    def _describe_where(self) -> str:
        return f"PostgreSQL at {self.config.host}, database {self.config.dbname!r}"

    def _describe(self, exc: BaseException) -> str:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"{self._describe_where()}: {first}. "
            "Check that the server runs, the database exists and the user may connect "
            "and create tables in the schema"
        )

    async def _configure(self, conn: Conn) -> None:
        # times read back in UTC, as SQLite's are: a server (or PGTZ) set to another zone
        # gave every RunInfo, WaitInfo and event time in that zone's offset
        await conn.execute(f"SET search_path TO {self.config.ident}; SET TimeZone TO 'UTC'")
        if self.config.statement_timeout is not None:
            await conn.execute(
                f"SET statement_timeout = {int(self.config.statement_timeout * 1000)}"
            )

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return
        if self._open_lock is None or self._open_loop is not loop:
            self._open_lock, self._open_loop = asyncio.Lock(), loop
        async with self._open_lock:
            if self._pool is not None and self._loop is loop:
                return
            if self._pool is not None:  # a new event loop: start over on it
                await self._discard()
            if not self._migrated:
                await self._migrate()
            pool = AsyncConnectionPool(
                self.config.conninfo,
                min_size=1,
                max_size=self.config.pool_size,
                kwargs={"autocommit": True, "connect_timeout": 10},
                configure=self._configure,
                open=False,
            )
            try:
                await pool.open(wait=True, timeout=15)
                hot = await AsyncConnection.connect(
                    self.config.conninfo, autocommit=True, connect_timeout=10
                )
                await self._configure(hot)
            except Exception as exc:
                await pool.close()
                raise self._unavailable(exc) from None
            self._pool, self._loop, self._hot = pool, loop, hot
            await self._loop_end.arm()

    async def _discard(self) -> None:
        pool, self._pool = self._pool, None
        hot, self._hot = self._hot, None
        task, self._listen_task = self._listen_task, None
        listener, self._listener = self._listener, None
        self._changes = {}
        self._early = {}
        try:
            if task is not None:
                task.cancel()
            if listener is not None:
                await listener.close()
            if hot is not None:
                await hot.close()
            if pool is not None:
                await pool.close(timeout=1)
        except Exception:  # the old loop is gone; its sockets die with it
            pass

    async def close(self) -> None:
        if self._pool is None:
            return
        self._loop_end.disarm()
        if self._loop is asyncio.get_running_loop():
            await self._write_held()
        else:
            # bound to another loop, which cannot be awaited from here: the pool's
            # connections go with it; the two of our own are closed without it (their
            # sockets would otherwise stay open until collected)
            for conn in (self._hot, self._listener):
                if conn is not None and not conn.closed:
                    conn.pgconn.finish()
            self._pool = self._hot = self._listener = None
            return
        await self._discard()

    async def _close_at_loop_end(self) -> None:
        """`close` as ``asyncio.run`` ends (`LoopEnd`): it has cancelled the pool's worker
        tasks with every other, and the pool's close, which waits for them, raised
        CancelledError before it closed a connection; so the pool's idle connections
        are closed first (`drain`: the new ones it asks for have no worker to make
        them), once the held completions went out on them."""
        pool = self._pool
        if pool is None or self._loop is not asyncio.get_running_loop():
            return
        self._loop_end.disarm()
        await self._write_held()
        await pool.drain()
        with contextlib.suppress(asyncio.CancelledError):  # the pool's, not this task's
            await self._discard()
        if (task := asyncio.current_task()) is not None and task.cancelling():
            raise asyncio.CancelledError

    async def _migrate(self) -> None:
        try:
            conn = await AsyncConnection.connect(
                self.config.conninfo, autocommit=True, connect_timeout=10
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        where = f"schema {self.config.schema!r} in database {self.config.dbname!r}"
        try:
            if not await self._up_to_date(conn, where):
                await self._apply_migrations(conn, where)
        except TetherError:
            raise
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        finally:
            await conn.close()
        self._migrated = True

    async def _up_to_date(self, conn: Conn, where: str) -> bool:
        """Whether the schema is at this tether's version, read without DDL: CREATE
        SCHEMA IF NOT EXISTS needs the right to create schemas in the database even
        when the schema is there, so a role a DBA gave tether's tables to (and not
        that) could not start. `IncompatibleStoreError` if a newer tether wrote it."""
        table = f"{self.config.ident}.schema_version"
        cur = await conn.execute("SELECT to_regclass(%s)", (table,))
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return False
        cur = await conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {table}")
        row = await cur.fetchone()
        return not pending(self.dialect, int(row[0]) if row else 0, where)

    async def _apply_migrations(self, conn: Conn, where: str) -> None:
        """The migrations the schema lacks, under an advisory lock: processes starting
        together migrate once."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"tether-migrate:{self.config.schema}",),
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.config.ident}")
            await conn.execute(f"SET LOCAL search_path TO {self.config.ident}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for mig in pending(self.dialect, current, where):
                try:
                    await conn.execute(mig.sql.encode())
                except psycopg.OperationalError:
                    raise  # the connection or the server: unavailable, perhaps for a moment
                except psycopg.Error as exc:
                    raise failed(mig, current, where, exc) from None
                await conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )

    async def schema_version(self) -> int:
        async def go(conn: Conn) -> int:
            cur = await conn.execute("SELECT MAX(version) FROM schema_version")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._with(go)

    async def _with(self, fn: Callable[[Conn], Awaitable[T]], *, tx: bool = False) -> T:
        """Run `fn` on a pooled connection (inside a transaction if `tx`).

        A connection found dead (the server restarted, an admin terminated the
        backend) is dropped and `fn` runs once more on a fresh one: its
        transaction either never reached the server or was rolled back with
        the connection, and the verbs are written to tolerate a replay of one
        that did commit (a repeated start marker counts one attempt more).

        A transaction the server rolled back for a deadlock (two verbs locking a
        run and its waits in opposite orders: a run's end and an event for it)
        or a serialization failure wrote nothing: it runs again, a few times,
        after a short pause, rather than failing a verb that merely met another.
        """
        await self.open()
        pool = self._pool
        assert pool is not None
        rollbacks = iter(ROLLBACK_RETRIES)
        for attempt in itertools.count(1):
            broken = False
            try:
                hot = self._hot
                if hot is not None and not self._hot_busy and not hot.closed:
                    # the common case, one verb at a time: skip the pool's bookkeeping
                    self._hot_busy = True
                    try:
                        return await _on(hot, fn, tx)
                    except psycopg.OperationalError as exc:
                        if _rolled_back(exc):
                            raise  # the connection is fine: below, it runs again
                        # the hot connection is not worth saving: drop it, retry on the pool
                        broken, self._hot = True, None
                        with contextlib.suppress(Exception):
                            await hot.close()
                        raise
                    finally:
                        self._hot_busy = False
                async with pool.connection() as conn:
                    try:
                        return await _on(conn, fn, tx)
                    except psycopg.OperationalError:
                        broken = conn.broken or conn.closed
                        raise
            except (TetherError, RunCancelledError):
                raise
            except psycopg.Error as exc:
                if self._pool is not pool:  # closed under it: neither retried nor reopened
                    raise StoreError(
                        f"the store on {self._describe_where()} was closed while a call on it "
                        "was in flight; close the store (App.aclose) only once its calls ended"
                    ) from exc
                if not await self._again(exc, broken and attempt == 1, rollbacks):
                    raise self._store_error(exc) from exc
        raise AssertionError("unreachable")

    async def _again(self, exc: psycopg.Error, broken: bool, rollbacks: Iterator[float]) -> bool:
        """Whether `_with` runs its verb again after `exc`: a rolled-back transaction
        (after a pause, a few times), or a first connection found `broken`."""
        if _being_cancelled():
            # the task was cancelled and the cancellation got lost on the way (see
            # below): honour it, a retry or a StoreError would swallow it
            raise asyncio.CancelledError() from exc
        if not isinstance(exc, psycopg.OperationalError):
            return False
        if _rolled_back(exc):
            pause = next(rollbacks, None)
            if pause is not None:
                log.debug("transaction rolled back (%s): run again", exc.sqlstate)
                await asyncio.sleep(pause * (0.5 + random.random()))
                return True
        if not broken:
            return False
        # whatever killed this connection may have killed its siblings too: let the
        # pool test its idle ones before we take another
        assert self._pool is not None
        with contextlib.suppress(Exception):
            await self._pool.check()
        if _being_cancelled():
            # the pool's check takes a cancellation that lands in it for a broken
            # connection and swallows it: do not run the verb again
            raise asyncio.CancelledError() from exc
        return True

    def _store_error(self, exc: psycopg.Error) -> StoreError:
        """The error a verb raises. Advice on reaching the server only where reaching
        it failed (no answer, or the server's connection, resource and shutdown
        classes): a value over PostgreSQL's limits got "check that the server runs"."""
        state = exc.sqlstate or ""
        if isinstance(exc, psycopg.OperationalError) and not state.startswith(("54", "55")):
            return StoreError(self._describe(exc))
        said = str(exc).strip() or type(exc).__name__
        if state.startswith("54"):  # program limit exceeded: a value too large
            return StoreError(
                f"PostgreSQL refused a value as too large: {said.splitlines()[0]}. Keep large "
                "data out of the run (a file, or the blob store) and pass a reference to it"
            )
        return StoreError(f"PostgreSQL error: {said}")

    async def _ensure_listener(self) -> None:
        if self._listen_task is not None and not self._listen_task.done():
            return
        # one connection however many wait at once (a worker's poll and `App.result`):
        # without the lock each made its own and all but the last were never closed.
        # `open()` has just made the loop's lock.
        assert self._open_lock is not None
        async with self._open_lock:
            if self._listen_task is not None and not self._listen_task.done():
                return
            await self._listen()

    async def _listen(self) -> None:
        conn = await AsyncConnection.connect(self.config.conninfo, autocommit=True)
        try:
            await conn.execute(f"LISTEN {self.config.channel}")
        except BaseException:  # cancelled (a worker stopping its wait) or failed: not leaked
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        if self._listener is not None:  # listening again: what came meanwhile went unheard,
            # so waiters for work look (a claim) rather than wait for their poll
            self._changes.setdefault("jobs", asyncio.Event()).set()
        self._listener = conn

        async def pump() -> None:
            try:
                async for note in conn.notifies():
                    heard = False
                    for key in (note.payload, "*"):
                        ev = self._changes.get(key)
                        if ev is not None:
                            ev.set()
                            heard = True
                    if not heard and note.payload.startswith("run:"):
                        # nobody waits yet: `App.result` may be between its read of the run
                        # and its wait, so keep the news for its wait (a few, the newest)
                        self._early[note.payload] = None
                        if len(self._early) > 1024:
                            del self._early[next(iter(self._early))]
            except Exception as exc:  # the server dropped the connection: one line, not a trace
                log.warning(
                    "PostgreSQL notification connection lost (%s); listening again on the next "
                    "wait",
                    self._describe(exc),
                )
                for ev in self._changes.values():  # waiters re-read instead of sleeping on
                    ev.set()
                with contextlib.suppress(Exception):
                    await conn.close()

        self._listen_task = asyncio.ensure_future(pump())

    async def wait_for_change(self, channel: str, timeout: float) -> bool:
        """Wait until a write announces `channel` ("jobs", "run:<id>"); False on timeout."""
        await self.open()
        try:
            await self._ensure_listener()
        except Exception as exc:
            raise StoreError(self._describe(exc)) from None
        if channel.startswith("run:") and self._early.pop(channel, 0) is None:
            return True  # announced after the caller's read, before this wait
        ev = self._changes.get(channel)
        if ev is None:
            ev = self._changes[channel] = asyncio.Event()
        elif ev.is_set():  # announced since the last wait on it returned: report it once
            ev.clear()
            return True
        try:
            # not asyncio.wait_for: on Python 3.11 a cancel landing as the event is set is
            # swallowed there, and `App.result` cancelled from another loop waited on
            async with asyncio.timeout(timeout):
                await ev.wait()
            ev.clear()
            return True
        except TimeoutError:
            return False
        finally:
            if channel.startswith("run:"):  # one-off channels: do not keep their events
                self._changes.pop(channel, None)
