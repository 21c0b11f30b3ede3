"""Every verb that writes a run's waits locks the run first (PostgreSQL).

A verb that took a wait's row and then waited for its run's row deadlocked with
one that holds the run and then writes the wait (a signal, a cancel): the
server undid one of them after a second (`deadlock_timeout`) and the store ran
it again, so a timer firing as a signal came, an event or token answered as
the run was cancelled, or a child ending as its parent was cancelled cost a
second. Each test holds the run's row in a transaction of its own, starts the
verb, waits until the verb waits for a lock, then writes the wait as a verb
holding the run does, with a deadlock check after 10 ms: the write must go
through at once, as the verb holds no wait of the run while it waits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import TokenCompletedError
from tether.testing import eventually

from .._postgres import PostgresServer


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres.url_with_schema(schema)
    postgres.drop_schema(schema)


def _base(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((*parts[:3], "", "")), parse_qs(parts.query)["schema"][0]


async def _lock_waiters(base: str, me: int) -> int:
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid != %s",
            (me,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@asynccontextmanager
async def _run_held(url: str, run_id: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The run's row, locked in a transaction of the test's own until the block ends."""
    base, schema = _base(url)
    async with await psycopg.AsyncConnection.connect(base) as conn:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        yield conn
        await conn.commit()


async def _write_wait_behind(url: str, run_id: str, verb: Awaitable[Any], write: str) -> Any:
    """Run `verb` while the run's row is held; once it waits for a lock, `write` the run's
    waits (SQL with one parameter, the run id), as a verb holding the run would. A
    deadlock here fails the test (the check runs after 10 ms, before the verb's own)."""
    async with _run_held(url, run_id) as conn:
        task = asyncio.ensure_future(verb)
        me = conn.info.backend_pid
        await eventually(lambda: _lock_waiters(_base(url)[0], me), timeout=60)
        await conn.execute("SET LOCAL deadlock_timeout = '10ms'")
        try:
            await conn.execute(write, (run_id,))
        except psycopg.errors.DeadlockDetected:
            task.cancel()
            pytest.fail("the verb held a wait of the run while it waited for the run's row")
    return await asyncio.wait_for(task, 60)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(pg: str, clock: FakeClock) -> AsyncIterator[App]:
    app = App(pg, clock=clock)
    yield app
    await app.aclose()


async def _parked(app: App, workflow: Callable[[Workflow], Awaitable[Any]], run_id: str) -> None:
    assert (await app.arun(workflow, workflow_id=run_id)).status is RunStatus.WAITING


async def _statuses(app: App, run_id: str) -> list[str]:
    return [w.status.value for w in await app.alist_waits(run_id)]


async def test_a_timer_fired_as_a_signal_answers_its_wait_waits_for_the_run(
    pg: str, app: App, clock: FakeClock
) -> None:
    async def gated(wf: Workflow) -> Any:
        return await wf.wait_for_signal("go", timeout=60)

    await _parked(app, gated, "r")
    clock.advance(61)
    answer = "UPDATE waitpoints SET status = 'resolved', resolved_at = now() WHERE run_id = %s"
    woken = await _write_wait_behind(pg, "r", app.afire_due_timers(), answer)
    assert woken == []  # the answer came first: the timer found nothing to time out
    assert await _statuses(app, "r") == ["resolved"]


async def test_an_event_sent_as_its_waiter_is_cancelled_waits_for_the_run(
    pg: str, app: App
) -> None:
    async def hook(wf: Workflow) -> Any:
        return await wf.wait_for_event("paid")

    await _parked(app, hook, "r")
    cancel = "UPDATE waitpoints SET status = 'cancelled' WHERE run_id = %s"
    woken = await _write_wait_behind(pg, "r", app.asend_event("paid", {"n": 1}), cancel)
    assert woken == []  # the wait was closed first: the event is kept in the inbox
    assert await _statuses(app, "r") == ["cancelled"]


async def test_a_token_completed_as_its_wait_times_out_waits_for_the_run(pg: str, app: App) -> None:
    async def approval(wf: Workflow) -> Any:
        return await wf.wait_for_token(await wf.create_token())

    await _parked(app, approval, "r")
    (token,) = [w.id for w in await app.alist_waits("r")]
    timed_out = "UPDATE waitpoints SET status = 'timed_out' WHERE run_id = %s"
    with pytest.raises(TokenCompletedError, match="already timed out"):
        await _write_wait_behind(pg, "r", app.acomplete_token(token, "yes"), timed_out)


async def test_a_child_ending_as_its_parent_is_cancelled_waits_for_the_parent(
    pg: str, app: App
) -> None:
    async def kid(wf: Workflow) -> Any:
        return await wf.wait_for_signal("done")

    async def parent(wf: Workflow) -> Any:
        return await wf.child(kid, workflow_id="kid")

    await _parked(app, parent, "p")
    assert (await app.aget_run("kid")).status is RunStatus.WAITING
    cancel = "UPDATE waitpoints SET status = 'cancelled' WHERE run_id = %s"

    async def signal_and_end() -> Any:
        await app.asignal("kid", "done", 7)
        return await app.aresult("kid")

    assert (await _write_wait_behind(pg, "p", signal_and_end(), cancel)).value == 7
    assert await _statuses(app, "p") == ["cancelled"]


async def test_a_parent_cancelled_as_its_child_ends_locks_the_child_first(
    pg: str, app: App
) -> None:
    """A child's end holds the child's row and then locks its waiting parent's; the
    cancel held the parent and then waited for the child."""

    async def kid(wf: Workflow) -> Any:
        return await wf.wait_for_signal("done")

    async def parent(wf: Workflow) -> Any:
        return await wf.child(kid, workflow_id="kid")

    await _parked(app, parent, "p")
    as_the_kid_ends = (
        "SELECT 1 FROM runs WHERE id = (SELECT parent_id FROM runs WHERE id = %s) FOR UPDATE"
    )
    cancelled = await _write_wait_behind(pg, "kid", app.acancel("p"), as_the_kid_ends)
    assert cancelled == ["p", "kid"]
    assert (await app.aget_run("kid")).status is RunStatus.CANCELLED
