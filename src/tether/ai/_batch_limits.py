"""The size limits of the providers' batch APIs, checked before anything is sent.

Past them OpenAI takes the upload and fails the batch at validation (the run
learns it at its first poll, a minute later), and Anthropic refuses the create:
either way the run fails late with the provider's words. Refused here, the error
says at once how to split the requests.
"""

from __future__ import annotations

from pydantic_core import PydanticSerializationError, to_json

from ..errors import InvalidArgumentError
from ._types import BatchItem

__all__ = ["check_batch_size"]


def check_batch_size(items: list[BatchItem], provider: str, most: int, megabytes: int) -> None:
    """`InvalidArgumentError` for more than `most` requests, or requests whose JSON
    passes `megabytes` MB in all, in UTF-8 bytes as the SDKs send them (counted in
    characters, Chinese text was a third of its size: the batch was taken here and
    failed by the provider), without each line's few bytes of framing: a batch this
    refuses is surely past the limit."""
    if len(items) > most:
        raise InvalidArgumentError(
            f"a batch of {len(items):,} requests is more than {provider}'s batches take "
            f"({most:,}); split the requests into batches of at most {most:,} (one "
            "wf.ai.batch call each, under its own name=)"
        )
    size = sum(_size(i, item) for i, item in enumerate(items))
    if size > megabytes * 1_000_000:
        raise InvalidArgumentError(
            f"the batch's requests are {size / 1_000_000:,.0f} MB of JSON, more than "
            f"{provider}'s batches take ({megabytes} MB); split them into smaller "
            "batches (one wf.ai.batch call each, under its own name=)"
        )


def _size(i: int, item: BatchItem) -> int:
    """The request's JSON in UTF-8 bytes; `InvalidArgumentError` naming it if its text
    cannot be encoded (a lone surrogate: the raw serializer error named no request)."""
    try:
        return len(to_json(item, exclude_none=True))
    except PydanticSerializationError as exc:
        raise InvalidArgumentError(
            f"batch request {i} (custom_id {item.custom_id!r}) cannot be sent as UTF-8 "
            f"JSON ({exc}); remove or replace the character it names (a lone surrogate "
            "such as '\\ud800')"
        ) from None
