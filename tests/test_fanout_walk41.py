"""for_each, child runs and compensations on their failure paths, as a new user meets
them: what a failed fan-out raises on the first drive and when raised again from the
run's record, a fan-out cut by SIGKILL and resumed in this process, a cancel with
compensation mid-fan-out and mid-child."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from tests._killed import killed_once_marked
from tether import App, ChildRunError, ForEachError, RunStatus, Workflow
from tether._fanout import ItemStatus
from tether.testing import eventually


def _register_failing(app: App, calls: list[int]) -> object:
    @app.workflow(name="fe41-failing")
    async def flow(wf: Workflow) -> list[int | None]:
        async def item(i: int) -> int:
            def work() -> int:
                calls.append(i)
                if i == 1:
                    raise ValueError(f"bad item {i}")
                return i * 10

            return await wf.step("work", work, retry=2)

        return (await wf.for_each(range(4), item, max_parallel=2)).values

    return flow


async def test_a_failed_for_each_raised_again_from_the_record_keeps_its_first_error(
    app: App,
) -> None:
    """Before, the ForEachError raised again for a failed run (`app.run` of its id, here
    or in another process) had no `first_error` (AttributeError) and no `__cause__`."""
    calls: list[int] = []
    flow = _register_failing(app, calls)
    with pytest.raises(ForEachError) as first:
        await app.arun(flow, workflow_id="fe41-fail")  # type: ignore[arg-type]
    assert calls.count(1) == 2 and calls.count(0) == 1  # retried, then failed
    statuses = [r.status for r in first.value.summary.results]
    assert statuses[:2] == [ItemStatus.FULFILLED, ItemStatus.REJECTED]
    assert first.value.first_error is first.value.__cause__
    assert repr(first.value.first_error) == "ValueError('bad item 1')"

    with pytest.raises(ForEachError) as again:
        await app.arun(flow, workflow_id="fe41-fail")  # type: ignore[arg-type]
    assert str(again.value) == str(first.value)
    assert isinstance(again.value.first_error, ValueError)
    assert str(again.value.first_error) == "bad item 1"
    assert again.value.__cause__ is again.value.first_error
    assert calls.count(1) == 2  # nothing ran again
    assert (await app.aget_run("fe41-fail")).status is RunStatus.FAILED


async def test_a_child_failing_inside_a_for_each_item(app: App) -> None:
    """The parent's item sees `ChildRunError` with the child's error, in the summary."""

    @app.workflow(name="fe41-kid")
    async def kid(wf: Workflow, n: int) -> int:
        await wf.step("k", lambda: n)
        if n == 1:
            raise KeyError("no such thing")
        return n

    @app.workflow(name="fe41-parent")
    async def parent(wf: Workflow) -> list[str]:
        async def item(n: int) -> int:
            return await wf.child(kid, n)

        summary = await wf.for_each([0, 1, 2], item, max_parallel=3, stop_on_error=False)
        return [f"{r.status.value}:{r.value}:{type(r.error).__name__}" for r in summary.results]

    result = await app.arun(parent, workflow_id="fe41-p")
    assert result.value == [
        "fulfilled:0:NoneType", "rejected:None:ChildRunError", "fulfilled:2:NoneType",
    ]  # fmt: skip
    again = await app.arun(parent, workflow_id="fe41-p")
    assert again.value == result.value

    async def one(wf: Workflow) -> str:
        try:
            await wf.child(kid, 1)
        except ChildRunError as exc:
            assert exc.error is not None
            return f"{exc.status}|{exc.error['type']}|{exc.error['message']}"
        return "no error"

    seen = await app.arun(one, workflow_id="fe41-one")
    assert seen.value == "failed|KeyError|'no such thing'"


async def test_cancel_with_compensation_mid_fan_out_and_mid_child(app: App) -> None:
    """Items parked on a signal and on children: the cancel stops the children, and each
    completed step is undone once, newest first, with the value (type) it returned."""
    undone: list[tuple[str, object]] = []

    @app.workflow(name="fe41-ckid")
    async def kid(wf: Workflow, n: int) -> int:
        await wf.step("k", lambda: n, compensate=lambda v: undone.append(("kid", v)))
        await wf.wait_for_signal("go")
        return n

    @app.workflow(name="fe41-cparent")
    async def parent(wf: Workflow) -> None:
        async def item(i: int) -> None:
            def reserve() -> tuple[int, date]:
                return (i, date(2026, 1, i + 1))

            await wf.step("reserve", reserve, compensate=lambda v: undone.append(("item", v)))
            if i >= 2:
                await wf.child(kid, i)
            else:
                await wf.wait_for_signal("go")

        await wf.for_each(range(4), item, max_parallel=4)

    first = await app.arun(parent, workflow_id="fe41-c")
    assert first.record.status is RunStatus.WAITING
    cancelled = await app.acancel("fe41-c", compensate=True)
    assert sorted(cancelled) == ["fe41-c", "fe41-c/fe41-ckid[2]#1", "fe41-c/fe41-ckid[3]#1"]
    for cid in cancelled[1:]:
        assert (await app.aget_run(cid)).status is RunStatus.CANCELLED

    async def all_undone() -> bool:
        return (await app.aget_run("fe41-c")).status is RunStatus.COMPENSATED

    await eventually(all_undone, timeout=30)
    # newest first: the items' reserve steps ran at once (threads), so in the order
    # they happened to complete, which the run's events record
    done = [e.message for e in await app.store.list_events("fe41-c") if e.type == "step.completed"]
    order = [
        int(key.split("[")[1].split("]")[0]) for key in done if (key or "").startswith("reserve[")
    ]
    assert sorted(order) == [0, 1, 2, 3], done
    items = [v for who, v in undone if who == "item"]
    assert items == [(i, date(2026, 1, i + 1)) for i in reversed(order)]
    assert sorted(v for who, v in undone if who == "kid") == [2, 3]  # type: ignore[type-var]
    assert len(undone) == 6
    await app.arun(parent, workflow_id="fe41-c")  # asked again: nothing undone twice
    assert len(undone) == 6


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import tether

    url, ledger, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    app = tether.App(url, clock=tether.FakeClock())

    def work(i: int) -> int:
        with open(ledger, "a") as f:
            f.write(f"{i}\\n")
        if i == 2:
            open(marker, "w").close()
            time.sleep(3600)  # the test kills us here, item 2 in flight
        return i * 10

    @app.workflow(name="fe41-killed")
    async def flow(wf: tether.Workflow) -> list:
        async def item(i: int) -> int:
            return await wf.step("work", lambda: work(i))
        return (await wf.for_each(range(5), item, max_parallel=1)).values

    app.run(flow, workflow_id="fe41-k")
    """
)


async def test_a_fan_out_killed_mid_item_runs_no_completed_item_again(
    app: App, database_url: str, tmp_path: Path
) -> None:
    script, ledger, marker = tmp_path / "fan.py", tmp_path / "ledger", tmp_path / "in-item"
    script.write_text(SCRIPT)
    await killed_once_marked(script, marker, database_url, str(ledger), str(marker))
    assert ledger.read_text().split() == ["0", "1", "2"]

    ran: list[int] = []

    @app.workflow(name="fe41-killed")
    async def flow(wf: Workflow) -> list[int | None]:
        async def item(i: int) -> int:
            def work() -> int:
                ran.append(i)
                return i * 10

            return await wf.step("work", work)

        return (await wf.for_each(range(5), item, max_parallel=1)).values

    result = await app.aresume("fe41-k")
    assert result.value == [0, 10, 20, 30, 40]
    assert ran == [2, 3, 4]  # the one in flight again, the recorded ones not
