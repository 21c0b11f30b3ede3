"""The cached affine prices give genai-prices' own answer, to the last digit."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price, data_snapshot
from genai_prices.types import TieredPrices

from tether.ai import _genai
from tether.ai._types import Usage

PROVIDERS = ("openai", "anthropic", "google", "mistral", "groq", "deepseek")


def _theirs(
    provider: str, model: str, counts: tuple[int, int, int, int], at: datetime, tier: str | None
) -> Decimal | None:
    i, r, w, o = counts
    try:
        calc = calc_price(
            GUsage(input_tokens=i, cache_read_tokens=r, cache_write_tokens=w, output_tokens=o),
            model,
            provider_id=provider,
            genai_request_timestamp=at,
            price_context={"service_tier": tier} if tier else None,
        )
    except LookupError:
        return None
    return Decimal(calc.total_price)


def _ours(
    provider: str, model: str, counts: tuple[int, int, int, int], at: datetime, tier: str | None
) -> Decimal | None:
    i, r, w, o = counts
    usage = Usage(input_tokens=i, cached_input_tokens=r, cache_write_tokens=w, output_tokens=o)
    return _genai.genai_price(provider, model, usage, at, tier)


def test_every_model_of_the_snapshot_prices_as_genai_prices_does() -> None:
    rnd = random.Random(7)
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        if provider.id not in PROVIDERS:
            continue
        for model in provider.models:
            for _ in range(4):
                i = rnd.choice([0, 10, 1_234, 200_001, 300_000, 5_000_000])
                r = rnd.randint(0, i)
                counts = (i, r, rnd.randint(0, i - r), rnd.choice([0, 7, 999, 50_000]))
                at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rnd.randint(0, 10**6))
                tier = rnd.choice([None, None, "flex", "priority"])
                want = _theirs(provider.id, model.id, counts, at, tier)
                assert _ours(provider.id, model.id, counts, at, tier) == want, (model.id, counts)
                checked += 1
    assert checked > 500
    assert any(_genai._affine.values()), "no price took the cached path"


def test_a_price_is_learnt_once_and_then_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    _genai._affine.clear()
    at = datetime(2026, 6, 1, tzinfo=UTC)
    first = _ours("openai", "gpt-4.1-mini", (1_000, 200, 0, 300), at, None)
    assert len(_genai._affine) == 1
    learnt = []
    monkeypatch.setattr(_genai, "_learn", lambda key, price: learnt.append(key))
    again = _ours("openai", "gpt-4.1-mini", (2_000, 0, 0, 10), at, None)
    assert learnt == []  # answered from the cache
    assert first == _theirs("openai", "gpt-4.1-mini", (1_000, 200, 0, 300), at, None)
    assert again == _theirs("openai", "gpt-4.1-mini", (2_000, 0, 0, 10), at, None)


def test_tiered_prices_and_impossible_counts_go_the_long_way() -> None:
    snapshot = data_snapshot.get_snapshot()
    tiered = [
        (p.id, m.id)
        for p in snapshot.providers
        if p.id in PROVIDERS
        for m in p.models
        if not isinstance(m.prices, list)
        and any(isinstance(v, TieredPrices) for v in vars(m.prices).values())
    ]
    assert tiered, "the snapshot has no tiered price to test with"
    at = datetime(2026, 6, 1, tzinfo=UTC)
    for provider, model in tiered[:5]:
        for counts in ((100, 0, 0, 10), (500_000, 0, 0, 10)):  # below and above a tier
            assert _ours(provider, model, counts, at, None) == _theirs(
                provider, model, counts, at, None
            )
    # more cache reads than input: genai-prices refuses the counts, and they price at
    # unknown (raised, it failed the run after the provider billed the call)
    with pytest.raises(ValueError):
        _theirs("openai", "gpt-4.1-mini", (10, 20, 0, 0), at, None)
    assert _ours("openai", "gpt-4.1-mini", (10, 20, 0, 0), at, None) is None


def test_an_unknown_model_has_no_price() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert _ours("openai", "no-such-model-xyz", (10, 0, 0, 10), at, None) is None
