"""`FakeModel`: a scripted provider for tests and demos (no network, deterministic).

It answers from a list of replies in order (or a function of the request),
reports usage (given, or counted as one token per four characters), embeds
by hashing, and runs batches in memory. `calls` records what it was asked,
so a test can assert that a replay asked nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidArgumentError
from ._errors import ProviderError
from ._port import tagged
from ._types import (
    BatchItem,
    BatchItemResult,
    BatchStatus,
    EmbedReply,
    ModelReply,
    TextRequest,
    Usage,
)

__all__ = ["FakeModel"]

Reply = str | dict[str, Any] | ModelReply | BaseException
Script = Sequence[Reply] | Callable[[str, TextRequest], Reply]


class FakeModel:
    """A provider that answers from a script.

    `replies` is a list (one per call, in order; an exception in it is
    raised) or a function ``(model, request) -> reply``; a dict reply is
    returned as JSON text (for `generate_object`). `usage` fixes the usage of
    every call; otherwise it is counted from the text. `batch_polls` is how
    many status polls a batch stays pending.
    """

    name = "FakeModel"
    price_id: str | None = None

    def __init__(
        self,
        replies: Script = (),
        *,
        usage: Usage | None = None,
        embed_dims: int = 8,
        batch_polls: int = 1,
    ) -> None:
        if not callable(replies) and isinstance(replies, str | bytes):
            raise InvalidArgumentError("FakeModel replies must be a list of replies, not a str")
        self._script = replies
        self._next = 0
        self.usage = usage
        self.embed_dims = embed_dims
        self.batch_polls = batch_polls
        self.calls: list[tuple[str, TextRequest]] = []
        self._batches: dict[str, tuple[str, list[BatchItem], int]] = {}
        # what each batch was submitted with, and when
        self._tags: dict[str, tuple[dict[str, str], datetime]] = {}
        self._cancelled: set[str] = set()
        self._ids = itertools.count(1)
        # batch ids unique across instances and processes: the call log keeps one row per
        # (batch id, custom_id), so a second script run on the same database, its ids
        # from 1 again, had its batch's calls dropped (no usage, no spend)
        self._batch_prefix = secrets.token_hex(4)

    def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _scripted(self, model: str, request: TextRequest) -> Reply:
        if callable(self._script):
            return self._script(model, request)
        if not self._script:
            last = next((m for m in reversed(request.messages) if m.role == "user"), None)
            return f"fake reply to: {last.content if last else ''}"
        if self._next >= len(self._script):
            raise InvalidArgumentError(
                f"FakeModel has no scripted reply left ({len(self._script)} given, call "
                f"{self._next + 1} made); add replies or pass a function"
            )
        reply = self._script[self._next]
        self._next += 1
        return reply

    def _answer(self, model: str, request: TextRequest) -> ModelReply:
        self.calls.append((model, request))
        reply = self._scripted(model, request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, ModelReply):
            return reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        prompt = sum(len(str(m.content)) for m in request.messages) + len(request.system or "")
        usage = self.usage or Usage(
            input_tokens=max(1, prompt // 4), output_tokens=max(1, len(text) // 4)
        )
        return ModelReply(
            text=text,
            finish_reason="stop",
            usage=usage,
            model=model,
            request_id=f"fake-{len(self.calls)}",
        )

    async def generate(self, model: str, request: TextRequest) -> ModelReply:
        return self._answer(model, request)

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any]) -> EmbedReply:
        vectors = [_vector(text, self.embed_dims) for text in inputs]
        tokens = sum(max(1, len(t) // 4) for t in inputs)
        usage = self.usage or Usage(input_tokens=tokens)  # fixed for every call, as said
        return EmbedReply(vectors=vectors, usage=usage, model=model)

    async def batch_submit(
        self, model: str, items: list[BatchItem], tag: dict[str, str] | None = None
    ) -> str:
        batch_id = f"fakebatch-{self._batch_prefix}-{next(self._ids)}"
        self._batches[batch_id] = (model, list(items), 0)
        self._tags[batch_id] = (dict(tag or {}), datetime.now(UTC))
        return batch_id

    async def batch_find(self, tag: dict[str, str], since: datetime | None = None) -> list[str]:
        """The batches submitted with `tag` (`tagged`), newest first."""
        mine = reversed(self._tags.items())
        return [b for b, (t, at) in mine if t and tagged(tag, t, at, since)]

    async def batch_status(self, batch_id: str) -> BatchStatus:
        model, items, polls = self._batch(batch_id)
        if batch_id in self._cancelled:
            return BatchStatus(state="cancelled", provider_status="cancelled")
        self._batches[batch_id] = (model, items, polls + 1)
        done = polls + 1 > self.batch_polls
        return BatchStatus(
            state="done" if done else "pending",
            provider_status="done" if done else "pending",
            counts={"total": len(items)},
        )

    async def batch_results(self, batch_id: str) -> list[BatchItemResult]:
        model, items, _ = self._batch(batch_id)
        if batch_id in self._cancelled:
            return []  # cancelled before it ran any
        found = []
        for item in items:
            try:
                found.append(
                    BatchItemResult(
                        custom_id=item.custom_id, ok=True, reply=self._answer(model, item.request)
                    )
                )
            except ProviderError as exc:
                found.append(BatchItemResult(custom_id=item.custom_id, ok=False, error=str(exc)))
        return found

    async def batch_cancel(self, batch_id: str) -> None:
        """Cancelled with none of its requests run (it answers only when collected)."""
        if batch_id in self._batches:
            self._cancelled.add(batch_id)

    def _batch(self, batch_id: str) -> tuple[str, list[BatchItem], int]:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise ProviderError(f"FakeModel has no batch {batch_id!r}", status=404) from None


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(dims)]
