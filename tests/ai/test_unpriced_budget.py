"""A dollar budget cannot see a model without a price: its calls cost None, not $0,
so the run is told once per model, in its events, that they escape `max_usd`."""

from __future__ import annotations

from tether import App, FakeClock, Workflow, ai

from ._server import OPENAI_NO_USAGE, ProviderServer


async def test_a_dollar_budget_tells_once_that_an_unpriced_model_escapes_it(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    providers = ai.Providers(
        local=ai.OpenAICompatible(base_url=server.openai_url),
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
    )
    app = App(database_url, clock=clock, ai=providers)

    @app.workflow(name="local", budget=ai.Budget(max_usd=0.5))
    async def local(wf: Workflow) -> int:
        for _ in range(3):
            await wf.ai.generate_text("local:llama3", prompt="hi")
        await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="priced")
        return 4

    @app.workflow(name="tokens-only", budget=ai.Budget(max_tokens=10_000))
    async def tokens_only(wf: Workflow) -> None:
        await wf.ai.generate_text("local:llama3", prompt="hi")

    try:
        assert (await app.arun(local, workflow_id="u1")).value == 4
        await app.arun(tokens_only, workflow_id="u2")
        events = (await app.aget_record("u1")).events
        quiet = (await app.aget_record("u2")).events
    finally:
        await app.aclose()
    told = [e for e in events if e.type == "budget.unpriced"]
    assert len(told) == 1 and "local:llama3 has no known price" in (told[0].message or "")
    assert "max_usd=0.5" in (told[0].message or "")
    assert not [e for e in quiet if e.type == "budget.unpriced"]  # tokens are counted


async def test_a_priced_model_answering_without_usage_is_told_as_that_not_as_unpriced(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = App(
        database_url,
        clock=clock,
        ai=ai.Providers(openai=ai.OpenAI(api_key="k", base_url=server.openai_url)),
    )
    server.answer_next(200, OPENAI_NO_USAGE)

    @app.workflow(name="no-usage", budget=ai.Budget(max_usd=0.5))
    async def ask(wf: Workflow) -> str:
        return (await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="hi")).text

    try:
        await app.arun(ask, workflow_id="n1")
        events = (await app.aget_record("n1")).events
    finally:
        await app.aclose()
    [told] = [e for e in events if e.type == "budget.unpriced"]
    assert "openai:gpt-4.1-mini answered without usage" in (told.message or "")
    assert "no known price" not in (told.message or "")  # it has one


async def test_an_unpriced_model_under_a_token_limit_too_is_not_told_to_set_one(
    database_url: str, clock: FakeClock
) -> None:
    """The event advised "or set max_tokens" to a budget that had one, which its calls
    count against already."""
    app = App(database_url, clock=clock, ai=ai.Providers(fake=ai.FakeModel()))

    @app.workflow(name="both", budget=ai.Budget(max_usd=0.5, max_tokens=10_000))
    async def both(wf: Workflow) -> str:
        return (await wf.ai.generate_text("fake:m", prompt="hi")).text

    try:
        await app.arun(both, workflow_id="b1")
        [told] = [e for e in (await app.aget_record("b1")).events if e.type == "budget.unpriced"]
    finally:
        await app.aclose()
    assert told.message == (
        "fake:m has no known price, so its calls do not count against the budget's "
        "max_usd=0.5; price it in ai.Prices({'fake:m': {...}}) (its tokens count against "
        "the budget's max_tokens=10000)"
    )
