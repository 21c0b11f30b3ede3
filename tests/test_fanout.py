"""for_each: bound on parallelism, per-key exclusion, input order, error summary."""

from __future__ import annotations

import asyncio

import pytest

import tether
from tether import App, ItemStatus, RunStatus, Workflow


async def test_seed_case_max_parallel_and_mutex_keys(app: App) -> None:
    keys = ["alpha", "alpha", "beta", "beta", "gamma"]
    active: set[str] = set()
    running = 0
    peak = 0
    overlaps: list[str] = []

    async def flow(wf: Workflow) -> list[str]:
        async def work(item: tuple[int, str]) -> str:
            nonlocal running, peak
            idx, key = item
            if key in active:
                overlaps.append(key)
            active.add(key)
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            active.discard(key)
            return f"{idx}:{key}"

        summary = await wf.for_each(
            list(enumerate(keys)), work, max_parallel=3, mutex_key=lambda it: it[1]
        )
        assert summary.fulfilled == 5 and summary.rejected == 0
        return [str(v) for v in summary.values]

    res = await app.arun(flow, workflow_id="fe-seed")
    assert res.value == [f"{i}:{k}" for i, k in enumerate(keys)]
    assert overlaps == []
    assert peak <= 3
    assert peak >= 2  # it really ran in parallel
    types = [e.type for e in res.record.events]
    assert types.count("mutex.acquired") == 5 and types.count("mutex.released") == 5


async def test_never_more_than_max_parallel(app: App) -> None:
    running = 0
    peak = 0

    async def flow(wf: Workflow) -> int:
        async def work(i: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1
            return i * 2

        summary = await wf.for_each(range(20), work, max_parallel=4)
        return sum(v for v in summary.values if v is not None)

    assert (await app.arun(flow, workflow_id="fe-bound")).value == sum(range(20)) * 2
    assert peak == 4


async def test_stop_on_error_raises_with_summary(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        async def work(i: int) -> int:
            if i == 1:
                raise ValueError("item 1 broke")
            await asyncio.sleep(0.001)
            return i

        await wf.for_each([0, 1, 2, 3], work, max_parallel=1)

    with pytest.raises(tether.ForEachError) as info:
        await app.arun(flow, workflow_id="fe-stop")
    summary = info.value.summary
    assert [r.status for r in summary.results] == [
        ItemStatus.FULFILLED,
        ItemStatus.REJECTED,
        ItemStatus.SKIPPED,
        ItemStatus.SKIPPED,
    ]
    assert summary.fulfilled == 1 and summary.rejected == 1
    assert isinstance(info.value.first_error, ValueError)
    assert isinstance(summary.results[1].error, ValueError)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise AttributeError("no field 'detail'")


async def test_an_item_error_whose_str_fails_still_stops_the_rest(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        async def work(i: int) -> int:
            if i == 0:
                raise Unprintable()
            return i

        await wf.for_each([0, 1], work)

    with pytest.raises(
        tether.ForEachError, match=r"Unprintable: <exception str\(\) failed>"
    ) as info:
        await app.arun(flow, workflow_id="fe-unprintable")
    assert isinstance(info.value.first_error, Unprintable)
    rec = await app.aget_record("fe-unprintable")
    assert rec.status is RunStatus.FAILED and rec.last_error is not None
    assert rec.last_error.type == "ForEachError"


async def test_a_failure_that_stops_the_rest_is_not_put_off_by_a_waiting_item(
    app: App,
) -> None:
    ran: list[str] = []

    async def flow(wf: Workflow) -> None:
        async def work(i: int) -> object:
            if i == 0:
                return await wf.wait_for_signal("go")
            ran.append("broke")
            raise ValueError("item 1 broke")

        await wf.for_each([0, 1], work, max_parallel=2)

    # before: the run parked on item 0's wait, hid the failure until the signal came,
    # then ran item 1 again
    with pytest.raises(tether.ForEachError) as info:
        await app.arun(flow, workflow_id="fe-wait")
    assert [r.status for r in info.value.summary.results] == [
        ItemStatus.SKIPPED,
        ItemStatus.REJECTED,
    ]
    assert (await app.aget_run("fe-wait")).status is RunStatus.FAILED and ran == ["broke"]


async def test_without_stop_on_error_everything_runs(app: App) -> None:
    async def flow(wf: Workflow) -> tuple[int, int]:
        def work(i: int) -> int:
            if i % 2:
                raise ValueError(str(i))
            return i

        s = await wf.for_each(range(6), work, max_parallel=2, stop_on_error=False)
        assert [r.index for r in s.results] == list(range(6))
        return s.fulfilled, s.rejected

    assert (await app.arun(flow, workflow_id="fe-all")).value == (3, 3)


async def test_for_each_steps_resume_from_record(app: App) -> None:
    calls: list[str] = []

    async def flow(wf: Workflow) -> int:
        async def item(name: str) -> str:
            async def do() -> str:
                calls.append(name)
                return name.upper()

            return await wf.step(f"apply:{name}", do, idempotency_key=name)

        s = await wf.for_each(["a", "b", "a"], item, max_parallel=2, mutex_key=lambda n: n)
        return s.fulfilled

    assert (await app.arun(flow, workflow_id="fe-resume")).value == 3
    assert sorted(calls) == ["a", "b"]  # the duplicate "a" came from the record
    await app.arun(flow, workflow_id="fe-resume")
    assert sorted(calls) == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [({"max_parallel": bad}, "max_parallel must be an integer >= 1") for bad in (0, -1, 1.5, True)]
    + [({"stop_on_error": bad}, "stop_on_error must be True or False") for bad in ("no", None, 0)],
)
async def test_bad_max_parallel_or_stop_on_error(
    app: App, kwargs: dict[str, object], said: str
) -> None:
    """A stop_on_error of "no" was taken as true (and None as false), unsaid."""

    async def flow(wf: Workflow) -> None:
        await wf.for_each([1], lambda i: i, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(tether.InvalidArgumentError, match=said):
        await app.arun(flow, workflow_id="fe-bad")


async def test_bad_mutex_key_result(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.for_each([1], lambda i: i, mutex_key=lambda i: "")

    with pytest.raises(tether.InvalidArgumentError, match="non-empty str"):
        await app.arun(flow, workflow_id="fe-bad-key")


async def test_a_store_error_in_an_item_is_not_the_items_failure(app: App) -> None:
    """The database failing under one item stops the fan-out and is raised as itself, so
    the run stays running and is retried, instead of failing as a rejected item."""
    import tether

    async def flow(wf: Workflow) -> object:
        async def item(n: int) -> int:
            if n == 1:
                raise tether.StoreError("the database blinked")
            return n

        return await wf.for_each(range(3), item, stop_on_error=False)

    with pytest.raises(tether.StoreError, match="blinked"):
        await app.arun(flow, workflow_id="fe-store")
    assert (await app.aget_run("fe-store")).status.value == "running"


async def test_items_reaching_a_child_or_a_value_in_another_order_get_their_own_back(
    app: App,
) -> None:
    """Within an item, a child run, a wait or a recorded value is keyed by the item, as
    its steps are: on the first drive item 1 got there first, on the replay item 0
    did, and each still gets its own (it got the other's child and uuid)."""
    drives: list[dict[int, str]] = []

    @app.workflow(name="kid")
    async def kid(wf: Workflow, x: int) -> int:
        return x * 100

    @app.workflow(name="fans")
    async def fans(wf: Workflow) -> list[int]:
        seen: dict[int, str] = {}
        drives.append(seen)

        async def item(i: int) -> int:
            await wf.step("prep", lambda: i)
            if len(drives) == 1 and i == 0:
                await asyncio.sleep(0.05)  # the first time, item 1 goes first
            seen[i] = await wf.uuid()
            return await wf.child(kid, i)

        values = (await wf.for_each([0, 1], item, max_parallel=2)).values
        await wf.wait_for_signal("go")
        return values

    assert (await app.arun(fans, workflow_id="f1")).status is RunStatus.WAITING
    await app.asignal("f1", "go")
    assert (await app.arun(fans, workflow_id="f1")).value == [0, 100]
    assert drives[0] == drives[-1]
    kids = sorted(r.workflow_id for r in await app.alist_runs() if r.workflow_name == "kid")
    assert kids == ["f1/kid[0]#1", "f1/kid[1]#1"]


async def test_a_run_recorded_before_item_keyed_values_keeps_counting_across_items(
    app: App, clock: tether.FakeClock
) -> None:
    from tether.store import NewRun

    @app.workflow(name="ids")
    async def ids(wf: Workflow) -> list[str]:
        async def item(i: int) -> str:
            return await wf.uuid()

        return (await wf.for_each([0, 1], item)).values

    await app.store.create_run(
        NewRun(workflow_id="old", workflow_name="ids", state="null", step_rule=2), clock.now()
    )
    old = await app.arun(ids, workflow_id="old")
    new = await app.arun(ids, workflow_id="new")
    # (beside the items' fingerprint, `for_each.items#1`, which keeps a resume's items)
    assert sorted(old.record.steps) == ["for_each.items#1", "uuid#1", "uuid#2"]
    assert sorted(new.record.steps) == ["for_each.items#1", "uuid[0]#1", "uuid[1]#1"]


async def test_an_item_whose_key_a_parked_run_holds_fails_after_mutex_timeout(
    database_url: str,
) -> None:
    async with App(database_url) as app:  # the wall clock: the timeout is real time

        @app.workflow
        async def holder(wf: Workflow) -> None:
            async with wf.mutex("acme", stale_after=3600):
                await wf.wait_for_signal("go")  # parked, holding the key

        @app.workflow
        async def batch(wf: Workflow) -> None:
            await wf.for_each(["acme"], lambda k: k, mutex_key=str, mutex_timeout=0.2)

        assert (await app.arun(holder, workflow_id="h")).status is RunStatus.WAITING
        # before: the item waited a fixed hour, its run stuck `running` meanwhile
        with pytest.raises(tether.ForEachError) as info:
            await app.arun(batch, workflow_id="b")
        assert isinstance(info.value.first_error, tether.MutexTimeoutError)
    with pytest.raises(tether.InvalidArgumentError, match="mutex_timeout"):
        async with App(database_url) as app:
            await app.arun(lambda wf: wf.for_each([1], str, mutex_timeout=-1), workflow_id="x")
