"""The PostgreSQL adapter, plumbing: URL, pool, migrations, notifications, errors.

Connections are in autocommit mode, and a hot verb is one statement: its
data-modifying CTEs check the owner fence, reserve event numbers, write the
events and the change together, so a durable step costs one round trip and
one WAL flush. A step's start marker asks for ``synchronous_commit = off``
from inside that statement (``set_config(..., true)``), so it does not wait
for the flush; a completion does.

Time for lock expiry comes from the server (``clock_timestamp()``) unless the
engine pins it (a fake clock in tests), so machines with skewed clocks agree.

Notifications: writes that make work available or end a run call
``pg_notify`` on one channel per schema; `wait_for_change` listens on a
dedicated connection, so workers and `App.result` wake at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import (
    IncompatibleStoreError,
    InvalidArgumentError,
    RunCancelledError,
    RunNotFoundError,
    StaleOwnerError,
    StoreError,
    StoreUnavailableError,
    TetherError,
)
from ._migrations import latest_version, migrations
from ._records import (
    Fence,
    NewEvent,
    NewRun,
    RunRow,
)
from ._rows import PG_ROWS
from ._url import Durability

try:
    import psycopg
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - exercised when the extra is missing
    raise ImportError("the PostgreSQL store needs: pip install 'tether[postgres]'") from exc

__all__ = ["PgBase", "PgConfig", "parse_pg_url"]

log = logging.getLogger("tether.store")

T = TypeVar("T")
Conn = AsyncConnection[Any]


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (and has not taken it back)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
CLOSED = "('cancelled', 'compensated', 'compensation_failed')"
TERMINAL = "('completed', 'failed', 'cancelled', 'compensated', 'compensation_failed')"
NOW = "COALESCE(%(now)s::timestamptz, clock_timestamp())"
# a run may be claimed unless another owner's claim on it is live (see the SQLite twin)
CLAIMABLE = (
    "(%(force)s OR status != 'running' OR owner IS NULL OR owner = %(owner)s "
    f"OR owner_expires_at IS NULL OR owner_expires_at <= {NOW} "
    "OR owner IS NOT DISTINCT FROM %(dead)s::text)"
)

# a run nobody drives: its owner's claim lapsed, or it sat runnable (pending) past a grace
# period (see the SQLite twin)
ORPHAN = (
    f"((status = 'running' AND (owner_expires_at <= {NOW} OR (owner_expires_at IS NULL "
    f"AND updated_at <= {NOW} - make_interval(secs => %(grace)s)))) OR (status = 'pending' "
    f"AND updated_at <= {NOW} - make_interval(secs => %(grace)s)))"
)

RUN_COLS = (
    "id, workflow_name, workflow_version, status, input::text, output::text, error::text, "
    "state::text, priority, tags::text, tenant, parent_id, idempotency_key, owner, "
    "owner_generation, created_at, updated_at, started_at, finished_at, compute_seconds, "
    "cancel_requested, queue, owner_expires_at, step_rule"
)
STEP_COLS = (
    "run_id, step_key, name, status, attempts, idempotency_key, result::text, error::text, "
    "started_at, completed_at, updated_at"
)
LOCK_COLS = (
    "scope, key, holder, generation, run_id, detail::text, acquired_at, heartbeat_at, "
    "expires_at, released_at"
)
WAIT_COLS = (
    "id, run_id, wait_key, kind, name, match::text, status, payload::text, due_at, "
    "created_at, resolved_at"
)
JOB_COLS = (
    "id, run_id, queue, status, priority, attempt, max_attempts, concurrency_key, worker, "
    "locked_until, run_after, last_error"
)

# the fence: the owner generation must match (unless unfenced), and a fenced write to a
# cancelled run is refused unless it records that run's compensation
FENCE = (
    "id = %(wid)s AND (%(gen)s::bigint IS NULL OR (owner_generation = %(gen)s AND "
    f"(%(comp)s OR status NOT IN {CLOSED})))"
)


@dataclass(frozen=True)
class PgConfig:
    conninfo: str
    host: str
    dbname: str
    schema: str
    pool_size: int
    statement_timeout: float | None
    durability: Durability

    @property
    def channel(self) -> str:
        return f"tether_{self.schema}"


def parse_pg_url(url: str, durability: str | Durability | None = None) -> PgConfig:
    """``postgresql://user@host:port/db?schema=tether&pool_size=10&statement_timeout=30``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidArgumentError(f"not a PostgreSQL URL: {url!r}")
    opts = dict(parse_qsl(parts.query))
    ours = {"schema", "pool_size", "statement_timeout", "durability"}
    schema = opts.pop("schema", "tether")
    if not _SCHEMA.match(schema):
        raise InvalidArgumentError(
            f"schema {schema!r} is not a plain identifier (letters, digits, underscore)"
        )
    try:
        pool_size = int(opts.pop("pool_size", "10"))
        timeout_text = opts.pop("statement_timeout", None)
        statement_timeout = None if timeout_text is None else float(timeout_text)
    except ValueError:
        raise InvalidArgumentError(
            "pool_size must be an integer and statement_timeout a number of seconds"
        ) from None
    if pool_size < 1:
        raise InvalidArgumentError(f"pool_size must be >= 1, got {pool_size}")
    dur = Durability.parse(durability or opts.pop("durability", "full"))
    opts.pop("durability", None)
    unknown = set(opts) - {"sslmode", "connect_timeout", "application_name", "sslrootcert"}
    if unknown:
        raise InvalidArgumentError(
            f"unknown PostgreSQL URL option(s) {sorted(unknown)}; known: {sorted(ours)} "
            "and sslmode, connect_timeout, application_name"
        )
    query = "&".join(f"{k}={v}" for k, v in opts.items())
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))
    host = parts.hostname or "localhost"
    if parts.port:
        host = f"{host}:{parts.port}"
    return PgConfig(
        conninfo=conninfo,
        host=host,
        dbname=parts.path.lstrip("/") or "(default)",
        schema=schema,
        pool_size=pool_size,
        statement_timeout=statement_timeout,
        durability=dur,
    )


run_row = PG_ROWS.run
step_row = PG_ROWS.step
lock_row = PG_ROWS.lock
wait_row = PG_ROWS.wait
job_row = PG_ROWS.job


def fence_params(fence: Fence) -> dict[str, Any]:
    return {"wid": fence.workflow_id, "gen": fence.generation, "comp": fence.compensating}


def event_params(event: NewEvent) -> dict[str, Any]:
    return {"etype": event.type, "emsg": event.message, "edetail": event.detail}


class PgBase:
    """Pool, transactions, migrations and the shared helpers of the PostgreSQL store."""

    dialect = "postgresql"

    def __init__(self, url: str, *, durability: str | Durability | None = None) -> None:
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

    # -- connections ---------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL at {self.config.host}, database {self.config.dbname!r}: {first}. "
            "Check that the server runs, the database exists and the user may connect "
            "and create tables in the schema"
        )

    async def _configure(self, conn: Conn) -> None:
        await conn.execute(f"SET search_path TO {self.config.schema}")
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
                raise StoreUnavailableError(self._describe(exc)) from None
            self._pool, self._loop, self._hot = pool, loop, hot

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
        if self._loop is not asyncio.get_running_loop():
            self._pool = None  # bound to another loop; let it be collected
            return
        await self._discard()

    async def _migrate(self) -> None:
        known = latest_version(self.dialect)
        schema = self.config.schema
        try:
            conn = await AsyncConnection.connect(
                self.config.conninfo, autocommit=True, connect_timeout=10
            )
        except Exception as exc:
            raise StoreUnavailableError(self._describe(exc)) from None
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tether-migrate:{schema}",)
                )
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
                if current > known:
                    raise IncompatibleStoreError(
                        f"schema {schema!r} in database {self.config.dbname!r} was written by a "
                        f"newer tether (schema version {current}; this tether knows up to "
                        f"{known}); upgrade tether to use it"
                    )
                for mig in migrations(self.dialect):
                    if mig.version <= current:
                        continue
                    await conn.execute(mig.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
        except TetherError:
            raise
        except psycopg.Error as exc:
            raise StoreUnavailableError(self._describe(exc)) from None
        finally:
            await conn.close()
        self._migrated = True

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
        """
        await self.open()
        assert self._pool is not None
        for attempt in (1, 2):
            broken = False
            try:
                hot = self._hot
                if hot is not None and not self._hot_busy and not hot.closed:
                    # the common case, one verb at a time: skip the pool's bookkeeping
                    self._hot_busy = True
                    try:
                        if tx:
                            async with hot.transaction():
                                return await fn(hot)
                        return await fn(hot)
                    except psycopg.OperationalError:
                        # the hot connection is not worth saving: drop it, retry on the pool
                        broken, self._hot = True, None
                        with contextlib.suppress(Exception):
                            await hot.close()
                        raise
                    finally:
                        self._hot_busy = False
                async with self._pool.connection() as conn:
                    try:
                        if tx:
                            async with conn.transaction():
                                return await fn(conn)
                        return await fn(conn)
                    except psycopg.OperationalError:
                        broken = conn.broken or conn.closed
                        raise
            except (TetherError, RunCancelledError):
                raise
            except psycopg.Error as exc:
                if _being_cancelled():
                    # the task was cancelled and the cancellation got lost on the way
                    # (see below): honour it, a retry or a StoreError would swallow it
                    raise asyncio.CancelledError() from exc
                if not isinstance(exc, psycopg.OperationalError):
                    raise StoreError(f"PostgreSQL error: {str(exc).strip()}") from exc
                if broken and attempt == 1:
                    # whatever killed this connection may have killed its siblings too:
                    # let the pool test its idle ones before we take another
                    with contextlib.suppress(Exception):
                        await self._pool.check()
                    if _being_cancelled():
                        # the pool's check takes a cancellation that lands in it for a
                        # broken connection and swallows it: do not run the verb again
                        raise asyncio.CancelledError() from exc
                    continue
                raise StoreError(self._describe(exc)) from exc
        raise AssertionError("unreachable")

    async def _one(self, sql: str, params: dict[str, Any] | Sequence[Any]) -> Any:
        async def go(conn: Conn) -> Any:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

        return await self._with(go)

    async def _all(self, sql: str, params: dict[str, Any] | Sequence[Any]) -> list[Any]:
        async def go(conn: Conn) -> list[Any]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self._with(go)

    # -- fencing -------------------------------------------------------------------------

    async def _fence_failure(self, conn: Conn, fence: Fence) -> TetherError | RunCancelledError:
        cur = await conn.execute(
            "SELECT owner_generation FROM runs WHERE id = %s", (fence.workflow_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return RunNotFoundError(fence.workflow_id)
        if fence.generation is not None and row[0] != fence.generation:
            return StaleOwnerError(fence.workflow_id, fence.generation)
        return RunCancelledError(fence.workflow_id)

    async def _bump(
        self, conn: Conn, fence: Fence, events: Sequence[NewEvent], at: datetime
    ) -> None:
        """Inside a transaction: check the fence and append `events`."""
        cur = await conn.execute(
            "UPDATE runs SET event_seq = event_seq + %(n)s, updated_at = %(at)s "
            f"WHERE {FENCE} RETURNING event_seq",
            {**fence_params(fence), "n": len(events), "at": at},
        )
        row = await cur.fetchone()
        if row is None:
            raise await self._fence_failure(conn, fence)
        first = int(row[0]) - len(events) + 1
        if events:
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO events (run_id, seq, type, message, detail, at) "
                    "VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
                    [
                        (fence.workflow_id, first + i, e.type, e.message, e.detail, at)
                        for i, e in enumerate(events)
                    ],
                )

    async def _notify(self, conn: Conn, what: str) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (self.config.channel, what))

    async def _insert_run(self, conn: Conn, run: NewRun, at: datetime) -> tuple[RunRow, bool]:
        cur = await conn.execute(
            "INSERT INTO runs (id, workflow_name, workflow_version, status, input, state, "
            "priority, tags, tenant, parent_id, idempotency_key, queue, created_at, updated_at, "
            "step_rule) VALUES (%s, %s, %s, 'pending', %s::jsonb, %s::jsonb, %s, %s::jsonb, %s, "
            "%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
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
                at,
                at,
                run.step_rule,
            ),
        )
        created = cur.rowcount == 1
        cur = await conn.execute(
            f"SELECT {RUN_COLS} FROM runs WHERE id = %s OR (idempotency_key = %s) "
            "ORDER BY (id = %s) DESC LIMIT 1",
            (run.workflow_id, run.idempotency_key, run.workflow_id),
        )
        row = await cur.fetchone()
        assert row is not None
        return run_row(row), created

    async def _wake(
        self, conn: Conn, waits: Sequence[tuple[str, str, str]], at: datetime
    ) -> list[str]:
        """Record resolutions (run, wait key, outcome); waiting runs become runnable."""
        woken: list[str] = []
        for run_id, key, outcome in waits:
            await self._bump(conn, Fence(run_id), [NewEvent(f"wait.{outcome}", key)], at)
            cur = await conn.execute(
                "UPDATE runs SET status = 'pending' WHERE id = %s AND status = 'waiting' "
                "RETURNING queue",
                (run_id,),
            )
            row = await cur.fetchone()
            if row is not None and run_id not in woken:
                woken.append(run_id)
                if row[0] is not None:
                    await self._enqueue_next(conn, run_id, at)
        return woken

    async def _enqueue_next(self, conn: Conn, run_id: str, at: datetime) -> None:
        await conn.execute(
            "INSERT INTO jobs (run_id, queue, status, priority, concurrency_key, run_after, "
            "created_at, updated_at) SELECT id, queue, 'queued', priority, concurrency_key, "
            "%s, %s, %s FROM runs WHERE id = %s AND queue IS NOT NULL ON CONFLICT DO NOTHING",
            (at, at, at, run_id),
        )
        await self._notify(conn, "jobs")

    async def _child_ended(
        self,
        conn: Conn,
        child_id: str,
        status: str,
        output: str | None,
        error: str | None,
        at: datetime,
    ) -> list[str]:
        cur = await conn.execute(
            "UPDATE waitpoints SET status = 'resolved', resolved_at = %s, payload = "
            "jsonb_build_object('status', %s::text, 'output', %s::jsonb, 'error', %s::jsonb) "
            "WHERE kind = 'run' AND name = %s AND status = 'pending' RETURNING run_id, wait_key",
            (at, status, output, error, child_id),
        )
        rows = await cur.fetchall()
        return await self._wake(conn, [(r[0], r[1], "resolved") for r in rows], at)

    # -- notifications -------------------------------------------------------------------

    async def _ensure_listener(self) -> None:
        if self._listen_task is not None and not self._listen_task.done():
            return
        conn = await AsyncConnection.connect(self.config.conninfo, autocommit=True)
        await conn.execute(f"LISTEN {self.config.channel}")
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
            await asyncio.wait_for(ev.wait(), timeout)
            ev.clear()
            return True
        except TimeoutError:
            return False
        finally:
            if channel.startswith("run:"):  # one-off channels: do not keep their events
                self._changes.pop(channel, None)
