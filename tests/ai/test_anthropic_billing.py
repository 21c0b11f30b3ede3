"""What Anthropic bills beyond the four token counts: cache writes kept an hour cost
more than the 5-minute ones (at claude-sonnet-4-5: $6 against $3.75 per million),
and server-side web searches are billed each ($10 per thousand). Left out, a call
that used them is under-priced."""

from __future__ import annotations

from datetime import UTC, datetime

from tether import App, FakeClock, Workflow, ai
from tether.ai import Usage
from tether.ai._anthropic import anthropic_usage

from ._server import ProviderServer

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_hour_long_cache_writes_are_read_from_the_usage() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 150,
            "cache_creation": {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 100},
            "output_tokens": 80,
        }
    )
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        1200,
        150,
        100,
    )


def test_a_table_price_charges_hour_long_writes_at_their_own_rate() -> None:
    price = ai.Price(
        input_per_million=3,
        output_per_million=15,
        cached_input_per_million=0.3,
        cache_write_per_million=3.75,
        cache_write_1h_per_million=6,
    )
    usage = Usage(input_tokens=1150, cache_write_tokens=150, cache_write_1h_tokens=100)
    priced = ai.Prices({"m": price}).price("anthropic", "m", usage, at=AT)
    assert priced.micro_usd == round(1000 * 3 + 50 * 3.75 + 100 * 6)  # 3788
    plain = ai.Price(input_per_million=3, output_per_million=15, cache_write_per_million=3.75)
    # no hour rate of its own: the cache write rate, and the source as it always was
    assert ai.Prices({"m": plain}).price("x", "m", usage, at=AT).micro_usd == 3563


async def test_a_call_with_an_hour_long_cache_is_priced_at_the_hour_rate(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    providers = ai.Providers(anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url))
    app = App(database_url, clock=clock, ai=providers)
    server.queue_message(
        "ok",
        input_tokens=50,
        cache_read=1000,
        cache_write=150,
        cache_write_1h=100,
        output_tokens=80,
    )

    @app.workflow(name="cached")
    async def cached(wf: Workflow) -> float | None:
        return (await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="x")).cost_usd

    try:
        done = await app.arun(cached, workflow_id="c1")
        [call] = await app.alist_ai_calls("c1")
    finally:
        await app.aclose()
    # 50 x 3 + 1000 x 0.30 + 50 x 3.75 + 100 x 6 + 80 x 15 = 2437.5 micro-USD, half up
    assert call.cost_micro_usd == 2438 and done.value == 0.002438
    assert (call.input_tokens, call.cache_write_tokens) == (1200, 150)


async def test_web_searches_are_read_from_the_usage_and_billed(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    providers = ai.Providers(anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url))
    app = App(database_url, clock=clock, ai=providers)
    server.queue_message("found it", input_tokens=1000, output_tokens=100, web_searches=2)

    @app.workflow(name="searcher")
    async def searcher(wf: Workflow) -> int:
        return (
            await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="x")
        ).usage.web_search_requests

    try:
        assert (await app.arun(searcher, workflow_id="s1")).value == 2
        [call] = await app.alist_ai_calls("s1")
    finally:
        await app.aclose()
    assert call.cost_micro_usd == 1000 * 3 + 100 * 15 + 2 * 10_000  # 24500


async def test_a_table_price_still_bills_the_web_searches(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """A model priced in the user's table (a negotiated rate) had its web searches
    priced $0: the table's price replaced genai-prices' whole, searches included.
    Unset in the table, they are priced from genai-prices ($10 per thousand)."""
    rate = {"input_per_million": 2.0, "output_per_million": 10.0}
    prices = ai.Prices({"anthropic:claude-sonnet-4-5": rate})
    anthropic = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    app = App(database_url, clock=clock, ai=ai.Providers(anthropic=anthropic, prices=prices))
    server.queue_message("found it", input_tokens=1000, output_tokens=100, web_searches=2)

    @app.workflow(name="searcher")
    async def searcher(wf: Workflow) -> float | None:
        return (await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="x")).cost_usd

    try:
        done = await app.arun(searcher, workflow_id="s1")
        [call] = await app.alist_ai_calls("s1")
    finally:
        await app.aclose()
    # 1000 x 2 + 100 x 10 at the table's rate, and 2 searches at $10 per thousand
    assert call.cost_micro_usd == 3000 + 2 * 10_000 and done.value == 0.023
    assert (call.price_source or "").startswith("table:")


def test_web_searches_are_billed_at_the_tables_price_else_unknown() -> None:
    """A table's own search price is taken; with none, for a model genai-prices does
    not know, what the searches cost is unknown: the call's cost is None, not the
    tokens' alone."""
    rate = {"input_per_million": 1.0, "output_per_million": 1.0}
    usage = Usage(input_tokens=10, web_search_requests=2)
    own = ai.Prices({"m": {**rate, "web_search_per_thousand": 5.0}}).price("x", "m", usage, at=AT)
    assert own.micro_usd == 10 + 2 * 5_000
    priced = ai.Prices({"m": rate}).price("mine", "m", usage, at=AT)
    assert (priced.micro_usd, priced.source) == (None, None)
    assert ai.Prices({"m": rate}).price("mine", "m", Usage(input_tokens=10), at=AT).micro_usd == 10
