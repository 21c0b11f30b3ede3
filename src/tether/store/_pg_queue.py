"""The PostgreSQL adapter, part three: job queue, outbox, idempotent commands.

A claim is one transaction: ready rows are locked with ``FOR UPDATE SKIP
LOCKED`` (claimers never wait on each other) and flipped to claimed. A
concurrency key is guarded twice: an advisory lock on the key while claiming,
and a unique index that admits one claimed job per key; a claim that loses
that race claims nothing this round. A queue with limits is claimed under an
advisory lock on the queue, so its caps hold across workers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import psycopg

from ..errors import (
    IdempotencyInProgressError,
    InvalidArgumentError,
    RunNotFoundError,
    StoreError,
)
from ._pg_base import JOB_COLS, NOW, ORPHAN, RUN_COLS, Conn, PgBase, job_row, run_row
from ._prune import pg_delete_runs, pg_prunable_runs, terminal_statuses
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

__all__ = ["PgQueueOps"]

_JOB_RET = ", ".join("u." + c.strip() for c in JOB_COLS.split(","))
# claim ready keyless jobs; one row per claimed job, or one row of NULLs when none,
# each ending with "do keyed jobs wait too" (only asked when fewer than %(n)s were claimed)
_CLAIM_FREE = (
    "WITH c AS (SELECT id FROM jobs WHERE queue = ANY(%(qs)s) AND status = 'queued' "
    f"AND concurrency_key IS NULL AND run_after <= {NOW} ORDER BY priority DESC, id "
    "LIMIT %(n)s FOR UPDATE SKIP LOCKED), t AS (SELECT "
    f"{NOW} AS n), u AS (UPDATE jobs SET status = 'claimed', worker = %(w)s, "
    "locked_until = t.n + make_interval(secs => %(vis)s), attempt = attempt + 1, "
    "claimed_at = t.n, updated_at = %(at)s FROM c, t WHERE jobs.id = c.id "
    f"RETURNING {', '.join('jobs.' + c.strip() for c in JOB_COLS.split(','))}) "
    f"SELECT {_JOB_RET}, k.keyed FROM (SELECT CASE WHEN (SELECT count(*) FROM u) < %(n)s "
    "THEN EXISTS (SELECT 1 FROM jobs WHERE queue = ANY(%(qs)s) AND status = 'queued' "
    "AND concurrency_key IS NOT NULL) ELSE false END AS keyed) k LEFT JOIN u ON true"
)


class PgQueueOps(PgBase):
    """Queue, outbox and idempotency verbs of `PostgresStore`."""

    # -- queue -------------------------------------------------------------------------

    async def submit_run(self, run: NewRun, job: NewJob, at: datetime) -> tuple[RunRow, bool]:
        # one statement: the run, its first job, its first event and the wake-up call
        sql = (
            "WITH r AS (INSERT INTO runs (id, workflow_name, workflow_version, status, input, "
            "state, priority, tags, tenant, parent_id, idempotency_key, queue, concurrency_key, "
            "event_seq, created_at, updated_at, step_rule) VALUES (%(id)s, %(name)s, "
            "%(version)s, 'pending', %(input)s::jsonb, %(state)s::jsonb, %(prio)s, "
            "%(tags)s::jsonb, %(tenant)s, %(parent)s, %(ikey)s, %(queue)s, %(ckey)s, 1, %(at)s, "
            "%(at)s, %(rule)s) ON CONFLICT DO NOTHING "
            f"RETURNING {RUN_COLS}), "
            "j AS (INSERT INTO jobs (run_id, queue, status, priority, max_attempts, "
            "concurrency_key, run_after, created_at, updated_at) SELECT id, %(queue)s, 'queued', "
            "%(prio)s, %(maxa)s, %(ckey)s, %(after)s, %(at)s, %(at)s FROM r), "
            "e AS (INSERT INTO events (run_id, seq, type, message, at) "
            "SELECT id, 1, 'workflow.submitted', %(queue)s, %(at)s FROM r), "
            "n AS (SELECT pg_notify(%(chan)s, 'jobs') FROM r) "
            f"SELECT {RUN_COLS.replace('::text', '')}, (SELECT count(*) FROM n) FROM r"
        )
        params = {
            "id": run.workflow_id,
            "name": run.workflow_name,
            "version": run.workflow_version,
            "input": run.input,
            "state": run.state,
            "prio": job.priority,
            "tags": json.dumps(list(run.tags)),
            "tenant": run.tenant,
            "parent": run.parent_id,
            "ikey": run.idempotency_key,
            "queue": job.queue,
            "ckey": job.concurrency_key,
            "maxa": job.max_attempts,
            "after": job.run_after or at,
            "at": at,
            "chan": self.config.channel,
            "rule": run.step_rule,
        }

        async def go(conn: Conn) -> tuple[RunRow, bool]:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            if row is not None:
                return run_row(row[:-1]), True
            return await self._insert_run(conn, replace(run, queue=job.queue), at)

        return await self._with(go)

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
        jobs: list[JobRow] = []
        free = [q for q in queues if q not in limits]
        if free:
            # the common case in one statement: jobs without a key, in queues without caps;
            # when it claims fewer than asked, it also says whether keyed jobs wait (the
            # slow path below), so an idle round is one round trip
            rows = await self._all(
                _CLAIM_FREE,
                {"qs": free, "n": limit, "now": now, "w": worker, "vis": visibility, "at": at},
            )
            keyed = bool(rows[0][-1]) if rows else False
            jobs = sorted(
                (job_row(r[:-1]) for r in rows if r[0] is not None),
                key=lambda j: (-j.priority, j.id),
            )
            limit -= len(jobs)
            if limit < 1 or not (keyed or any(q in limits for q in queues)):
                return jobs

        async def go(conn: Conn) -> list[JobRow]:
            picked: list[int] = []
            keys: set[str] = set()
            for queue in queues:
                room = limit - len(picked)
                if room <= 0:
                    break
                cap = limits.get(queue)
                if cap is not None and (cap.concurrency is not None or cap.rate_per_second):
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tether-queue:{queue}",)
                    )
                    cur = await conn.execute(
                        "SELECT count(*) FILTER (WHERE status = 'claimed'), count(*) FILTER "
                        f"(WHERE claimed_at > {NOW} - interval '1 second') FROM jobs "
                        "WHERE queue = %(q)s",
                        {"q": queue, "now": now},
                    )
                    counts = await cur.fetchone()
                    assert counts is not None
                    if cap.concurrency is not None:
                        room = min(room, cap.concurrency - counts[0])
                    if cap.rate_per_second is not None:
                        room = min(room, int(cap.rate_per_second) - counts[1])
                if room <= 0:
                    continue
                cur = await conn.execute(
                    "SELECT j.id, j.concurrency_key FROM jobs j WHERE j.queue = %(q)s "
                    "AND j.status = 'queued' "
                    f"AND j.run_after <= {NOW} AND (j.concurrency_key IS NULL OR "
                    "(pg_try_advisory_xact_lock(hashtext('tether-key:' || j.concurrency_key)) "
                    "AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.concurrency_key = "
                    "j.concurrency_key AND k.status = 'claimed'))) "
                    "ORDER BY j.priority DESC, j.id LIMIT %(room)s FOR UPDATE SKIP LOCKED",
                    {"q": queue, "now": now, "room": room * 4},
                )
                taken = 0
                for job_id, key in await cur.fetchall():
                    if taken >= room:
                        break
                    if key is not None:
                        if key in keys:
                            continue  # one claimed job per key, also within this claim
                        keys.add(key)
                    picked.append(job_id)
                    taken += 1
            if not picked:
                return []
            cur = await conn.execute(
                f"WITH t AS (SELECT {NOW} AS n) UPDATE jobs SET status = 'claimed', "
                "worker = %(w)s, locked_until = t.n + make_interval(secs => %(vis)s), "
                "attempt = attempt + 1, claimed_at = t.n, updated_at = %(at)s FROM t "
                f"WHERE id = ANY(%(ids)s) RETURNING {', '.join('jobs.' + c.strip() for c in JOB_COLS.split(','))}",
                {"now": now, "w": worker, "vis": visibility, "at": at, "ids": picked},
            )
            rows = [job_row(r) for r in await cur.fetchall()]
            return sorted(rows, key=lambda j: picked.index(j.id))

        try:
            return jobs + await self._with(go, tx=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                return jobs  # lost a race for a concurrency key; the next round claims again
            raise

    async def renew_job(
        self, job_id: int, worker: str, *, visibility: float, now: datetime | None
    ) -> bool:
        row = await self._one(
            f"UPDATE jobs SET locked_until = {NOW} + make_interval(secs => %(vis)s) "
            "WHERE id = %(id)s AND worker = %(w)s AND status = 'claimed' RETURNING 1",
            {"now": now, "vis": visibility, "id": job_id, "w": worker},
        )
        return row is not None

    async def finish_job(
        self, job_id: int, worker: str, *, error: str | None, ghost: bool, at: datetime
    ) -> None:
        # back to the queue if the run was woken while we drove it, else done (or failed)
        row = await self._one(
            "WITH j AS (SELECT j.id, j.run_id, r.status AS run_status FROM jobs j JOIN runs r "
            "ON r.id = j.run_id WHERE j.id = %(id)s AND j.worker = %(w)s AND j.status = 'claimed' "
            "FOR UPDATE OF j), u AS (UPDATE jobs SET status = CASE WHEN %(err)s::text IS NULL "
            "AND j.run_status = 'pending' THEN 'queued' WHEN %(err)s::text IS NULL THEN 'done' "
            "ELSE 'failed' END, last_error = %(err)s, locked_until = NULL, run_after = %(at)s, "
            "updated_at = %(at)s FROM j WHERE jobs.id = j.id RETURNING jobs.status, jobs.run_id), "
            "n AS (SELECT pg_notify(%(chan)s, 'jobs') FROM u WHERE u.status = 'queued') "
            "SELECT u.run_id, (SELECT count(*) FROM n) FROM u",
            {"id": job_id, "w": worker, "err": error, "at": at, "chan": self.config.channel},
        )
        if row is not None and ghost:

            async def mark(conn: Conn) -> None:
                await self._bump(conn, Fence(row[0]), [NewEvent("job.ghost", worker)], at)

            await self._with(mark, tx=True)

    async def release_job(self, job_id: int, worker: str, *, at: datetime) -> None:
        async def go(conn: Conn) -> None:
            await conn.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, locked_until = NULL, "
                "attempt = GREATEST(attempt - 1, 0), run_after = %s, updated_at = %s "
                "WHERE id = %s AND worker = %s AND status = 'claimed'",
                (at, at, job_id, worker),
            )
            await self._notify(conn, "jobs")

        await self._with(go, tx=True)

    async def retry_job(
        self, job_id: int, worker: str, *, error: str, run_after: datetime, at: datetime
    ) -> None:
        async def go(conn: Conn) -> None:
            await conn.execute(
                "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' "
                "ELSE 'queued' END, worker = NULL, locked_until = NULL, last_error = %s, "
                "run_after = %s, updated_at = %s "
                "WHERE id = %s AND worker = %s AND status = 'claimed'",
                (error, run_after, at, job_id, worker),
            )

        await self._with(go, tx=True)

    async def reap_jobs(self, *, now: datetime | None, at: datetime) -> int:
        async def go(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' "
                "ELSE 'queued' END, last_error = 'lease expired (worker ' || "
                "COALESCE(worker, '?') || ' stopped renewing)', worker = NULL, "
                "locked_until = NULL, run_after = %(at)s, updated_at = %(at)s "
                f"WHERE status = 'claimed' AND locked_until <= {NOW} RETURNING run_id",
                {"at": at, "now": now},
            )
            rows = await cur.fetchall()
            for (run_id,) in rows:
                await self._bump(conn, Fence(run_id), [NewEvent("job.lease_expired")], at)
            if rows:
                await self._notify(conn, "jobs")
            return len(rows)

        return await self._with(go, tx=True)

    async def reap_stuck_runs(
        self, *, idle_for: float, now: datetime | None, at: datetime
    ) -> list[str]:
        async def go(conn: Conn) -> list[str]:
            cur = await conn.execute(
                "SELECT id FROM runs r WHERE status IN ('running', 'pending') AND queue IS NOT "
                f"NULL AND updated_at <= {NOW} - make_interval(secs => %(idle)s) AND NOT EXISTS "
                "(SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.status IN ('queued', 'claimed')) "
                "FOR UPDATE SKIP LOCKED",
                {"now": now, "idle": idle_for},
            )
            stuck = [r[0] for r in await cur.fetchall()]
            for run_id in stuck:
                await self._enqueue_next(conn, run_id, at)
                await self._bump(conn, Fence(run_id), [NewEvent("run.requeued", "stuck")], at)
            return stuck

        return await self._with(go, tx=True)

    async def orphaned_runs(
        self, workflows: Sequence[str], *, grace: float, now: datetime | None, limit: int = 100
    ) -> list[RunRow]:
        rows = await self._all(
            f"SELECT {RUN_COLS} FROM runs WHERE queue IS NULL AND workflow_name = ANY(%(wf)s) "
            f"AND {ORPHAN} ORDER BY updated_at LIMIT %(lim)s",
            {"wf": list(workflows), "now": now, "grace": grace, "lim": limit},
        )
        return [run_row(r) for r in rows]

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
        async def go(conn: Conn) -> list[str]:
            cur = await conn.execute(
                f"SELECT id, owner FROM runs WHERE queue IS NULL AND workflow_name = ANY(%(wf)s) "
                f"AND {ORPHAN} ORDER BY updated_at LIMIT %(lim)s FOR UPDATE SKIP LOCKED",
                {"wf": list(workflows), "now": now, "grace": grace, "lim": limit},
            )
            rows = await cur.fetchall()
            for run_id, owner in rows:
                await conn.execute("UPDATE runs SET queue = %s WHERE id = %s", (queue, run_id))
                await self._enqueue_next(conn, run_id, at)
                event = NewEvent("run.adopted", f"by queue {queue}; owner was {owner}")
                await self._bump(conn, Fence(run_id), [event], at)
            return [r[0] for r in rows]

        return await self._with(go, tx=True)

    async def list_jobs(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[JobRow]:
        rows = await self._all(
            f"SELECT {JOB_COLS} FROM jobs WHERE (%(w)s::text IS NULL OR run_id = %(w)s) "
            "AND (%(s)s::text IS NULL OR status = %(s)s) ORDER BY id LIMIT %(lim)s",
            {"w": workflow_id, "s": status, "lim": limit},
        )
        return [job_row(r) for r in rows]

    async def rerun_from(self, workflow_id: str, step: str, *, at: datetime) -> None:
        async def go(conn: Conn) -> None:
            cur = await conn.execute(
                "SELECT status FROM runs WHERE id = %s FOR UPDATE", (workflow_id,)
            )
            run = await cur.fetchone()
            if run is None:
                raise RunNotFoundError(workflow_id)
            if run[0] in ("running", "cancelled"):
                raise InvalidArgumentError(
                    f"run {workflow_id!r} is {run[0]}; rerun_from needs a run that is not "
                    "executing (cancel it first, or wait for it to end or park)"
                )
            cur = await conn.execute(
                "SELECT 1 FROM steps WHERE run_id = %s AND step_key = %s", (workflow_id, step)
            )
            if await cur.fetchone() is None:
                raise InvalidArgumentError(f"run {workflow_id!r} has no step {step!r}")
            # "after it" in the run's own order (its events), not by clock
            cur = await conn.execute(
                "SELECT COALESCE(MIN(seq), 0) FROM events WHERE run_id = %s "
                "AND type = 'step.started' AND message = %s",
                (workflow_id, step),
            )
            row = await cur.fetchone()
            first = row[0] if row else 0
            for table, column, kind in (
                ("steps", "step_key", "step.started"),
                ("waitpoints", "wait_key", "wait.registered"),
            ):
                await conn.execute(
                    f"DELETE FROM {table} WHERE run_id = %s AND {column} IN (SELECT message "
                    "FROM events WHERE run_id = %s AND type = %s AND seq >= %s)",
                    (workflow_id, workflow_id, kind, first),
                )
            await conn.execute(
                "UPDATE runs SET status = 'pending', output = NULL, finished_at = NULL "
                "WHERE id = %s",
                (workflow_id,),
            )
            await self._bump(conn, Fence(workflow_id), [NewEvent("run.rerun_from", step)], at)
            await self._enqueue_next(conn, workflow_id, at)

        await self._with(go, tx=True)

    # -- outbox --------------------------------------------------------------------------

    async def outbox_pending(self, *, limit: int, now: datetime | None) -> list[OutboxRow]:
        rows = await self._all(
            "SELECT run_id, seq, type, message, detail::text, at, attempts, "
            f"(next_attempt_at IS NOT NULL AND next_attempt_at > {NOW}) FROM events "
            "WHERE published_at IS NULL AND dead_at IS NULL ORDER BY at, run_id, seq "
            "LIMIT %(lim)s",
            {"now": now, "lim": limit},
        )
        out: list[OutboxRow] = []
        blocked: set[str] = set()
        for r in rows:
            if r[0] in blocked:
                continue
            if r[7]:
                blocked.add(r[0])  # an earlier event of this run waits for its retry
                continue
            out.append(OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]))
        return out

    async def outbox_mark(
        self,
        *,
        delivered: Sequence[tuple[str, int]],
        failed: Sequence[tuple[str, int, str, datetime | None]],
        at: datetime,
    ) -> None:
        async def go(conn: Conn) -> None:
            async with conn.cursor() as cur:
                if delivered:
                    await cur.executemany(
                        "UPDATE events SET published_at = %s, attempts = attempts + 1 "
                        "WHERE run_id = %s AND seq = %s",
                        [(at, run, seq) for run, seq in delivered],
                    )
                if failed:
                    await cur.executemany(
                        "UPDATE events SET attempts = attempts + 1, last_error = %s, "
                        "next_attempt_at = %s, dead_at = %s WHERE run_id = %s AND seq = %s",
                        [
                            (err, nxt, at if nxt is None else None, run, seq)
                            for run, seq, err, nxt in failed
                        ],
                    )

        await self._with(go, tx=True)

    async def outbox_replay_dead(self, *, limit: int, at: datetime) -> int:
        async def go(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE events SET dead_at = NULL, attempts = 0, next_attempt_at = NULL "
                "WHERE (run_id, seq) IN (SELECT run_id, seq FROM events WHERE dead_at IS NOT NULL "
                "ORDER BY dead_at, run_id, seq LIMIT %s)",
                (limit,),
            )
            return cur.rowcount

        return await self._with(go, tx=True)

    async def outbox_dead(self, *, limit: int) -> list[OutboxRow]:
        rows = await self._all(
            "SELECT run_id, seq, type, message, detail::text, at, attempts FROM events "
            "WHERE dead_at IS NOT NULL ORDER BY dead_at, run_id, seq LIMIT %s",
            (limit,),
        )
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    # -- idempotency -----------------------------------------------------------------------

    async def idempotency_begin(
        self, command: str, key: str, *, at: datetime, stale_after: float
    ) -> str | None:
        async def go(conn: Conn) -> str | None:
            await conn.execute(
                "INSERT INTO idempotency (command, key, status, created_at, updated_at) "
                "VALUES (%s, %s, 'new', %s, %s) ON CONFLICT DO NOTHING",
                (command, key, at, at),
            )
            cur = await conn.execute(
                "SELECT status, result::text, updated_at > %s - make_interval(secs => %s) "
                "FROM idempotency WHERE command = %s AND key = %s FOR UPDATE",
                (at, stale_after, command, key),
            )
            row = await cur.fetchone()
            assert row is not None
            status, result, fresh = row
            if status == "done":
                return str(result) if result is not None else "null"
            if status == "in_progress" and fresh:
                raise IdempotencyInProgressError(command, key)
            await conn.execute(
                "UPDATE idempotency SET status = 'in_progress', updated_at = %s "
                "WHERE command = %s AND key = %s",
                (at, command, key),
            )
            return None

        return await self._with(go, tx=True)

    async def idempotency_finish(
        self, command: str, key: str, *, result: str | None, at: datetime
    ) -> None:
        if result is None:
            await self._with(
                lambda conn: conn.execute(
                    "DELETE FROM idempotency WHERE command = %s AND key = %s", (command, key)
                )
            )
            return
        await self._with(
            lambda conn: conn.execute(
                "UPDATE idempotency SET status = 'done', result = %s::jsonb, updated_at = %s "
                "WHERE command = %s AND key = %s",
                (result, at, command, key),
            )
        )

    # -- retention (plain SQL in _prune.py) ---------------------------------------------

    async def prunable_runs(
        self, finished_before: datetime, statuses: Sequence[RunStatus] | None, limit: int
    ) -> list[str]:
        wanted = terminal_statuses(statuses)
        return await self._with(lambda conn: pg_prunable_runs(conn, finished_before, wanted, limit))

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        ids = list(run_ids)
        return await self._with(lambda conn: pg_delete_runs(conn, ids), tx=True)
