"""genai-prices, asked once per price rather than once per call.

`genai_prices.calc_price` decomposes the usage into priced units, validates
them and sums them afresh on every call: ~0.1 ms, most of the AI layer's own
cost around a model call. For a price without tiers that sum is affine in the
four counts we pass (input, cache reads, cache writes, output), so its five
coefficients are read off genai-prices itself, once per price in force (the
model's price at the call's time, for its service tier), by pricing five
probe usages, and checked on a sixth; every later call with that price is
five multiplications, exact in `Decimal`. Tiered prices, a check that fails,
counts genai-prices would refuse (cache reads and writes above the input),
counts the four leave out (1 h cache writes, web searches, audio tokens) and
groq (which bills audio by the second) go the long way, unchanged. Audio tokens
of a price with no audio rate price nothing (unknown), not at the text rate.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ._types import Usage

__all__ = ["genai_price"]

_M = 1_000_000
# the probes: (input, cache reads, cache writes, output); the last checks the others
_PROBES = ((0, 0, 0, 0), (_M, 0, 0, 0), (_M, _M, 0, 0), (_M, 0, _M, 0), (0, 0, 0, _M))
_CHECK = (3_000_017, 1_000_003, 500_009, 2_000_029)

# a price in force (its items) -> its coefficients, or None if it is not affine
_affine: dict[tuple[Any, ...], tuple[Decimal, ...] | None] = {}


def genai_price(
    provider: str, model: str, usage: Usage, at: datetime, service_tier: str | None
) -> Decimal | None:
    """The call's price in USD from genai-prices' snapshot; None if it has no price."""
    from genai_prices import data_snapshot

    counts = (
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
    )
    context = {"service_tier": service_tier} if service_tier else None
    try:
        found, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    extra = _extra(usage, counts[2])
    # as ModelInfo.calc_price: a model found under another provider has no variants
    variants = context if context and any(info is m for m in found.models) else None
    price = info.get_prices(at, variants)
    if _audio_unrated(price, usage):
        return None
    if provider == "groq" or counts[1] + counts[2] > counts[0] or extra:
        return _calc(info, found, counts, at, context, extra)
    try:
        key = tuple(sorted(vars(price).items()))
        coefficients = _affine[key] if key in _affine else _learn(key, price)
    except TypeError:  # an unhashable (tiered) price
        coefficients = None
    if coefficients is None:
        return _calc(info, found, counts, at, context)
    base, *per_token = coefficients
    return base + sum((c * n for c, n in zip(per_token, counts, strict=True)), Decimal(0))


def _audio_unrated(price: Any, usage: Usage) -> bool:
    """Audio tokens of a price with no audio rate for them (gpt-4o-audio-preview's in
    the snapshot: text rates only): genai-prices bills them at the text rate, a small
    part of their cost, so the call's cost is unknown rather than that guess."""
    return bool(
        (usage.input_audio_tokens and getattr(price, "input_audio_mtok", None) is None)
        or (usage.output_audio_tokens and getattr(price, "output_audio_mtok", None) is None)
    )


def _learn(key: tuple[Any, ...], price: Any) -> tuple[Decimal, ...] | None:
    """The affine coefficients of `price`, read off genai-prices; None if not affine."""
    from genai_prices.types import TieredPrices

    if any(isinstance(v, TieredPrices) for _, v in key):
        _affine[key] = None
        return None
    zero, *at_million = (_usd(price, probe) for probe in _PROBES)
    per_token = [(p - zero) / _M for p in at_million]
    # cache reads and writes are also input tokens: their own rate is the difference
    coefficients = (zero, per_token[0], per_token[1] - per_token[0], per_token[2] - per_token[0],
                    per_token[3])  # fmt: skip
    predicted = coefficients[0] + sum(c * n for c, n in zip(coefficients[1:], _CHECK, strict=True))
    affine = predicted == _usd(price, _CHECK)
    _affine[key] = coefficients if affine else None
    return _affine[key]


def _usd(price: Any, counts: tuple[int, int, int, int]) -> Decimal:
    return Decimal(price.calc_price(_usage(counts))["total_price"])


def _usage(counts: tuple[int, int, int, int], extra: dict[str, int] | None = None) -> Any:
    from genai_prices import Usage as GUsage

    return GUsage(
        input_tokens=counts[0],
        cache_read_tokens=counts[1],
        cache_write_tokens=counts[2],
        output_tokens=counts[3],
        **(extra or {}),
    )


def _extra(usage: Usage, writes: int) -> dict[str, int]:
    """What the four counts leave out and genai-prices prices: cache writes kept an
    hour (a part of the writes), web searches, and audio tokens (parts of the input
    and the output, priced at the model's audio rates; left to genai-prices to refuse,
    not capped, when above their whole: a capped count would bill a guess)."""
    extra = {}
    if usage.cache_write_1h_tokens:
        extra["cache_write_1h_tokens"] = min(usage.cache_write_1h_tokens, writes)
    if usage.web_search_requests:
        extra["web_searches"] = usage.web_search_requests
    if usage.input_audio_tokens:
        extra["input_audio_tokens"] = usage.input_audio_tokens
    if usage.output_audio_tokens:
        extra["output_audio_tokens"] = usage.output_audio_tokens
    return extra


def _calc(
    info: Any,
    found: Any,
    counts: tuple[int, int, int, int],
    at: datetime,
    context: dict[str, str] | None,
    extra: dict[str, int] | None = None,
) -> Decimal | None:
    """The long way: genai-prices' own calculation (the only one that prices the
    `extra` counts, which the affine shortcut does not learn). Counts it refuses
    (ValueError: cache reads above the input, as a server counting only the tokens it
    evaluated reports them) price nothing: raised here, after the provider answered,
    the run failed on it and the billed call was never logged."""
    try:
        calc = info.calc_price(
            _usage(counts, extra), found, genai_request_timestamp=at, price_context=context
        )
    except (LookupError, ValueError):
        return None
    return Decimal(calc.total_price)
