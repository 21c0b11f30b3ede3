"""What `wf.ai` calls return; each is recorded as its step's result."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from ._types import Usage

__all__ = ["BatchOutcome", "BatchResult", "EmbedResult", "ObjectResult", "TextResult"]

T = TypeVar("T")


class _Priced(BaseModel):
    usage: Usage = Field(default_factory=Usage)
    #: None when no price is known for the model (never 0 for "unknown")
    cost_usd: float | None = None
    model: str = ""


class TextResult(_Priced):
    text: str
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = None
    request_id: str | None = None


class ObjectResult(_Priced, Generic[T]):
    object: T
    text: str = ""
    #: provider calls it took to get a valid object (each is in the call log)
    attempts: int = 1


class EmbedResult(_Priced):
    vectors: list[list[float]]

    @property
    def vector(self) -> list[float]:
        return self.vectors[0]


class BatchOutcome(_Priced):
    custom_id: str
    ok: bool
    text: str | None = None
    error: str | None = None


class BatchResult(BaseModel):
    batch_id: str
    provider: str
    items: dict[str, BatchOutcome]
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
