"""A resume replays the run's history from memory: what it writes does not grow
with the number of waits (or steps) the run already went through."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.store import Store, open_store

READS = ("get_", "list_", "load_", "orphaned_", "run_history", "close")


class CountingStore:
    """A store that counts the calls of every verb that may write (with `reads`, of
    every verb)."""

    def __init__(self, inner: Store, *, reads: bool = False) -> None:
        self.inner = inner
        self.reads = reads
        self.writes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr) or (not self.reads and name.startswith(READS)):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.writes[name] += 1
            return await attr(*args, **kwargs)

        return counted


def _flow(n: int) -> Callable[..., Any]:
    async def waits_a_lot(wf: Workflow) -> int:
        total = 0
        for _ in range(n):
            total += await wf.wait_for_signal("tick")
        await wf.step("sum", lambda: total)
        await wf.wait_for_signal("done")
        return total

    return waits_a_lot


async def _writes_of_a_resume(database_url: str, n: int, run_id: str) -> Counter[str]:
    store = CountingStore(open_store(database_url))
    app = App(store=cast(Store, store), clock=FakeClock(), resume_woken=False)
    try:
        flow = _flow(n)
        assert (await app.arun(flow, workflow_id=run_id)).status is RunStatus.WAITING
        for i in range(n):
            await app.asignal(run_id, "tick", i)
        assert (await app.aresume(run_id)).status is RunStatus.WAITING  # parked on "done"
        store.writes.clear()
        assert (await app.aresume(run_id)).status is RunStatus.WAITING
        return Counter(store.writes)
    finally:
        await app.aclose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_resume_writes_nothing_for_waits_already_resolved(database_url: str) -> None:
    few = await _writes_of_a_resume(database_url, 2, "few")
    many = await _writes_of_a_resume(database_url, 12, "many")
    assert few == many, (few, many)
    assert many["register_wait"] == 1  # only the wait still pending ("done")


async def test_a_first_drive_loads_no_history_and_a_result_reads_the_run_once(
    database_url: str,
) -> None:
    store = CountingStore(open_store(database_url), reads=True)
    app = App(store=cast(Store, store), clock=FakeClock())

    async def two_steps(wf: Workflow) -> int:
        return await wf.step("a", lambda: 1) + await wf.step("b", lambda: 2)

    try:
        assert (await app.arun(two_steps, workflow_id="r1")).value == 3
        # the run's first claim: nothing recorded yet, so no history is loaded to replay;
        # the answer's record is read once, whole
        assert store.writes["list_waits"] == store.writes["load_steps"] == 0, store.writes
        assert store.writes["run_history"] == 1, store.writes
        store.writes.clear()
        result = await app.aresult("r1")
        assert result.value == 3 and list(result.record.steps) == ["a", "b"]
        # one read to see that it ended, one for the record: not one per part of it
        assert store.writes == {"get_run": 1, "run_history": 1}, store.writes
    finally:
        await app.aclose()
