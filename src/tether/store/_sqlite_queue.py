"""The SQLite adapter, part three: job queue, outbox, idempotent commands.

Claims are a short ``BEGIN IMMEDIATE`` transaction: SQLite admits one writer,
so selecting ready jobs and flipping them to claimed cannot interleave with
another claimer. The partial unique indexes of migration 0003 hold the same
invariants (one open job per run, one claimed job per concurrency key) that
PostgreSQL enforces under concurrency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime

from ..errors import IdempotencyInProgressError, InvalidArgumentError, RunNotFoundError
from ._prune import sqlite_delete_runs, sqlite_prunable_runs, terminal_statuses
from ._records import (
    Fence,
    JobRow,
    NewEvent,
    NewJob,
    NewRun,
    OutboxRow,
    QueueLimit,
    RunRow,
    RunStatus,
)
from ._sqlite_base import _JOB_COLS, _ORPHAN, _RUN_COLS, SQLiteBase, _dt, _job, _run, _ts

# the first start of a step, and what began from then on (see rerun_from)
_RERUN_FIRST = (
    "SELECT COALESCE(MIN(seq), 0) FROM events WHERE run_id = ? AND type = 'step.started' "
    "AND message = ?"
)
_RERUN_STEPS = (
    "DELETE FROM steps WHERE run_id = ? AND step_key IN (SELECT message FROM events "
    "WHERE run_id = ? AND type = 'step.started' AND seq >= ?)"
)
_RERUN_WAITS = (
    "DELETE FROM waitpoints WHERE run_id = ? AND wait_key IN (SELECT message FROM events "
    "WHERE run_id = ? AND type = 'wait.registered' AND seq >= ?)"
)

__all__ = ["QueueOps"]


class QueueOps(SQLiteBase):
    """Queue, outbox and idempotency verbs of `SQLiteStore`."""

    # -- queue ------------------------------------------------------------------------

    async def submit_run(self, run: NewRun, job: NewJob, at: datetime) -> tuple[RunRow, bool]:
        ts = _ts(at)
        after = ts if job.run_after is None else _ts(job.run_after)

        def go(conn: sqlite3.Connection) -> tuple[RunRow, bool]:
            def tx() -> tuple[RunRow, bool]:
                row, created = self._insert_run(conn, run, ts)
                if created:
                    conn.execute(
                        "UPDATE runs SET queue = ?, concurrency_key = ? WHERE id = ?",
                        (job.queue, job.concurrency_key, row.workflow_id),
                    )
                    conn.execute(
                        "INSERT INTO jobs (run_id, queue, status, priority, max_attempts, "
                        "concurrency_key, run_after, created_at, updated_at) "
                        "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                        (
                            row.workflow_id,
                            job.queue,
                            job.priority,
                            job.max_attempts,
                            job.concurrency_key,
                            after,
                            ts,
                            ts,
                        ),
                    )
                    self._events(
                        conn,
                        Fence(row.workflow_id),
                        [NewEvent("workflow.submitted", job.queue)],
                        ts,
                    )
                return row, created

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def claim_jobs(
        self,
        worker: str,
        queues: Sequence[str],
        *,
        limit: int,
        visibility: float,
        limits: dict[str, QueueLimit],
        now: datetime | None,
        at: datetime,
    ) -> list[JobRow]:
        if limit < 1 or not queues:
            return []

        def go(conn: sqlite3.Connection) -> list[JobRow]:
            def tx() -> list[JobRow]:
                now_ts = time.time() if now is None else _ts(now)
                picked: list[int] = []
                keys: set[str] = set()
                for queue in queues:
                    room = limit - len(picked)
                    if room <= 0:
                        break
                    cap = limits.get(queue)
                    if cap is not None and cap.concurrency is not None:
                        busy = conn.execute(
                            "SELECT COUNT(*) FROM jobs WHERE queue = ? AND status = 'claimed'",
                            (queue,),
                        ).fetchone()[0]
                        room = min(room, cap.concurrency - busy)
                    if cap is not None and cap.rate_per_second is not None:
                        recent = conn.execute(
                            "SELECT COUNT(*) FROM jobs WHERE queue = ? AND claimed_at > ?",
                            (queue, now_ts - 1.0),
                        ).fetchone()[0]
                        room = min(room, int(cap.rate_per_second) - recent)
                    if room <= 0:
                        continue
                    rows = conn.execute(
                        "SELECT j.id, j.concurrency_key FROM jobs j WHERE j.queue = ? "
                        "AND j.status = 'queued' AND j.run_after <= ? AND (j.concurrency_key "
                        "IS NULL OR NOT EXISTS (SELECT 1 FROM jobs k WHERE k.concurrency_key = "
                        "j.concurrency_key AND k.status = 'claimed')) "
                        "ORDER BY j.priority DESC, j.id LIMIT ?",
                        (queue, now_ts, room * 4),
                    ).fetchall()
                    taken = 0
                    for job_id, key in rows:
                        if taken >= room:
                            break
                        if key is not None:
                            if key in keys:
                                continue
                            keys.add(key)
                        picked.append(job_id)
                        taken += 1
                if not picked:
                    return []
                marks = ",".join("?" * len(picked))
                claimed = conn.execute(
                    "UPDATE jobs SET status = 'claimed', worker = ?, locked_until = ?, "
                    f"attempt = attempt + 1, claimed_at = ?, updated_at = ? WHERE id IN ({marks}) "
                    f"RETURNING {_JOB_COLS}",
                    (worker, now_ts + visibility, now_ts, _ts(at), *picked),
                ).fetchall()
                return sorted((_job(r) for r in claimed), key=lambda j: picked.index(j.id))

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def renew_job(
        self, job_id: int, worker: str, *, visibility: float, now: datetime | None
    ) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            def tx() -> bool:
                now_ts = time.time() if now is None else _ts(now)
                cur = conn.execute(
                    "UPDATE jobs SET locked_until = ? WHERE id = ? AND worker = ? "
                    "AND status = 'claimed'",
                    (now_ts + visibility, job_id, worker),
                )
                return cur.rowcount == 1

            return self._write(conn, "NORMAL", tx)

        return await self._call(go)

    async def finish_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                row = conn.execute(
                    "SELECT j.run_id, r.status FROM jobs j JOIN runs r ON r.id = j.run_id "
                    "WHERE j.id = ? AND j.worker = ? AND j.status = 'claimed'",
                    (job_id, worker),
                ).fetchone()
                if row is None:
                    return  # the lease expired and the job moved on: nothing of ours to close
                run_id, run_status = row
                if error is None and run_status == "pending":
                    status = "queued"  # woken while we drove it: drive it again
                else:
                    status = "done" if error is None else "failed"
                conn.execute(
                    "UPDATE jobs SET status = ?, last_error = ?, locked_until = NULL, "
                    "run_after = ?, updated_at = ? WHERE id = ?",
                    (status, error, ts, ts, job_id),
                )
                if ghost:
                    self._events(conn, Fence(run_id), [NewEvent("job.ghost", worker)], ts)

            self._write(conn, self._full, tx)

        await self._call(go)

    async def release_job(self, job_id: int, worker: str, *, at: datetime) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                conn.execute(
                    "UPDATE jobs SET status = 'queued', worker = NULL, locked_until = NULL, "
                    "attempt = MAX(attempt - 1, 0), run_after = ?, updated_at = ? "
                    "WHERE id = ? AND worker = ? AND status = 'claimed'",
                    (ts, ts, job_id, worker),
                )

            self._write(conn, self._full, tx)

        await self._call(go)

    async def retry_job(
        self, job_id: int, worker: str, *, error: str, run_after: datetime, at: datetime
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                conn.execute(
                    "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' "
                    "ELSE 'queued' END, worker = NULL, locked_until = NULL, last_error = ?, "
                    "run_after = ?, updated_at = ? "
                    "WHERE id = ? AND worker = ? AND status = 'claimed'",
                    (error, _ts(run_after), ts, job_id, worker),
                )

            self._write(conn, self._full, tx)

        await self._call(go)

    async def reap_jobs(self, *, now: datetime | None, at: datetime) -> int:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> int:
            def tx() -> int:
                now_ts = time.time() if now is None else _ts(now)
                rows = conn.execute(
                    "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' "
                    "ELSE 'queued' END, last_error = 'lease expired (worker ' || "
                    "COALESCE(worker, '?') || ' stopped renewing)', worker = NULL, "
                    "locked_until = NULL, run_after = ?, updated_at = ? "
                    "WHERE status = 'claimed' AND locked_until <= ? RETURNING run_id",
                    (now_ts, ts, now_ts),
                ).fetchall()
                for (run_id,) in rows:
                    self._events(conn, Fence(run_id), [NewEvent("job.lease_expired")], ts)
                return len(rows)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def reap_stuck_runs(
        self, *, idle_for: float, now: datetime | None, at: datetime
    ) -> list[str]:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                now_ts = time.time() if now is None else _ts(now)
                rows = conn.execute(
                    "SELECT id FROM runs r WHERE status IN ('running', 'pending') "
                    "AND queue IS NOT NULL AND updated_at <= ? AND NOT EXISTS (SELECT 1 FROM "
                    "jobs j WHERE j.run_id = r.id AND j.status IN ('queued', 'claimed'))",
                    (now_ts - idle_for,),
                ).fetchall()
                stuck = [r[0] for r in rows]
                for run_id in stuck:
                    conn.execute(
                        "INSERT INTO jobs (run_id, queue, status, priority, concurrency_key, "
                        "run_after, created_at, updated_at) SELECT id, queue, 'queued', "
                        "priority, concurrency_key, ?, ?, ? FROM runs WHERE id = ? "
                        "ON CONFLICT DO NOTHING",
                        (ts, ts, ts, run_id),
                    )
                    self._events(conn, Fence(run_id), [NewEvent("run.requeued", "stuck")], ts)
                return stuck

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def orphaned_runs(
        self, workflows: Sequence[str], *, grace: float, now: datetime | None, limit: int = 100
    ) -> list[RunRow]:
        now_ts = time.time() if now is None else _ts(now)
        marks = ", ".join("?" for _ in workflows) or "NULL"

        def go(conn: sqlite3.Connection) -> list[RunRow]:
            rows = conn.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE queue IS NULL AND workflow_name IN ({marks}) "
                f"AND {_ORPHAN} ORDER BY updated_at LIMIT ?",
                (*workflows, now_ts, now_ts - grace, now_ts - grace, limit),
            )
            return [_run(r) for r in rows]

        return await self._call(go)

    async def adopt_orphans(
        self,
        workflows: Sequence[str],
        *,
        queue: str,
        grace: float,
        now: datetime | None,
        at: datetime,
        limit: int = 100,
    ) -> list[str]:
        ts = _ts(at)
        now_ts = time.time() if now is None else _ts(now)
        marks = ", ".join("?" for _ in workflows) or "NULL"

        def go(conn: sqlite3.Connection) -> list[str]:
            def tx() -> list[str]:
                rows = conn.execute(
                    f"SELECT id, owner FROM runs WHERE queue IS NULL AND workflow_name IN "
                    f"({marks}) AND {_ORPHAN} ORDER BY updated_at LIMIT ?",
                    (*workflows, now_ts, now_ts - grace, now_ts - grace, limit),
                ).fetchall()
                for run_id, owner in rows:
                    conn.execute("UPDATE runs SET queue = ? WHERE id = ?", (queue, run_id))
                    self._enqueue_next(conn, run_id, ts)
                    event = NewEvent("run.adopted", f"by queue {queue}; owner was {owner}")
                    self._events(conn, Fence(run_id), [event], ts)
                return [r[0] for r in rows]

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def list_jobs(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[JobRow]:
        def go(conn: sqlite3.Connection) -> list[JobRow]:
            rows = conn.execute(
                f"SELECT {_JOB_COLS} FROM jobs WHERE (? IS NULL OR run_id = ?) "
                "AND (? IS NULL OR status = ?) ORDER BY id LIMIT ?",
                (workflow_id, workflow_id, status, status, limit),
            )
            return [_job(r) for r in rows]

        return await self._call(go)

    async def rerun_from(self, workflow_id: str, step: str, *, at: datetime) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                run = conn.execute(
                    "SELECT status FROM runs WHERE id = ?", (workflow_id,)
                ).fetchone()
                if run is None:
                    raise RunNotFoundError(workflow_id)
                if run[0] in ("running", "cancelled"):
                    raise InvalidArgumentError(
                        f"run {workflow_id!r} is {run[0]}; rerun_from needs a run that is not "
                        "executing (cancel it first, or wait for it to end or park)"
                    )
                found = conn.execute(
                    "SELECT 1 FROM steps WHERE run_id = ? AND step_key = ?", (workflow_id, step)
                ).fetchone()
                if found is None:
                    raise InvalidArgumentError(f"run {workflow_id!r} has no step {step!r}")
                # "after it" in the run's own order (its events), not by clock: steps and
                # waits begun at the same instant keep their order
                first = conn.execute(_RERUN_FIRST, (workflow_id, step)).fetchone()[0]
                for sql in (_RERUN_STEPS, _RERUN_WAITS):
                    conn.execute(sql, (workflow_id, workflow_id, first))
                conn.execute(
                    "UPDATE runs SET status = 'pending', output = NULL, finished_at = NULL "
                    "WHERE id = ?",
                    (workflow_id,),
                )
                self._events(conn, Fence(workflow_id), [NewEvent("run.rerun_from", step)], ts)
                conn.execute(
                    "INSERT INTO jobs (run_id, queue, status, priority, concurrency_key, "
                    "run_after, created_at, updated_at) SELECT id, queue, 'queued', priority, "
                    "concurrency_key, ?, ?, ? FROM runs WHERE id = ? AND queue IS NOT NULL "
                    "ON CONFLICT DO NOTHING",
                    (ts, ts, ts, workflow_id),
                )

            self._write(conn, self._full, tx)

        await self._call(go)

    # -- outbox -----------------------------------------------------------------------

    async def outbox_pending(self, *, limit: int, now: datetime | None) -> list[OutboxRow]:
        def go(conn: sqlite3.Connection) -> list[OutboxRow]:
            now_ts = time.time() if now is None else _ts(now)
            rows = conn.execute(
                "SELECT run_id, seq, type, message, detail, at, attempts, next_attempt_at "
                "FROM events WHERE published_at IS NULL AND dead_at IS NULL "
                "ORDER BY at, run_id, seq LIMIT ?",
                (limit,),
            ).fetchall()
            out: list[OutboxRow] = []
            blocked: set[str] = set()
            for r in rows:
                if r[0] in blocked:
                    continue
                if r[7] is not None and r[7] > now_ts:
                    blocked.add(r[0])  # an earlier event of this run waits for its retry
                    continue
                out.append(OutboxRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]), r[6]))
            return out

        return await self._call(go)

    async def outbox_mark(
        self,
        *,
        delivered: Sequence[tuple[str, int]],
        failed: Sequence[tuple[str, int, str, datetime | None]],
        at: datetime,
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                conn.executemany(
                    "UPDATE events SET published_at = ?, attempts = attempts + 1 "
                    "WHERE run_id = ? AND seq = ?",
                    [(ts, run, seq) for run, seq in delivered],
                )
                conn.executemany(
                    "UPDATE events SET attempts = attempts + 1, last_error = ?, "
                    "next_attempt_at = ?, dead_at = ? WHERE run_id = ? AND seq = ?",
                    [
                        (
                            err,
                            None if nxt is None else _ts(nxt),
                            ts if nxt is None else None,
                            run,
                            seq,
                        )
                        for run, seq, err, nxt in failed
                    ],
                )

            self._write(conn, "NORMAL", tx)

        await self._call(go)

    async def outbox_replay_dead(self, *, limit: int, at: datetime) -> int:
        def go(conn: sqlite3.Connection) -> int:
            def tx() -> int:
                cur = conn.execute(
                    "UPDATE events SET dead_at = NULL, attempts = 0, next_attempt_at = NULL "
                    "WHERE (run_id, seq) IN (SELECT run_id, seq FROM events "
                    "WHERE dead_at IS NOT NULL ORDER BY dead_at, run_id, seq LIMIT ?)",
                    (limit,),
                )
                return cur.rowcount

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def outbox_dead(self, *, limit: int) -> list[OutboxRow]:
        def go(conn: sqlite3.Connection) -> list[OutboxRow]:
            rows = conn.execute(
                "SELECT run_id, seq, type, message, detail, at, attempts FROM events "
                "WHERE dead_at IS NOT NULL ORDER BY dead_at, run_id, seq LIMIT ?",
                (limit,),
            )
            return [OutboxRow(r[0], r[1], r[2], r[3], r[4], _dt(r[5]), r[6]) for r in rows]

        return await self._call(go)

    # -- idempotency ------------------------------------------------------------------

    async def idempotency_begin(
        self, command: str, key: str, *, at: datetime, stale_after: float
    ) -> str | None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> str | None:
            def tx() -> str | None:
                row = conn.execute(
                    "SELECT status, result, updated_at FROM idempotency "
                    "WHERE command = ? AND key = ?",
                    (command, key),
                ).fetchone()
                if row is not None:
                    if row[0] == "done":
                        return str(row[1]) if row[1] is not None else "null"
                    if row[2] > ts - stale_after:
                        raise IdempotencyInProgressError(command, key)
                conn.execute(
                    "INSERT INTO idempotency (command, key, status, created_at, updated_at) "
                    "VALUES (?, ?, 'in_progress', ?, ?) ON CONFLICT (command, key) DO UPDATE "
                    "SET status = 'in_progress', updated_at = excluded.updated_at",
                    (command, key, ts, ts),
                )
                return None

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def idempotency_finish(
        self, command: str, key: str, *, result: str | None, at: datetime
    ) -> None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                if result is None:
                    conn.execute(
                        "DELETE FROM idempotency WHERE command = ? AND key = ?", (command, key)
                    )
                else:
                    conn.execute(
                        "UPDATE idempotency SET status = 'done', result = ?, updated_at = ? "
                        "WHERE command = ? AND key = ?",
                        (result, ts, command, key),
                    )

            self._write(conn, self._full, tx)

        await self._call(go)

    # -- retention (plain SQL in _prune.py) ---------------------------------------------

    async def prunable_runs(
        self, finished_before: datetime, statuses: Sequence[RunStatus] | None, limit: int
    ) -> list[str]:
        wanted = terminal_statuses(statuses)
        cutoff = _ts(finished_before)
        return await self._call(lambda conn: sqlite_prunable_runs(conn, cutoff, wanted, limit))

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        ids = list(run_ids)

        def go(conn: sqlite3.Connection) -> int:
            return self._write(conn, self._full, lambda: sqlite_delete_runs(conn, ids))

        return await self._call(go)
