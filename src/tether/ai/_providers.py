"""`Providers`: the model APIs an App may call, by the name a model is prefixed with."""

from __future__ import annotations

from datetime import datetime

from ..errors import InvalidArgumentError
from ._errors import UnknownProviderError
from ._port import Provider
from ._prices import Priced, Prices
from ._types import Usage

__all__ = ["Providers"]


class Providers:
    """``Providers(openai=OpenAI(), local=OpenAICompatible(base_url=...))``: a model
    is then named ``"openai:gpt-4.1-mini"`` or ``"local:llama3"``. `prices`
    overrides or adds prices (see `Prices`)."""

    def __init__(self, *, prices: Prices | None = None, **providers: Provider) -> None:
        for name, provider in providers.items():
            if not isinstance(provider, Provider):
                raise InvalidArgumentError(
                    f"provider {name!r} must be a tether.ai provider (OpenAI(), Anthropic(), "
                    f"OpenAICompatible(base_url=...), FakeModel(...)), got {provider!r}"
                )
        if prices is not None and not isinstance(prices, Prices):
            raise InvalidArgumentError(f"prices must be a tether.ai.Prices, got {prices!r}")
        self._providers = dict(providers)
        self.prices = prices or Prices()

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    def get(self, name: str) -> Provider | None:
        """The provider configured as `name`, if any."""
        return self._providers.get(name)

    def check(self) -> None:
        """Raise `MissingAPIKeyError` for the first provider that cannot call."""
        for provider in self._providers.values():
            provider.check()

    def resolve(self, model: str) -> tuple[str, Provider, str]:
        """``"provider:model"`` as (provider name, provider, model id)."""
        if not isinstance(model, str) or ":" not in model:
            raise InvalidArgumentError(
                f"a model is named 'provider:model' (e.g. 'openai:gpt-4.1-mini'), got {model!r}"
            )
        name, model_id = model.split(":", 1)
        provider = self._providers.get(name)
        if provider is None:
            raise UnknownProviderError(
                f"model {model!r} names provider {name!r}, which is not configured "
                f"(configured: {', '.join(self.names) or 'none'}); add it to "
                "tether.App(ai=ai.Providers(...))"
            )
        if not model_id:
            raise InvalidArgumentError(f"model {model!r} has no model id after {name + ':'!r}")
        return name, provider, model_id

    def price(
        self,
        name: str,
        model_id: str,
        usage: Usage,
        *,
        at: datetime,
        batch: bool = False,
        service_tier: str | None = None,
    ) -> Priced:
        """The cost of a call to `model_id` of the provider configured as `name`: the
        user's table first (by the configured name), then the provider's catalog
        (`price_id`); unknown is None."""
        own = self.prices.own(name, model_id)
        catalog = self._providers[name].price_id
        if own is not None:
            return self.prices.by_table(
                own, usage, batch=batch, catalog=catalog, model=model_id, at=at
            )
        if catalog is None:
            return Priced(None, None)
        return self.prices.price(
            catalog, model_id, usage, at=at, batch=batch, service_tier=service_tier
        )

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
