"""Audio tokens of a model whose price in genai-prices' snapshot has no audio rate
(gpt-4o-audio-preview: text rates only; the reference gives no audio rates either)
were billed at the text rate, a small part of their cost. Such a call is of unknown
cost, told as that; the same model's text-only calls are priced as before. Against
the real local provider server (the official SDK talks to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer
from .test_audio_usage import _queue

MODEL = "openai:gpt-4o-audio-preview"


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=server.openai_url))
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


@pytest.mark.parametrize(("audio_in", "audio_out"), [(800, 0), (0, 400), (800, 400)])
async def test_audio_of_a_model_with_no_audio_rate_is_of_unknown_cost(
    app: App, server: ProviderServer, audio_in: int, audio_out: int
) -> None:
    _queue(server, prompt=1000, completion=500, audio_in=audio_in, audio_out=audio_out)
    _queue(server, prompt=1000, completion=500, audio_in=0, audio_out=0)

    @app.workflow(name="voice", budget=ai.Budget(max_usd=0.5))
    async def voice(wf: Workflow) -> None:
        await wf.ai.generate_text(MODEL, prompt="spoken")
        await wf.ai.generate_text(MODEL, prompt="written")

    await app.arun(voice, workflow_id="v1")
    spoken, written = await app.alist_ai_calls("v1")
    assert spoken.cost_micro_usd is None
    assert written.cost_micro_usd == 7500  # $2.5 / $10 per MTok: text is priced
    [usage] = await app.ausage(run="v1")
    assert (usage.unknown_cost_calls, usage.priced_calls) == (1, 1)
    [told] = [e for e in (await app.aget_record("v1")).events if e.type == "budget.unpriced"]
    assert (told.message or "").startswith(
        f"{MODEL} has no known rate for the audio tokens a call told"
    )
