"""`ai.Budget`'s limits: a bool or a non-finite number is no limit, whether the
budget is made in code, from a dict, or raised by a ``budget.raise`` signal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tether import App, EventRecord, FakeClock, InvalidArgumentError, RunStatus, Workflow, ai

from ._priced import priced_app

NOT_LIMITS = [
    ({"max_usd": True}, "max_usd: Input should be a number, not a bool"),
    ({"max_tokens": True}, "max_tokens: Input should be a number, not a bool"),
    ({"max_usd": "1e309"}, "max_usd: Input should be a finite number"),
    ({"max_usd": float("inf")}, "max_usd: Input should be a finite number"),
    ({"max_usd": float("nan")}, "max_usd: Input should be a finite number"),
]


@pytest.mark.parametrize(("limits", "says"), NOT_LIMITS)
def test_a_bool_or_non_finite_limit_is_refused_saying_what_to_pass(
    limits: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"budget is not valid \\({says}\\); pass e.g"):
        ai.Budget(**limits)
    with pytest.raises(InvalidArgumentError, match=says):
        ai.Budget.of(limits)
    with pytest.raises(InvalidArgumentError, match=f"budget.raise signal .*{says}.*'max_usd': 5"):
        ai.Budget(max_usd=1.0).raised(limits)
    with pytest.raises(InvalidArgumentError, match=says):
        ai.Budget.check_raise(limits)  # what App.signal asks before sending it


def test_valid_limits_still_make_a_budget() -> None:
    assert ai.Budget(max_usd=2, max_tokens=10).max_usd == 2.0
    assert ai.Budget(max_usd=1.0).raised({"max_usd": 5, "max_tokens": 100}).max_tokens == 100
    with pytest.raises(InvalidArgumentError, match="give max_usd, max_tokens or both"):
        ai.Budget()


def test_a_limit_below_a_cent_reads_in_micro_dollars() -> None:
    from tether.store import AISpend

    said = ai.Budget(max_usd=0.00001).describe(AISpend(calls=2, micro_usd=18, tokens=9))
    assert said == "this run has spent $0.000018 of $0.000010"  # before: $0.0000 of $0.0000
    big = ai.Budget(max_usd=0.7).describe(AISpend(calls=1, micro_usd=800_000))
    assert big == "this run has spent $0.8000 of $0.7000"


# -- what a run records of its budget -------------------------------------------------------


def _asker(app: App, name: str, budget: ai.Budget, calls: int) -> Any:
    @app.workflow(name=name, budget=budget)
    async def asker(wf: Workflow) -> int:
        for i in range(calls):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return calls

    return asker


async def test_a_spend_exactly_at_the_warning_line_records_the_warning(
    database_url: str, clock: FakeClock
) -> None:
    """$2.40 of $3 is 80 %: in floats it was 0.7999..., below ``warn_at=0.8``, and the
    run went from no warning straight past its limit."""
    app = priced_app(database_url, clock)
    asker = _asker(app, "at-the-line", ai.Budget(max_usd=3, warn_at=0.8), calls=3)
    try:
        assert (await app.arun(asker, workflow_id="w1")).value == 3
        [warning] = [e for e in (await app.aget_record("w1")).events if e.type == "budget.warning"]
        assert warning.message == "this run has spent $2.4000 of $3.0000"
    finally:
        await app.aclose()


def _exceeded(events: Sequence[EventRecord]) -> list[EventRecord]:
    return [e for e in events if e.type == "budget.exceeded"]


async def test_a_run_paused_on_its_budget_records_why_and_by_how_much(
    database_url: str, clock: FakeClock
) -> None:
    """A run parked on ``budget.raise`` showed only the wait: not the key, its spend or
    its limit, which the operator needs to choose a raise (the run's own usage is not
    the key's)."""
    app = priced_app(database_url, clock)
    budget = ai.Budget(max_usd=3, key="customer:7", on_exceed="pause")
    asker = _asker(app, "paused", budget, calls=2)
    try:
        assert (await app.arun(asker, workflow_id="a")).value == 2  # the key spent $2.40
        assert (await app.arun(asker, workflow_id="b")).status is RunStatus.WAITING
        [stop] = _exceeded((await app.aget_record("b")).events)
        assert stop.message == (
            "budget key 'customer:7' has spent $3.6000 of $3.0000; the run waits for "
            "signal budget.raise with new limits, e.g. {'max_usd': 6.6}"
        )
        detail = stop.detail
        assert detail["step"] == "ai.text:fake:m#2" and detail["key"] == "customer:7"
        assert (detail["spent_usd"], detail["max_usd"], detail["on_exceed"]) == (3.6, 3, "pause")
        await app.asignal("b", "budget.raise", {"max_usd": 10})
        done = await app.aresume("b")
        assert done.value == 2
        assert len(_exceeded(done.record.events)) == 1  # written with its step, once
    finally:
        await app.aclose()


async def test_a_run_failed_on_its_budget_records_the_stop_too(
    database_url: str, clock: FakeClock
) -> None:
    app = priced_app(database_url, clock)
    asker = _asker(app, "failing", ai.Budget(max_usd=1), calls=2)
    try:
        with pytest.raises(ai.BudgetExceededError, match=r"has spent \$1\.2000 of \$1\.0000"):
            await app.arun(asker, workflow_id="f")
        [stop] = _exceeded((await app.aget_record("f")).events)
        assert stop.message == "this run has spent $1.2000 of $1.0000; the run fails"
        assert stop.detail["step"] == "ai.text:fake:m#2" and stop.detail["key"] is None
    finally:
        await app.aclose()


async def test_the_rerun_a_key_budgets_stop_advises_keeps_the_calls_under_the_key(
    database_url: str, clock: FakeClock
) -> None:
    """The error said ``budget=ai.Budget(max_usd=...)``: the budget given replaces the
    run's, so the rerun it advised logged its calls under no key, outside the spend the
    key shares (a customer's calls not counted against the customer)."""
    app = priced_app(database_url, clock)
    asker = _asker(app, "keyed", ai.Budget(max_usd=2, key="customer:9"), calls=3)
    try:
        with pytest.raises(ai.BudgetExceededError) as stopped:
            await app.arun(asker, workflow_id="k")
        advice = "app.rerun_from('k', 'ai.text:fake:m#3', budget=ai.Budget(max_usd=..., key="
        said = str(stopped.value)
        assert f"{advice}'customer:9'))" in said, said
        done = await app.arerun_from(
            "k", "ai.text:fake:m#3", budget=ai.Budget(max_usd=5, key="customer:9")
        )
        assert done.value == 3
        assert {c.budget_key for c in await app.alist_ai_calls("k")} == {"customer:9"}
        tokens_only = ai.Budget(max_tokens=1000)
        with pytest.raises(
            ai.BudgetExceededError, match=r"budget=ai\.Budget\(max_tokens=\.\.\.\)\)"
        ):
            await app.arun(_asker(app, "tokens", tokens_only, calls=2), workflow_id="t")
    finally:
        await app.aclose()


async def test_a_raised_budget_warns_again_at_its_own_line(
    database_url: str, clock: FakeClock
) -> None:
    """The warning was written once per run: after a raise from $3 to $10 the run went
    from $3.60 to past $10 and parked again with no warning at $5."""
    app = priced_app(database_url, clock)
    budget = ai.Budget(max_usd=3, warn_at=0.5, on_exceed="pause")
    asker = _asker(app, "raised", budget, calls=12)  # $14.40 in all
    try:
        assert (await app.arun(asker, workflow_id="r")).status is RunStatus.WAITING
        for limit in (10, 20):  # each raise resumes the run in a new drive
            await app.asignal("r", "budget.raise", {"max_usd": limit})
            done = await app.aresume("r")
        assert done.value == 12
        said = [e.message for e in done.record.events if e.type == "budget.warning"]
        assert said == [
            "this run has spent $2.4000 of $3.0000",
            "this run has spent $6.0000 of $10.0000",
            "this run has spent $10.8000 of $20.0000",  # past $10 at once: warned at once
        ]
    finally:
        await app.aclose()


async def test_a_rerun_given_new_limits_as_a_dict_keeps_the_runs_key(
    database_url: str, clock: FakeClock
) -> None:
    """`budget={"max_usd": 5}` replaced the whole budget: the key went, and the calls of
    the rerun were logged under none, outside the spend the key shares."""
    app = priced_app(database_url, clock)
    asker = _asker(app, "keyed-dict", ai.Budget(max_usd=2, key="customer:7", warn_at=0.5),
                   calls=3)  # fmt: skip
    try:
        with pytest.raises(ai.BudgetExceededError):
            await app.arun(asker, workflow_id="kd")
        done = await app.arerun_from("kd", "ai.text:fake:m#3", budget={"max_usd": 5})
        assert done.value == 3
        assert {c.budget_key for c in await app.alist_ai_calls("kd")} == {"customer:7"}
        kept = (await app.store.get_run("kd")).budget
        assert kept is not None and '"key":"customer:7"' in kept and '"warn_at":0.5' in kept
    finally:
        await app.aclose()


async def test_the_steps_a_budget_stopped_are_told_apart_from_answered_calls(
    database_url: str, clock: FakeClock
) -> None:
    """A call stopped with on_exceed="pause" is recorded as a completed step (the stop
    is its result, so a replay takes the same path): `ai.budget_stops` names it, for
    views to show it stopped rather than answered."""
    app = priced_app(database_url, clock)
    asker = _asker(app, "stopped-steps", ai.Budget(max_usd=1, on_exceed="pause"), calls=2)
    try:
        assert (await app.arun(asker, workflow_id="s")).status is RunStatus.WAITING
        record = await app.aget_record("s")
        stops = ai.budget_stops(record.events)
        assert list(stops) == ["ai.text:fake:m#2"]
        assert stops["ai.text:fake:m#2"].startswith("this run has spent $1.2000 of $1.0000")
        assert record.steps["ai.text:fake:m#2"].status.value == "completed"  # as replayed
        rows = await app.store.list_events("s")  # rows: detail as JSON text
        assert ai.budget_stops(rows) == stops
        await app.asignal("s", "budget.raise", {"max_usd": 5})
        done = await app.aresume("s")
        assert done.value == 2
        # the call ran as the step's next occurrence; the stopped one is still told apart
        assert list(ai.budget_stops(done.record.events)) == ["ai.text:fake:m#2"]
        assert "ai.text:fake:m#3" in done.record.steps
    finally:
        await app.aclose()
