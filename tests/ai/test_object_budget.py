"""`generate_object` asks again when an answer does not validate; each ask is a
provider call, so the budget is checked before each, not once for the step: the
call that crossed the limit is the only one over it, as for other calls."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, RunStatus, Workflow, ai

PRICES = ai.Prices({"fake:m": {"input_per_million": 100, "output_per_million": 100}})
CALL = ai.Usage(input_tokens=1500, output_tokens=1500)  # $0.30 a call


class Answer(BaseModel):
    label: str


def _app(database_url: str, fake: ai.FakeModel) -> App:
    return App(database_url, clock=FakeClock(), ai=ai.Providers(fake=fake, prices=PRICES))


async def test_an_object_asked_again_past_the_limit_is_stopped_not_asked(
    database_url: str,
) -> None:
    fake = ai.FakeModel(["not json", "still not json", '{"label": "bug"}'], usage=CALL)
    app = _app(database_url, fake)

    @app.workflow(name="obj", budget=ai.Budget(max_usd=0.5))
    async def obj(wf: Workflow) -> str:
        return (await wf.ai.generate_object("fake:m", Answer, prompt="x")).object.label

    try:
        with pytest.raises(ai.BudgetExceededError, match=r"spent \$0\.6000 of \$0\.5000"):
            await app.arun(obj, workflow_id="o1")
        assert len(fake.calls) == 2  # $0.60 spent when the third ask was due
        calls = await app.alist_ai_calls("o1")
        assert [c.cost_micro_usd for c in calls] == [300_000, 300_000]  # both logged
    finally:
        await app.aclose()


async def test_an_object_stopped_between_asks_pauses_and_asks_afresh_after_a_raise(
    database_url: str,
) -> None:
    fake = ai.FakeModel(["not json", "still not json", '{"label": "bug"}'], usage=CALL)
    app = _app(database_url, fake)

    @app.workflow(name="obj", budget=ai.Budget(max_usd=0.5, on_exceed="pause"))
    async def obj(wf: Workflow) -> str:
        return (await wf.ai.generate_object("fake:m", Answer, prompt="x")).object.label

    try:
        assert (await app.arun(obj, workflow_id="o2")).status is RunStatus.WAITING
        assert len(fake.calls) == 2
        await app.asignal("o2", "budget.raise", {"max_usd": 5})
        assert (await app.aresume("o2")).value == "bug"
        assert len(fake.calls) == 3
        assert len(await app.alist_ai_calls("o2")) == 3
    finally:
        await app.aclose()
