"""A fake provider at a fixed price: every call of fake:m costs $1.20, for the budget tests."""

from __future__ import annotations

from tether import App, FakeClock, ai

PER_CALL = ai.Prices({"fake:m": {"input_per_million": 1000, "output_per_million": 2000}})


def priced_app(database_url: str, clock: FakeClock) -> App:
    """Every call of fake:m costs $1.20 (1,000 tokens in, 100 out)."""
    fake = ai.FakeModel(usage=ai.Usage(input_tokens=1000, output_tokens=100))
    return App(database_url, clock=clock, ai=ai.Providers(fake=fake, prices=PER_CALL))
