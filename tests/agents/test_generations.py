"""An issue's runs, one generation each (`<key>`, `<key>:2` ...): the dispatcher finds
the newest without reading every one of them at every tick."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

import tether
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.store import Store, open_store


class CountingStore:
    """A real store that counts the calls of each of its verbs (App(store=...))."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted


def _config(tmp: Path) -> tether.agents.WorkflowFile:
    return parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 1}}
---
Work on {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )


def _issue(ident: str) -> Issue:
    return Issue(id=ident, identifier=ident, title=f"title {ident}", state="todo")


@pytest.fixture
async def counted(database_url: str) -> AsyncIterator[tuple[tether.App, CountingStore]]:
    store = CountingStore(open_store(database_url))
    app = tether.App(store=cast(Store, store), clock=tether.FakeClock())
    yield app, store
    await app.aclose()


async def _stopped_and_retried(d: Dispatcher, ident: str, times: int) -> None:
    """`times` runs of the issue, each stopped by a person, the next made by `retry`."""
    await d.tick()
    for _ in range(times - 1):
        await d.stop(ident)
        await d.retry(ident)
    await d.stop(ident)


async def test_a_tick_reads_as_many_runs_for_an_issue_retried_often_as_for_one_retried_once(
    counted: tuple[tether.App, CountingStore], tmp_path: Path
) -> None:
    """Before: the newest run was found by reading `<key>`, `<key>:2` ... until one was
    missing, for every candidate at every tick: 13 reads for an issue run 12 times."""
    app, store = counted
    tracker = MemoryTracker([_issue("ONCE"), _issue("OFTEN")])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend())
    await _stopped_and_retried(d, "ONCE", 2)
    await _stopped_and_retried(d, "OFTEN", 12)
    reads = []
    for ident in ("ONCE", "OFTEN"):
        tracker.set_state("ONCE" if ident == "OFTEN" else "OFTEN", "review")  # one candidate
        tracker.set_state(ident, "todo")
        store.calls.clear()
        report = await d.tick()
        assert report.dispatched == [] and "stopped by a person" in report.skipped[ident]
        reads.append(store.calls["get_run"])
    assert reads[0] == reads[1] <= 2, reads
    assert (await d.latest_run("OFTEN")).workflow_id == "agent:memory:OFTEN:12"


async def test_a_restarted_dispatcher_finds_the_newest_run_and_numbers_the_next_after_it(
    database_url: str, tmp_path: Path
) -> None:
    """Nothing remembered: it looks ahead in growing steps, then narrows down; and a
    dispatcher that remembers an older generation finds the ones another one made."""
    tracker = MemoryTracker([_issue("R-1")])
    store = CountingStore(open_store(database_url))
    async with tether.App(store=cast(Store, store), clock=tether.FakeClock()) as first:
        d = Dispatcher(first, _config(tmp_path), tracker=tracker, backend=MockBackend())
        await _stopped_and_retried(d, "R-1", 3)
        assert (await d.latest_run("R-1")).workflow_id == "agent:memory:R-1:3"
        async with tether.App(database_url, clock=tether.FakeClock()) as other:
            e = Dispatcher(other, _config(tmp_path), tracker=tracker, backend=MockBackend())
            for _ in range(17):  # 4 ... R-1:20, made by the other dispatcher
                assert (await e.retry("R-1")).startswith("agent:memory:R-1:")
                await e.stop("R-1")
        store.calls.clear()
        assert (await d.latest_run("R-1")).workflow_id == "agent:memory:R-1:20"
        assert store.calls["get_run"] < 17, store.calls  # not one read a generation
        assert await d.retry("R-1") == "agent:memory:R-1:21"
        assert await d.dispatch(_issue("R-1")) == "agent:memory:R-1:21"  # already there


async def test_a_remembered_run_deleted_since_is_looked_for_from_the_first(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("D-1")])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend())
    await _stopped_and_retried(d, "D-1", 2)
    assert (await d.latest_run("D-1")).workflow_id == "agent:memory:D-1:2"
    await app.adelete_run("agent:memory:D-1:2")
    assert (await d.latest_run("D-1")).workflow_id == "agent:memory:D-1"
    await app.adelete_run("agent:memory:D-1")
    with pytest.raises(tether.errors.RunNotFoundError, match="never dispatched"):
        await d.latest_run("D-1")
    assert await d.dispatch(_issue("D-1")) == "agent:memory:D-1"  # the first, made again


async def test_after_a_prune_of_its_early_runs_a_restarted_dispatcher_numbers_on(
    database_url: str, tmp_path: Path
) -> None:
    """Before: a restarted dispatcher looked from `<key>` on, found it pruned, and made
    `<key>` again (generation 1) although `<key>:3` was still there."""
    tracker = MemoryTracker([_issue("P-1")])
    clock = tether.FakeClock()
    async with tether.App(database_url, clock=clock) as first:
        d = Dispatcher(first, _config(tmp_path), tracker=tracker, backend=MockBackend())
        await d.tick()
        for _ in range(2):  # P-1, P-1:2 end a day apart from P-1:3
            await d.stop("P-1")
            clock.advance(86400)
            await d.retry("P-1")
        await d.stop("P-1")
        assert await first.aprune("12h") == 2
        assert (await first.aget_run("agent:memory:P-1:3")).status.terminal
    async with tether.App(database_url, clock=clock) as again:
        e = Dispatcher(again, _config(tmp_path), tracker=tracker, backend=MockBackend())
        assert (await e.latest_run("P-1")).workflow_id == "agent:memory:P-1:3"
        assert await e.retry("P-1") == "agent:memory:P-1:4"
        assert await e.dispatch(_issue("P-1")) == "agent:memory:P-1:4"  # already there
        ids = [r.workflow_id async for r in again.aiter_runs(tag="agent:memory:P-1")]
        assert sorted(ids) == ["agent:memory:P-1:3", "agent:memory:P-1:4"]


async def test_a_tick_reads_the_latest_runs_of_all_held_candidates_in_one_query(
    counted: tuple[tether.App, CountingStore], tmp_path: Path
) -> None:
    """Before: one store read (or more) per candidate issue at every tick."""
    app, store = counted
    idents = [f"H-{i}" for i in range(30)]
    tracker = MemoryTracker([_issue(i) for i in idents])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend())
    for ident in idents:  # more than a tick dispatches at once (its concurrency)
        await d.dispatch(_issue(ident))
        await d.stop(ident)
    store.calls.clear()
    report = await d.tick()
    assert report.dispatched == []
    assert all("stopped by a person" in report.skipped[i] for i in idents), report.skipped
    assert store.calls["newest_generations"] == 1, store.calls
    assert store.calls["get_run"] == 0, store.calls
