"""generate_object across a retried step: a provider error after a refused answer
retries the step, which goes on from the answers it had, not from the first question."""

from __future__ import annotations

from pydantic import BaseModel

from tether import App, FakeClock, Workflow, ai
from tether.ai import TextRequest


class Label(BaseModel):
    label: str


async def test_a_5xx_after_a_refused_answer_asks_again_not_the_first_question_anew(
    database_url: str, clock: FakeClock
) -> None:
    script: list[str | None] = ["not json", None, '{"label": "bug"}']

    def reply(model: str, request: TextRequest) -> str:
        said = script.pop(0)
        if said is None:
            raise ai.ProviderError("server error", status=500, retryable=True, model=model)
        return said

    fake = ai.FakeModel(reply, usage=ai.Usage(input_tokens=100, output_tokens=10))
    prices = ai.Prices({"fake:m": {"input_per_million": 1.0, "output_per_million": 1.0}})
    app = App(database_url, clock=clock, ai=ai.Providers(fake=fake, prices=prices))

    @app.workflow(name="label")
    async def label(wf: Workflow) -> tuple[str, int, int, float | None]:
        res = await wf.ai.generate_object("fake:m", Label, prompt="classify it", attempts=2)
        return res.object.label, res.attempts, res.usage.input_tokens, res.cost_usd

    try:
        done = await app.arun(label, workflow_id="o1")
        # the two answers of the step: the refused one (before the 5xx) and the good one
        assert done.value == ("bug", 2, 200, 0.00022)
        third = fake.calls[2][1]
        # the retry sent the refused answer back with its error, as attempt 2 would have
        assert [m.role for m in third.messages] == ["user", "assistant", "user"]
        assert third.messages[1].content == "not json"
        assert "does not match the schema" in str(third.messages[2].content)
        calls = await app.alist_ai_calls("o1")
        assert [c.error is None for c in calls] == [True, False, True]
    finally:
        await app.aclose()
