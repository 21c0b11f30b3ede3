"""What a call cost, in integer micro-USD, and where the price came from.

Prices come from the user's table first (`Prices({...})`: private
deployments, fine-tunes, local models), then from genai-prices' bundled
snapshot at the call's time (prices are historical). A model neither knows
costs None, never 0: "unknown" is counted as such in every total. Batch calls
are priced at the batch discount (50% at OpenAI and Anthropic).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from importlib import metadata

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidArgumentError
from ._errors import validation_message
from ._genai import genai_price
from ._types import Usage

__all__ = ["Price", "Priced", "Prices"]

_MICRO = Decimal(1_000_000)


class Price(BaseModel):
    """USD per million tokens of one model. Cached reads and cache writes default to
    the input price, cache writes kept an hour to the cache write price;
    `batch_discount` is the fraction taken off batch calls (unset: the table's,
    `Prices(batch_discount=...)`); `web_search_per_thousand` prices server-side web
    searches (unset: genai-prices' price of them). A price has no audio rate: a call
    that tells audio tokens (billed many times the text rate) costs None (unknown)
    at a table's price rather than a text-rate guess; leave such a model to
    genai-prices, which has audio rates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # finite: an infinite price was taken, then failed every call to the model after
    # the provider answered (and billed), its call never logged; strict: True was read
    # as 1.0 (a batch discount of 100%, every batch call free) and "0.4" as 0.4
    input_per_million: float = Field(ge=0, allow_inf_nan=False, strict=True)
    output_per_million: float = Field(ge=0, allow_inf_nan=False, strict=True)
    cached_input_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True
    )
    cache_write_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True
    )
    cache_write_1h_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True
    )
    batch_discount: float | None = Field(default=None, ge=0, le=1, strict=True)
    # USD per thousand server-side web searches (Anthropic's: 10); unset, genai-prices'
    # price of them, else the call's cost is unknown
    web_search_per_thousand: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True
    )

    def cost(self, usage: Usage) -> Decimal:
        fresh = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        cached = _or(self.cached_input_per_million, self.input_per_million)
        write = _or(self.cache_write_per_million, self.input_per_million)
        hour = _or(self.cache_write_1h_per_million, write)
        write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        per_million = (
            Decimal(max(fresh, 0)) * Decimal(str(self.input_per_million))
            + Decimal(usage.cached_input_tokens) * Decimal(str(cached))
            + Decimal(usage.cache_write_tokens - write_1h) * Decimal(str(write))
            + Decimal(write_1h) * Decimal(str(hour))
            + Decimal(usage.output_tokens) * Decimal(str(self.output_per_million))
        )
        searches = Decimal(usage.web_search_requests) * Decimal(
            str(self.web_search_per_thousand or 0)
        )
        return per_million / _MICRO + searches / 1000


@dataclass(frozen=True)
class Priced:
    """A call's cost (None: no price known for the model) and the price's source."""

    micro_usd: int | None
    source: str | None


class Prices:
    """The price list: the user's table (keys ``provider:model`` or ``model``) over
    genai-prices' snapshot. `genai_prices=False` uses the table alone.
    `batch_discount` is taken off batch calls, except where a `Price` sets its own."""

    def __init__(
        self,
        table: Mapping[str, Price | Mapping[str, float]] | None = None,
        *,
        genai_prices: bool = True,
        batch_discount: float = 0.5,
    ) -> None:
        self._table: dict[str, Price] = {}
        for key, value in (table or {}).items():
            if not isinstance(key, str) or not key:
                raise InvalidArgumentError(
                    f"price table keys are model names ('openai:gpt-4.1' or 'gpt-4.1'), got {key!r}"
                )
            try:
                self._table[key] = value if isinstance(value, Price) else Price(**value)
            except (ValidationError, TypeError) as exc:
                raise InvalidArgumentError(
                    f"price of {key!r} is not valid ({_errors_of(exc)}); pass e.g. "
                    "Price(input_per_million=0.4, output_per_million=1.6)"
                ) from None
        # a str ("0.5") raised a bare TypeError; True was taken as a discount of 1
        if isinstance(batch_discount, bool) or not isinstance(batch_discount, int | float):
            raise InvalidArgumentError(
                f"batch_discount must be a number in [0, 1], got {batch_discount!r}"
            )
        if not 0 <= batch_discount <= 1:
            raise InvalidArgumentError(f"batch_discount must be in [0, 1], got {batch_discount}")
        self._genai = genai_prices
        self._batch_discount = Decimal(str(batch_discount))

    def price(
        self,
        provider: str,
        model: str,
        usage: Usage,
        *,
        at: datetime,
        batch: bool = False,
        service_tier: str | None = None,
    ) -> Priced:
        own = self.own(provider, model)
        if own is not None:
            return self.by_table(own, usage, batch=batch, catalog=provider, model=model, at=at)
        if not self._genai or provider not in _genai_providers():
            return Priced(None, None)
        usd_or_none = genai_price(provider, model, usage, at, service_tier)
        if usd_or_none is None:
            return Priced(None, None)
        if batch:
            usd_or_none *= 1 - self._batch_discount
        return Priced(_micro(usd_or_none), f"genai-prices@{_genai_version()}")

    def own(self, provider: str, model: str) -> Price | None:
        """The user's price of `model` (keyed ``provider:model`` or ``model``), if any."""
        return self._table.get(f"{provider}:{model}") or self._table.get(model)

    def by_table(
        self,
        own: Price,
        usage: Usage,
        *,
        batch: bool = False,
        catalog: str | None = None,
        model: str = "",
        at: datetime | None = None,
    ) -> Priced:
        """The cost of `usage` at the user's price `own`; a batch call takes the price's
        own discount, else the table's. Web searches `own` has no price for are priced
        from genai-prices (the model's `catalog`, at `at`): left out, they were $0.
        Audio tokens it has no rate for make the cost unknown (None), not text-priced."""
        if usage.input_audio_tokens or usage.output_audio_tokens:
            return Priced(None, None)
        if own.batch_discount is None:  # the source names the discount in force
            own = own.model_copy(update={"batch_discount": float(self._batch_discount)})
        usd = own.cost(usage)
        source = f"table:{_digest(own)}"
        if usage.web_search_requests and own.web_search_per_thousand is None:
            searches = self._searches(catalog, model, usage.web_search_requests, at)
            if searches is None:
                return Priced(None, None)
            usd += searches
            source += f"+genai-prices@{_genai_version()}"
        if batch:
            usd *= 1 - Decimal(str(own.batch_discount))
        return Priced(_micro(usd), source)

    def _searches(
        self, catalog: str | None, model: str, count: int, at: datetime | None
    ) -> Decimal | None:
        """genai-prices' price of `count` web searches with `model`; None if unknown."""
        if not self._genai or catalog not in _genai_providers() or at is None:
            return None
        return genai_price(catalog, model, Usage(web_search_requests=count), at, None)


def _micro(usd: Decimal) -> int:
    return int((usd * _MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _digest(price: Price) -> str:
    dump = price.model_dump()
    for later in ("cache_write_1h_per_million", "web_search_per_thousand"):
        if dump[later] is None:  # the digest a price had before the field
            del dump[later]
    text = json.dumps(dump, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@functools.cache
def _genai_providers() -> frozenset[str]:
    """The provider ids genai-prices' snapshot prices (openrouter, together, x-ai, ...),
    so a `price_id` naming any of them is priced as documented. An id outside them is
    not asked: genai-prices would match the model under some other provider."""
    from genai_prices import data_snapshot

    return frozenset(p.id for p in data_snapshot.get_snapshot().providers)


@functools.cache
def _genai_version() -> str:
    try:
        return metadata.version("genai-prices")
    except metadata.PackageNotFoundError:
        return "unknown"


def _errors_of(exc: Exception) -> str:
    """Every field's error, not the first only: a misspelt field ("Extra inputs are
    not permitted") was hidden behind the required one it was meant to be."""
    return validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
