"""A ``budget.raise`` that does not lift a paused run past the limit that stopped it
(it raised the other limit, or set one below the spend) is recorded as
``budget.raised``, saying which limit the run is still over and what raise lets it
go on. It left no event at all: the run just stayed paused."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._priced import priced_app


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App whose every call of fake:m costs $1.20 and 1,100 tokens."""
    the_app = priced_app(database_url, clock)
    yield the_app
    await the_app.aclose()


async def _paused(app: App, run: str, budget: ai.Budget) -> None:
    """Run `run`, four calls of $1.20 and 1,100 tokens each, to its budget's stop."""

    @app.workflow(name="asker")
    async def asker(wf: Workflow, calls: int) -> int:
        for i in range(calls):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return calls

    assert (await app.arun(asker, 4, workflow_id=run, budget=budget)).status is RunStatus.WAITING


async def _raised(app: App, run: str) -> list[Any]:
    return [e for e in (await app.aget_record(run)).events if e.type == "budget.raised"]


def _hint(message: str) -> dict[str, Any]:
    said = ast.literal_eval(message.split("another budget.raise, e.g. ", 1)[1])
    assert isinstance(said, dict)
    return said


async def test_raising_the_other_limit_is_told_with_the_limit_still_over(app: App) -> None:
    budget = ai.Budget(max_usd=100, max_tokens=2500, on_exceed="pause")
    await _paused(app, "a", budget)  # 3,300 of 2,500 tokens
    await app.asignal("a", "budget.raise", {"max_usd": 200})
    assert (await app.aresume("a")).status is RunStatus.WAITING
    [told] = await _raised(app, "a")
    assert told.detail == {"budget_of": "a", "raise": 1, "max_usd": 200.0, "max_tokens": 2500,
                           "still_over": ["max_tokens"]}  # fmt: skip
    assert told.message == (
        "the run's budget raised by signal: max_usd=200.0, max_tokens=2500; not enough: "
        "this run has spent $3.6000 of $200.0000, 3300 of 2500 tokens, still over "
        "max_tokens; the run waits for another budget.raise, e.g. {'max_tokens': 5800}"
    )
    await app.asignal("a", "budget.raise", _hint(told.message))
    done = await app.aresume("a")
    assert (done.status, done.value) == (RunStatus.COMPLETED, 4)
    first, second = await _raised(app, "a")  # each told once, over three drives
    assert first.detail == told.detail
    assert second.detail == {"budget_of": "a", "raise": 2, "max_usd": 200.0, "max_tokens": 5800}
    assert "not enough" not in second.message


async def test_a_raise_below_the_spend_is_told_with_a_raise_above_it(app: App) -> None:
    await _paused(app, "b", ai.Budget(max_usd=3, on_exceed="pause"))  # $3.60 of $3
    await app.asignal("b", "budget.raise", {"max_usd": 2})
    assert (await app.aresume("b")).status is RunStatus.WAITING
    [told] = await _raised(app, "b")
    assert told.detail["still_over"] == ["max_usd"]
    assert "this run has spent $3.6000 of $2.0000, still over max_usd;" in told.message
    assert _hint(told.message) == {"max_usd": 5.6}
    await app.asignal("b", "budget.raise", {"max_usd": 5.6})
    done = await app.aresume("b")
    assert (done.status, done.value) == (RunStatus.COMPLETED, 4)
    assert [e.detail.get("still_over") for e in await _raised(app, "b")] == [["max_usd"], None]
