"""A host's claim at its limits: "as many jobs as there are" (a huge limit), and claims
of capped queues named in different orders."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from tether import App, FakeClock, Workflow
from tether.testing import eventually
from tether.worker import ServerlessHost
from tether.worker._claim import claim_jobs

from .._postgres import PostgresServer


@pytest.mark.parametrize("capped", [False, True])
async def test_a_claim_of_a_huge_limit_takes_every_ready_job(app: App, capped: bool) -> None:
    """`aclaim(10**20)` (a platform's "all of them") was a raw OverflowError on SQLite
    and "bigint out of range" on PostgreSQL, on a capped queue or not."""
    if capped:
        app.queue("default", concurrency=10**30)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    ids = {await app.asubmit(w, 1), await app.asubmit(w, 2, concurrency_key="k")}
    jobs = await ServerlessHost(app).aclaim(10**20)
    assert {job.workflow_id for job in jobs} == ids


async def test_claims_naming_capped_queues_in_either_order_take_their_locks_in_one(
    postgres: PostgresServer,
) -> None:
    """A claim took each capped queue's lock in the order the worker named its queues:
    a worker of `-q b,a` held b's lock while it waited for a's, which a worker of
    `-q a,b` held while it waited for b's, a deadlock PostgreSQL broke after a second."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    app = App(postgres.url_with_schema(schema), clock=FakeClock())
    qa, qb = f"a-{schema}", f"b-{schema}"  # advisory locks are the database's: own names
    app.queue(qa, concurrency=1)
    app.queue(qb, concurrency=1)

    @app.workflow(name="w")
    async def w(wf: Workflow, x: int) -> int:
        return x

    other = psycopg.connect(postgres.url)
    try:
        ids = {await app.asubmit(w, 1, queue=qa), await app.asubmit(w, 2, queue=qb)}
        other.execute(LOCK, [f"tether-queue:{qa}"])  # the `-q a,b` claim, a's lock taken
        claim = asyncio.create_task(claim_jobs(app, "w1", [qb, qa], 2))
        await eventually(lambda: _waiting_for_a_lock(postgres), timeout=30)
        # the `-q b,a` claim waits for a's lock without holding b's
        got = other.execute(TRY_LOCK, [f"tether-queue:{qb}"]).fetchone()
        assert got == (True,)
        other.rollback()
        assert {job.workflow_id for job in await claim} == ids
    finally:
        other.close()
        await app.aclose()
        postgres.drop_schema(schema)


LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext(%s))"


def _waiting_for_a_lock(postgres: PostgresServer) -> bool:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return row is not None and row[0] > 0
