"""SQLite's `wait_for_change` wakes on news for its channel (this store's own writes, or
another connection's commit that is news for the channel) and not on other commits.

Two stores on one file are two connections: to SQLite, two processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.store import Fence, NewEvent, NewJob, NewRun, RunStatus, Store, open_store
from tether.store._sqlite_changes import POLL_MAX

AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    url = f"sqlite:///{tmp_path}/t.db"
    here, there = open_store(url), open_store(url)
    await here.open()
    await there.open()
    yield here, there
    await here.close()
    await there.close()


async def _waiting(store: Store, channel: str) -> asyncio.Task[bool]:
    """A wait on `channel` that has taken its first look (so later writes are news)."""
    task = asyncio.ensure_future(store.wait_for_change(channel, 10.0))
    await asyncio.sleep(0)
    return task


async def _owned(store: Store, wid: str) -> Fence:
    await store.create_run(NewRun(wid, "w"), AT)
    row = await store.claim_run(wid, "me", AT, NewEvent("workflow.running"))
    return Fence(wid, row.generation)


@pytest.mark.parametrize("writer", ["this store", "another connection"])
async def test_a_queued_job_wakes_a_waiter_for_jobs(
    stores: tuple[Store, Store], writer: str
) -> None:
    here, there = stores
    waiting = await _waiting(here, "jobs")
    await (here if writer == "this store" else there).submit_run(NewRun("r", "w"), NewJob(), AT)
    assert await waiting is True


@pytest.mark.parametrize("writer", ["this store", "another connection"])
async def test_a_runs_end_wakes_a_waiter_for_that_run(
    stores: tuple[Store, Store], writer: str
) -> None:
    here, there = stores
    store = here if writer == "this store" else there
    fence = await _owned(store, "r")
    waiting = await _waiting(here, "run:r")
    await store.finish_run(
        fence, RunStatus.COMPLETED, output="1", error=None, at=AT, event=NewEvent("done")
    )
    assert await waiting is True


async def test_another_connections_commit_that_is_no_news_does_not_wake(
    stores: tuple[Store, Store],
) -> None:
    here, there = stores
    busy = await _owned(there, "busy")
    await there.create_run(NewRun("r", "w"), AT)
    for_jobs, for_run = await _waiting(here, "jobs"), await _waiting(here, "run:r")
    # r's claim (it neither ended nor parked), then another run's work: commits
    # that neither queue a job nor end or park r
    await there.claim_run("r", "me", AT, NewEvent("workflow.running"))
    for i in range(5):
        await there.append_events(busy, [NewEvent(f"e{i}")], AT)
        await asyncio.sleep(POLL_MAX / 10)
    assert await for_jobs is False
    assert await for_run is False


async def test_a_wait_with_no_news_ends_within_the_poll(stores: tuple[Store, Store]) -> None:
    here, _ = stores
    # callers re-read what they wait for after each wait, as on PostgreSQL after a
    # missed notification: a long timeout still comes back
    assert await asyncio.wait_for(here.wait_for_change("jobs", 3600.0), 5.0) is False


@pytest.mark.parametrize("writer", ["this store", "another connection"])
async def test_a_job_queued_between_a_claim_and_the_next_wait_is_news_to_it(
    stores: tuple[Store, Store], writer: str
) -> None:
    here, there = stores
    claimed = await here.claim_jobs(
        "w", ["default"], limit=1, visibility=30.0, limits={}, now=None, at=AT
    )
    assert claimed == []  # nothing yet: the worker will wait
    await (here if writer == "this store" else there).submit_run(NewRun("r", "w"), NewJob(), AT)
    assert await here.wait_for_change("jobs", 10.0) is True  # not lost in between
