"""`App.list_runs` by workflow, tag, tenant, parent and time, a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import tether
from tether import App, RunInfo, Workflow
from tether.testing import FakeClock


async def leaf(wf: Workflow, n: int) -> int:
    return n


async def fan(wf: Workflow, n: int) -> int:
    return sum([await wf.child(leaf, i) for i in range(n)])


def ids(runs: list[RunInfo]) -> list[str]:
    return [r.workflow_id for r in runs]


async def test_a_parents_children_and_only_them(app: App, clock: FakeClock) -> None:
    await app.arun(fan, 3, workflow_id="p1")
    clock.advance(1)
    await app.arun(fan, 2, workflow_id="p2")
    kids = await app.alist_runs(parent="p1")
    assert len(kids) == 3 and {r.parent_id for r in kids} == {"p1"}
    assert len(await app.alist_runs(parent="p2")) == 2
    assert await app.alist_runs(parent="leaf-of-nothing") == []
    assert ids(await app.alist_runs(workflow=fan)) == ["p2", "p1"]  # by its function
    assert len(await app.alist_runs(workflow="leaf", parent="p2", status="completed")) == 2


async def test_by_tag_tenant_and_time(app: App, clock: FakeClock) -> None:
    await app.asubmit(leaf, 1, workflow_id="a", tags=["vip"], tenant="acme")
    clock.advance(10)
    middle = clock.now()
    await app.asubmit(leaf, 2, workflow_id="b", tags=["vip", "eu"], tenant="globex")
    clock.advance(10)
    await app.asubmit(leaf, 3, workflow_id="c", tenant="acme")
    assert ids(await app.alist_runs(tenant="acme")) == ["c", "a"]
    assert ids(await app.alist_runs(tag="vip")) == ["b", "a"]
    assert ids(await app.alist_runs(tag="vip", tenant="acme")) == ["a"]
    assert ids(await app.alist_runs(created_after=middle)) == ["c", "b"]
    assert ids(await app.alist_runs(created_before=middle)) == ["a"]
    window = await app.alist_runs(
        created_after=middle, created_before=middle + timedelta(seconds=1)
    )
    assert ids(window) == ["b"]


async def test_pages_follow_one_another_even_past_a_deleted_run(app: App, clock: FakeClock) -> None:
    for i in range(5):
        await app.arun(leaf, i, workflow_id=f"r{i}")
        clock.advance(1)
    first = await app.alist_runs(limit=2)
    assert ids(first) == ["r4", "r3"]
    assert ids(await app.alist_runs(limit=2, after="r3")) == ["r2", "r1"]
    assert ids(await app.alist_runs(limit=2, after=first[-1])) == ["r2", "r1"]
    assert ids(await app.alist_runs(limit=10, after="r1")) == ["r0"]
    assert await app.store.delete_runs(["r3"]) == 1
    # the RunInfo of the last run shown still names where its page ended
    assert ids(await app.alist_runs(limit=2, after=first[-1])) == ["r2", "r1"]
    with pytest.raises(tether.InvalidArgumentError, match="pass the RunInfo itself"):
        await app.alist_runs(after="r3")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"status": "finished"}, "unknown run status 'finished'; known:"),
        ({"workflow": 7}, "workflow must be a workflow's name or its function, got int"),
        ({"tag": ["vip"]}, "tag must be a string, got list"),
        ({"parent": 3}, "parent must be a string, got int"),
        ({"created_after": datetime(2026, 1, 1)}, "created_after must be a timezone-aware"),
        ({"limit": 0}, "limit must be an integer >= 1"),
        ({"after": 5}, "after must be the last run"),
    ],
)
async def test_bad_filters_say_what_to_pass(app: App, kwargs: dict, says: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=says.replace("(", r"\(")):
        await app.alist_runs(**kwargs)


def test_the_sync_facade_takes_the_same_filters(sqlite_url: str) -> None:
    with App(sqlite_url) as app:
        app.submit(leaf, 1, workflow_id="x", tenant="acme")
        app.submit(leaf, 2, workflow_id="y")
        since = datetime.now(UTC) - timedelta(hours=1)
        assert ids(app.list_runs(tenant="acme", created_after=since)) == ["x"]


async def test_iter_runs_reads_every_match_a_page_at_a_time(app: App, clock: FakeClock) -> None:
    for i in range(7):
        await app.asubmit(leaf, i, workflow_id=f"r{i}", tenant="acme" if i % 2 else None)
        clock.advance(1)
    every = [r.workflow_id async for r in app.aiter_runs(page_size=2)]
    assert every == [f"r{i}" for i in reversed(range(7))]  # newest first, none twice
    odd = [r.workflow_id async for r in app.aiter_runs(page_size=2, tenant="acme")]
    assert odd == ["r5", "r3", "r1"]  # the filters go to every page
    assert [r async for r in app.aiter_runs(workflow="nothing-by-this-name")] == []
    with pytest.raises(tether.InvalidArgumentError, match="limit must be an integer >= 1"):
        [r async for r in app.aiter_runs(page_size=0)]


def test_iter_runs_on_the_sync_facade(sqlite_url: str) -> None:
    with App(sqlite_url) as app:
        for i in range(5):
            app.submit(leaf, i, workflow_id=f"s{i}")
        assert sorted(r.workflow_id for r in app.iter_runs(page_size=2)) == [
            f"s{i}" for i in range(5)
        ]
        assert [r.workflow_id for r in app.iter_runs(page_size=2, status="completed")] == []
