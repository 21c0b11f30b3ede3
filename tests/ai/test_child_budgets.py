"""A run's AI budget covers the runs it starts: their calls count with its own, and
each is checked against it (and against the child's own budget), on both backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import (
    App,
    ChildRunError,
    EventRecord,
    FakeClock,
    InvalidArgumentError,
    RunStatus,
    Workflow,
    ai,
)

from ._priced import priced_app


def _exceeded(events: Any) -> list[EventRecord]:
    return [e for e in events if e.type == "budget.exceeded"]


def _asker(app: App) -> Any:
    @app.workflow(name="asker")
    async def asker(wf: Workflow, calls: int) -> int:
        for i in range(calls):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return calls

    return asker


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App whose every call of fake:m costs $1.20, closed after the test."""
    the_app = priced_app(database_url, clock)
    yield the_app
    await the_app.aclose()


async def _spent(app: App, run: str) -> float:
    [row] = await app.ausage(run=run, children=True)
    return row.cost_usd


async def test_a_parents_budget_stops_the_calls_of_its_children(app: App) -> None:
    """Each child checked only its own (absent) budget: a parent of $2 fanning out to
    children spent without limit."""
    asker = _asker(app)

    @app.workflow(name="fan", budget=ai.Budget(max_usd=2))
    async def fan(wf: Workflow) -> list[str]:
        said = []
        for _ in range(3):
            try:
                said.append(str(await wf.child(asker, 2)))
            except ChildRunError as exc:
                said.append(exc.status)
        return said

    done = await app.arun(fan, workflow_id="p")
    # the first child's second call was admitted at $1.20 (one call overshoots);
    # the next child's first call is stopped by the parent's budget
    assert done.value == ["2", "failed", "failed"]
    assert await _spent(app, "p") == pytest.approx(2.4)
    assert (await app.store.ai_spend("p", None, tree=True)).usd == pytest.approx(2.4)
    child = await app.aget_record("p/asker#2")
    assert child.last_error is not None
    assert "run 'p' (which started this one), with the runs it started, has spent" in (
        child.last_error.message
    )
    assert "app.rerun_from('p', 'child:p/asker#2', budget=ai.Budget(max_usd=...))" in (
        child.last_error.message
    )
    [stop] = _exceeded(child.events)
    assert stop.detail["budget_of"] == "p" and stop.detail["max_usd"] == 2
    assert stop.detail["step"] == "ai.text:fake:m"


async def test_a_parent_whose_first_act_is_the_child_goes_on_from_its_wait(app: App) -> None:
    """The error told the user to rerun the parent from a step before the child, and
    the parent had none: `rerun_from` took only step keys, so it could not go on."""
    asker = _asker(app)

    @app.workflow(name="solo", budget=ai.Budget(max_usd=2))
    async def solo(wf: Workflow) -> int:
        return int(await wf.child(asker, 3))

    with pytest.raises(ChildRunError, match="AI budget exceeded"):
        await app.arun(solo, workflow_id="p")
    child = await app.aget_record("p/asker#1")
    assert child.last_error is not None
    said = "app.rerun_from('p', 'child:p/asker#1', budget=ai.Budget(max_usd=...))"
    assert said in child.last_error.message
    again = await app.arerun_from("p", "child:p/asker#1", budget={"max_usd": 10})
    assert again.value == 3  # the same child went on from the call its budget stopped
    kids = {r.workflow_id: r.status async for r in app.aiter_runs(parent="p")}
    assert kids == {"p/asker#1": RunStatus.COMPLETED}
    # its two answered calls were not asked again: three calls paid in all
    assert await _spent(app, "p") == pytest.approx(3 * 1.2)
    asked = [c.step_key for c in await app.alist_ai_calls("p/asker#1")]
    assert len(asked) == len(set(asked)) == 3


async def test_a_child_given_a_smaller_budget_stops_at_its_own(app: App) -> None:
    asker = _asker(app)

    @app.workflow(name="lead", budget=ai.Budget(max_usd=10))
    async def lead(wf: Workflow) -> str:
        try:
            await wf.child(asker, 3, budget=ai.Budget(max_usd=1))
        except ChildRunError as exc:
            return exc.status
        return "done"

    assert (await app.arun(lead, workflow_id="l")).value == "failed"
    row = await app.store.get_run("l/asker#1")
    assert row is not None and row.budget is not None  # recorded with the child
    assert json.loads(row.budget)["max_usd"] == 1
    child = await app.aget_record("l/asker#1")
    assert child.last_error is not None
    assert "this run has spent $1.2000 of $1.0000" in child.last_error.message
    assert await _spent(app, "l") == pytest.approx(1.2)
    with pytest.raises(InvalidArgumentError, match=r"budget must be an ai\.Budget"):
        await app.arun(_bad_budget(app, asker), workflow_id="bad")


def _bad_budget(app: App, asker: Any) -> Any:
    @app.workflow(name="bad")
    async def bad(wf: Workflow) -> None:
        await wf.child(asker, 1, budget=5)

    return bad


async def test_a_grandchilds_calls_count_for_the_root(app: App) -> None:
    asker = _asker(app)

    @app.workflow(name="middle")
    async def middle(wf: Workflow, calls: int) -> int:
        return int(await wf.child(asker, calls))

    @app.workflow(name="root", budget=ai.Budget(max_usd=3, max_tokens=10_000))
    async def root(wf: Workflow) -> list[str]:
        out = []
        for _ in range(2):
            try:
                out.append(str(await wf.child(middle, 2)))
            except ChildRunError as exc:
                out.append(exc.status)
        return out

    assert (await app.arun(root, workflow_id="r")).value == ["2", "failed"]
    spend = await app.store.ai_spend("r", None, tree=True)
    assert (spend.calls, spend.tokens) == (3, 3300)  # two, then one over $3
    assert (await app.store.ai_spend("r", None)).calls == 0  # its own: none


async def test_a_key_is_passed_down_and_counts_the_childrens_calls(app: App) -> None:
    asker = _asker(app)

    @app.workflow(name="keyed", budget=ai.Budget(max_usd=3, key="customer:9"))
    async def keyed(wf: Workflow, calls: int) -> int:
        return int(await wf.child(asker, calls))

    assert (await app.arun(keyed, 2, workflow_id="k1")).value == 2
    calls = await app.alist_ai_calls("k1", children=True)
    assert [c.budget_key for c in calls] == ["customer:9", "customer:9"]
    # another run of the key: $2.40 spent by the first one's child, so one call more
    with pytest.raises(ChildRunError):
        await app.arun(keyed, 2, workflow_id="k2")
    assert (await app.store.ai_spend("k2", "customer:9", tree=True)).calls == 3


async def test_a_childs_own_key_still_counts_for_its_parents_key(app: App) -> None:
    asker = _asker(app)

    @app.workflow(name="parent-key", budget=ai.Budget(max_usd=2, key="team"))
    async def parent(wf: Workflow) -> list[str]:
        out = []
        for _ in range(2):
            try:
                budget = ai.Budget(max_usd=100, key="project")
                out.append(str(await wf.child(asker, 2, budget=budget)))
            except ChildRunError as exc:
                out.append(exc.status)
        return out

    assert (await app.arun(parent, workflow_id="pk")).value == ["2", "failed"]
    calls = await app.alist_ai_calls("pk", children=True)
    assert {c.budget_key for c in calls} == {"project"}  # the nearest key
    assert (await app.store.ai_spend("pk", "team", tree=True)).calls == 2


async def test_a_child_paused_by_its_parents_budget_goes_on_after_a_raise(app: App) -> None:
    """The stop is the step's recorded result: the drive after the raise replays it
    and runs the call as the step's next occurrence."""
    asker = _asker(app)

    @app.workflow(name="careful", budget=ai.Budget(max_usd=2, on_exceed="pause"))
    async def careful(wf: Workflow) -> int:
        return int(await wf.child(asker, 3))

    assert (await app.arun(careful, workflow_id="c")).status is RunStatus.WAITING
    child = await app.aget_record("c/asker#1")
    assert child.status is RunStatus.WAITING
    [stop] = _exceeded(child.events)
    assert stop.detail["budget_of"] == "c" and stop.detail["on_exceed"] == "pause"
    assert "run 'c/asker#1' (not 'c') waits for signal budget.raise" in stop.message
    await app.asignal("c/asker#1", "budget.raise", {"max_usd": 10})
    assert (await app.aresume("c/asker#1")).value == 3
    assert (await app.aresume("c")).value == 3
    assert await _spent(app, "c") == pytest.approx(3.6)


async def test_a_raise_sent_to_the_budgets_run_names_the_child_that_waits(app: App) -> None:
    """Before: sent to 'c', the budget's owner, the raise was kept for a wait 'c' never
    makes, and 'c/asker#1' stayed paused with nothing said."""
    asker = _asker(app)

    @app.workflow(name="careful", budget=ai.Budget(max_usd=2, on_exceed="pause"))
    async def careful(wf: Workflow) -> int:
        return int(await wf.child(asker, 3))

    assert (await app.arun(careful, workflow_id="c")).status is RunStatus.WAITING
    with pytest.raises(InvalidArgumentError, match=r"'c/asker#1'") as refused:
        await app.asignal("c", "budget.raise", {"max_usd": 10})
    assert "app.signal('c/asker#1', 'budget.raise'" in str(refused.value)
    assert [w for w in await app.alist_waits("c") if w.name == "budget.raise"] == []
    await app.asignal("c/asker#1", "budget.raise", {"max_usd": 10})  # where it waits
    assert (await app.aresume("c/asker#1")).value == 3
    assert (await app.aresume("c")).value == 3


async def test_a_detached_child_is_covered_and_keeps_its_own_budget(app: App) -> None:
    asker = _asker(app)

    @app.workflow(name="starter", budget=ai.Budget(max_usd=1))
    async def starter(wf: Workflow) -> str:
        await wf.ai.generate_text("fake:m", prompt="mine")  # $1.20: the budget is spent
        return await wf.start_child(asker, 1, budget={"max_tokens": 50_000})

    cid = (await app.arun(starter, workflow_id="s")).value
    row = await app.store.get_run(cid)
    assert row is not None and row.budget is not None
    assert json.loads(row.budget)["max_tokens"] == 50_000
    assert (await app.aresult(cid, timeout=10)).status is RunStatus.FAILED
    child = await app.aget_record(cid)
    assert child.last_error is not None
    assert "run 's' (which started this one)" in child.last_error.message


async def test_children_in_parallel_overshoot_their_parents_budget_by_about_one_call(
    app: App,
) -> None:
    """Children in flight at once are admitted together under the parent's budget (in
    this process), as a run's own parallel branches are: one call at a time until a
    cost is known, then only while the spend plus those in flight stays under it."""
    asker = _asker(app)

    @app.workflow(name="wide", budget=ai.Budget(max_usd=2))
    async def wide(wf: Workflow) -> list[Any]:
        async def one(i: int) -> Any:
            try:
                return await wf.child(asker, 1, workflow_id=f"wide-{i}")
            except ChildRunError as exc:
                return exc.status

        summary = await wf.for_each(list(range(6)), one, max_parallel=6)
        return [r.value for r in summary.results]

    done = await app.arun(wide, workflow_id="w")
    assert sorted(done.value, key=str) == [1, 1, *["failed"] * 4]
    assert await _spent(app, "w") == pytest.approx(2.4)  # $1.20 under, one call over


async def test_a_child_sharing_its_parents_key_is_admitted_once_under_both_limits(app: App) -> None:
    """A key both a child and its parent budget on is one admission (asked twice, the
    call would wait for itself): each budget of the key judges the same spend."""
    asker = _asker(app)

    @app.workflow(name="same-key", budget=ai.Budget(max_usd=2, key="shared"))
    async def same_key(wf: Workflow) -> str:
        try:
            await wf.child(asker, 3, budget=ai.Budget(max_usd=50, key="shared"))
        except ChildRunError as exc:
            return exc.status
        return "done"

    assert (await app.arun(same_key, workflow_id="sk")).value == "failed"
    assert (await app.store.ai_spend("sk", "shared", tree=True)).calls == 2  # the $2
    child = await app.aget_record("sk/asker#1")
    assert child.last_error is not None
    assert "budget key 'shared' has spent $2.4000 of $2.0000" in child.last_error.message
