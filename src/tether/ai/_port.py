"""The provider port: what tether needs from a model API.

Adapters (`OpenAI`, `OpenAICompatible`, `Anthropic`, `FakeModel`) sit beside
it. They never retry: a retryable failure is raised as a `ProviderError`
with `retryable=True`, and the durable step around the call retries it, so
attempts are counted in the database and survive a crash.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._types import BatchItem, BatchItemResult, BatchStatus, EmbedReply, ModelReply, TextRequest

__all__ = ["Provider"]


@runtime_checkable
class Provider(Protocol):
    #: the provider id prices are looked up under (None: only the user's table)
    price_id: str | None

    def check(self) -> None:
        """Raise `MissingAPIKeyError` (naming the variable) if the provider cannot call."""
        ...

    async def aclose(self) -> None:
        """Close what the provider holds for the running event loop."""
        ...

    async def generate(self, model: str, request: TextRequest) -> ModelReply: ...

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any]) -> EmbedReply: ...

    async def batch_submit(self, model: str, items: list[BatchItem]) -> str:
        """Submit a batch; the provider's batch id."""
        ...

    async def batch_status(self, batch_id: str) -> BatchStatus: ...

    async def batch_results(self, batch_id: str) -> list[BatchItemResult]: ...

    async def batch_cancel(self, batch_id: str) -> None: ...
