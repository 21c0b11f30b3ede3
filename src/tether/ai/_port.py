"""The provider port: what tether needs from a model API.

Adapters (`OpenAI`, `OpenAICompatible`, `Anthropic`, `FakeModel`) sit beside
it. They never retry: a retryable failure is raised as a `ProviderError`
with `retryable=True`, and the durable step around the call retries it, so
attempts are counted in the database and survive a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ._types import BatchItem, BatchItemResult, BatchStatus, EmbedReply, ModelReply, TextRequest

__all__ = ["RUN_CREATED", "UNREADABLE_LINE", "Provider", "tagged"]

#: the tag key holding the run's creation (microseconds since the epoch): a run id
#: reused after its run was pruned must not take the pruned run's batch as its own
RUN_CREATED = "tether_run_created"
#: how the custom_id of a batch result line that tells none begins (then the line's
#: digest): billed maybe, it is logged as a call of unknown cost, not skipped as free
UNREADABLE_LINE = "unreadable-line:"


def tagged(
    tag: Mapping[str, str],
    metadata: Mapping[str, Any] | None,
    created: datetime,
    since: datetime | None = None,
) -> bool:
    """Whether a batch with `metadata`, created at `created`, was submitted with `tag`
    (`Provider.batch_find`). One an older tether submitted has no `RUN_CREATED`: it is
    taken only when `since` (the run's creation) is given and it was created since,
    as a pruned run of the same id submitted its own batches before this run existed."""
    kept = dict(metadata or {})
    if tag.items() <= kept.items():
        return True
    if since is None or RUN_CREATED in kept:
        return False
    rest = {k: v for k, v in tag.items() if k != RUN_CREATED}
    return rest.items() <= kept.items() and created >= since


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

    async def generate(self, model: str, request: TextRequest) -> ModelReply:
        """One answer. A provider with an optional ``ready()`` has it called first, out
        of the call's `latency_ms`: there it builds what it sends with (an SDK client)."""
        ...

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any]) -> EmbedReply: ...

    async def batch_submit(self, model: str, items: list[BatchItem]) -> str:
        """Submit a batch; the provider's batch id.

        A provider that can find its batches again also has ``batch_find(tag) ->
        list[str]`` (the ids of recent batches submitted with `tag`, newest first)
        and takes ``tag=`` here (the run, its creation and the step that submit it,
        kept with the batch): a submit retried after a crash then takes the batch the
        crashed attempt left instead of paying for a second. A ``batch_find`` that
        also takes ``since=`` (the run's creation) finds an older tether's batches,
        tagged without the run's creation, if created since (see `tagged`). Both are optional, so a
        provider written before them still works (without that recovery). An
        optional ``batch_check(items)`` raises `InvalidArgumentError` for requests
        the provider would refuse (Anthropic's custom_id rule), before the submit."""
        ...

    async def batch_status(self, batch_id: str) -> BatchStatus:
        """Its state: pending until it ended (a batch being cancelled is pending)."""
        ...

    async def batch_results(self, batch_id: str) -> list[BatchItemResult]:
        """The results it has, also of a batch that ended failed, cancelled or expired
        with some requests completed (they are billed)."""
        ...

    async def batch_cancel(self, batch_id: str) -> None: ...
