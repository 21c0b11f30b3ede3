"""What a drive of a remote run reads to count its invocations: not the run's history.

A run woken many times (a signal a round) was invoked once a drive, and each drive read
every event of the run to count the invocations before it: the rows read grew with the
run's history. Counted here as the event rows the store's verbs hand back (a real store
on each backend, its verbs wrapped to count what they return)."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any, cast

import httpx
import pytest

import tether
from tether import FakeClock, RunStatus
from tether.remote import TenantApp, handler
from tether.store import EventRow, Store, open_store

SECRET = "s"


class EventRowsRead:
    """A store that counts, per verb, the event rows its verbs return (one, a list of
    them, or a run's history holding them)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.rows: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            got = await attr(*args, **kwargs)
            self.rows[name] += _events_in(got)
            return got

        return counted


def _events_in(got: Any) -> int:
    if isinstance(got, EventRow):
        return 1
    events = getattr(got, "events", got)
    if isinstance(events, list | tuple):
        return sum(isinstance(e, EventRow) for e in events)
    return 0


def _tenant() -> TenantApp:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="rounds")
    async def rounds(wf: tether.Workflow, n: int) -> int:
        total = 0
        for i in range(n):
            total += await wf.step(f"work-{i}", lambda i=i: i)
            total += await wf.wait_for_signal("tick")
        return total

    return tenant


async def _rows_of_last_drive(database_url: str, rounds: int) -> tuple[Counter[str], int]:
    """The event rows read by the drive that ends a run of `rounds` rounds, each woken
    by a signal, and how many events the run has."""
    store = EventRowsRead(open_store(database_url))
    app = tether.App(store=cast(Store, store), clock=FakeClock(), resume_woken=False)
    transport = httpx.ASGITransport(handler(_tenant()))
    flow = app.remote_workflow("rounds", url="http://t/", secret=SECRET, transport=transport)
    wid = f"rounds-{rounds}"
    try:
        assert (await app.arun(flow, rounds, workflow_id=wid)).status is RunStatus.WAITING
        for _ in range(rounds - 1):
            await app.asignal(wid, "tick", 1)
            assert (await app.aresume(wid)).status is RunStatus.WAITING
        await app.asignal(wid, "tick", 1)
        store.rows.clear()
        done = await app.aresume(wid)
        read = Counter(store.rows)
        assert done.status is RunStatus.COMPLETED, done.status
        record = await app.aget_record(wid)
        assert [e.type for e in record.events].count("remote.invoked") == rounds + 1
        return read, len(record.events)
    finally:
        await app.aclose()


async def test_a_drive_reads_no_more_events_for_a_longer_history(database_url: str) -> None:
    few, few_events = await _rows_of_last_drive(database_url, 20)
    many, many_events = await _rows_of_last_drive(database_url, 80)
    assert many_events > 3 * few_events > 400  # histories of hundreds of events
    # the drive read every event of the run (some 700) to count its invocations; now
    # the latest invocation's event alone, whatever the history's length
    assert many["list_events"] == few["list_events"] == 0, (few, many)
    assert many["last_event"] == few["last_event"] == 1, (few, many)
    # (its record, `run_history`, is read whole once the run has ended: the answer of
    # `aresume`, not the drive's count)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_count_is_the_latest_number_whatever_the_events_between(
    database_url: str,
) -> None:
    # the latest invocation's number, however many events came after it
    from tether.remote._invocations import invocations_so_far

    store = open_store(database_url)
    app = tether.App(store=store, clock=FakeClock())
    try:
        for filler in (0, 1, 2, 15, 16, 17, 55, 56, 57, 58, 63, 64, 65, 200, 1000):
            wid = f"r-{filler}"
            ran = await app.arun(_filler(filler), workflow_id=wid)
            assert ran.status is RunStatus.COMPLETED
            assert await invocations_so_far(store, wid) == 3, filler
        assert await invocations_so_far(store, "no-such-run") == 0
    finally:
        await app.aclose()


def _filler(after: int) -> Any:
    """A local workflow that records three invocation events, `after` events after the
    last (the count reads only the events, whoever wrote them)."""

    async def invoked(wf: tether.Workflow) -> None:
        for n in (1, 2, 3):
            await wf.log_event_now("remote.invoked", f"invocation {n}", {"invocation": n})
            await wf.log_event_now("remote.unanswered", "between")
        for _ in range(after):
            await wf.log_event_now("remote.unanswered", "after")

    return invoked
