"""Audio tokens (OpenAI's audio models tell them in `prompt_tokens_details` and
`completion_tokens_details`) are parts of the input and output billed at audio rates,
many times the text rate: they were ignored, the call priced as text, its logged cost
far too low. Against the real local provider server (the official SDK talks to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer
from .test_provider_faults import _asker

AUDIO_MODEL = "gpt-audio"  # an OpenAI chat model genai-prices has audio rates for
TEXT_RATES = {"input_per_million": 1.0, "output_per_million": 1.0}


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    """OpenAI priced from genai-prices; ``mine`` (the same server) at the user's text rates."""
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        mine=ai.OpenAICompatible(base_url=server.openai_url),
        prices=ai.Prices({"mine:voice": TEXT_RATES}),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _queue(
    server: ProviderServer, prompt: int, completion: int, audio_in: int, audio_out: int
) -> None:
    """A chat answer whose usage tells audio parts, as OpenAI's audio models send it."""
    server.queue_chat("ok", prompt_tokens=prompt, completion_tokens=completion)
    usage = server.state.chat[-1]["usage"]
    usage["prompt_tokens_details"]["audio_tokens"] = audio_in
    usage["completion_tokens_details"]["audio_tokens"] = audio_out


def _micro(usage: GUsage, at: datetime) -> int:
    """genai-prices' own price of `usage` at `at`, in micro-USD as tether rounds it."""
    usd = calc_price(usage, AUDIO_MODEL, provider_id="openai", genai_request_timestamp=at)
    micro = Decimal(usd.total_price) * 1_000_000
    return int(micro.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def test_audio_tokens_are_priced_at_genai_prices_audio_rates(
    app: App, server: ProviderServer
) -> None:
    _queue(server, prompt=1000, completion=500, audio_in=800, audio_out=400)
    await app.arun(_asker(app, f"openai:{AUDIO_MODEL}"), workflow_id="a1")
    [call] = await app.alist_ai_calls("a1")
    audio = GUsage(
        input_tokens=1000, input_audio_tokens=800, output_tokens=500, output_audio_tokens=400
    )
    as_text = _micro(GUsage(input_tokens=1000, output_tokens=500), call.at)
    assert call.cost_micro_usd == _micro(audio, call.at)
    assert call.cost_micro_usd > 3 * as_text  # the audio rates are in it: not the text price
    assert (call.input_tokens, call.output_tokens) == (1000, 500)  # logged as told


async def test_an_answer_without_audio_is_priced_as_before(
    app: App, server: ProviderServer
) -> None:
    _queue(server, prompt=1000, completion=500, audio_in=0, audio_out=0)
    await app.arun(_asker(app, f"openai:{AUDIO_MODEL}"), workflow_id="t1")
    [call] = await app.alist_ai_calls("t1")
    assert call.cost_micro_usd == _micro(GUsage(input_tokens=1000, output_tokens=500), call.at)


@pytest.mark.parametrize(
    ("audio_in", "audio_out"),
    [(800, 0), (0, 60)],  # audio above the prompt's 100, above the completion's 50
)
async def test_audio_above_its_whole_is_of_unknown_cost(
    app: App, server: ProviderServer, audio_in: int, audio_out: int
) -> None:
    """Which count is wrong is not known, so no cost is stated (as for cache hits above
    the prompt); the counts are logged as told and the run goes on."""
    _queue(server, prompt=100, completion=50, audio_in=audio_in, audio_out=audio_out)
    done = await app.arun(_asker(app, f"openai:{AUDIO_MODEL}"), workflow_id="c1")
    [call] = await app.alist_ai_calls("c1")
    assert done.value == "ok" and call.error is None
    assert call.cost_micro_usd is None and (call.input_tokens, call.output_tokens) == (100, 50)


async def test_audio_at_a_table_price_of_text_rates_is_of_unknown_cost(
    app: App, server: ProviderServer
) -> None:
    """A `Price` has no audio rate: its text rate would bill audio far below its cost.
    The same model's text-only call is priced by the table as before."""
    _queue(server, prompt=1000, completion=500, audio_in=800, audio_out=0)
    _queue(server, prompt=1000, completion=500, audio_in=0, audio_out=0)

    @app.workflow(name="voice", budget=ai.Budget(max_usd=0.5))
    async def voice(wf: Workflow) -> None:
        await wf.ai.generate_text("mine:voice", prompt="spoken")
        await wf.ai.generate_text("mine:voice", prompt="written")

    await app.arun(voice, workflow_id="v1")
    spoken, written = await app.alist_ai_calls("v1")
    assert spoken.cost_micro_usd is None and written.cost_micro_usd == 1500  # $1 / MTok
    [told] = [e for e in (await app.aget_record("v1")).events if e.type == "budget.unpriced"]
    assert "mine:voice's price in ai.Prices does not price all of a call (audio" in (
        told.message or ""
    )
    assert "has no known price" not in (told.message or "")  # it has one


def test_a_sum_of_usages_keeps_its_audio_parts() -> None:
    """A batch's usage is the sum of its calls': audio parts included."""
    one = ai.Usage(input_tokens=10, input_audio_tokens=4, output_tokens=6, output_audio_tokens=2)
    total = one + one
    assert (total.input_audio_tokens, total.output_audio_tokens) == (8, 4)
