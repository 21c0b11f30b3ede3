"""The raise a paused run's ``budget.exceeded`` suggests lets the run go on: it names
the limit that stopped it, above what was spent."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai
from tether.store import AISpend

from ._priced import priced_app


@pytest.fixture
async def app(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App whose every call of fake:m costs $1.20 and 1,100 tokens."""
    the_app = priced_app(database_url, clock)
    yield the_app
    await the_app.aclose()


def _suggested(message: str) -> dict[str, float]:
    said = ast.literal_eval(message.split("new limits, e.g. ", 1)[1].split(";")[0])
    assert isinstance(said, dict)
    return said


@pytest.mark.parametrize(
    ("budget", "hint"),
    [
        (ai.Budget(max_tokens=2500, on_exceed="pause"), {"max_tokens": 5800}),
        (ai.Budget(max_usd=3, on_exceed="pause"), {"max_usd": 6.6}),
        (ai.Budget(max_usd=2.4, max_tokens=100_000, on_exceed="pause"), {"max_usd": 4.8}),
    ],
)
async def test_following_the_suggested_raise_lets_a_paused_run_go_on(
    app: App, budget: ai.Budget, hint: dict[str, float]
) -> None:
    """The message said ``e.g. {'max_usd': 5}`` whatever stopped the run: a run stopped
    by ``max_tokens`` took that raise and stopped again, waiting for good."""

    @app.workflow(name="asker")
    async def asker(wf: Workflow, calls: int) -> int:
        for i in range(calls):
            await wf.ai.generate_text("fake:m", prompt=f"q{i}")
        return calls

    paused = await app.arun(asker, 4, workflow_id="a", budget=budget)
    assert paused.status is RunStatus.WAITING
    [stop] = [e for e in (await app.aget_record("a")).events if e.type == "budget.exceeded"]
    assert _suggested(stop.message) == hint
    await app.asignal("a", "budget.raise", hint)
    done = await app.aresume("a")
    assert (done.status, done.value) == (RunStatus.COMPLETED, 4)


def test_a_stop_short_of_the_limits_suggests_each_limit_above_the_spend() -> None:
    """Calls in flight can stop one before its budget's spend reaches a limit."""
    budget = ai.Budget(max_usd=3, max_tokens=5000)
    spend = AISpend(calls=2, micro_usd=2_400_000, tokens=2200)
    assert budget.raise_hint(spend) == {"max_usd": 5.4, "max_tokens": 7200}
