"""What a model call takes and gives back, the same for every provider.

Usage is normalised at the edge to one convention (genai-prices'):
`input_tokens` is the total input, cached reads and cache writes included;
`cached_input_tokens` and `cache_write_tokens` are parts of it.
`output_tokens` includes reasoning; `reasoning_tokens` is a part of it.
Audio tokens (OpenAI's audio models) are parts too: `input_audio_tokens` of the
input, `output_audio_tokens` of the output, priced at their own (higher) rates.
Anthropic reports input without its cache parts and OpenAI with them; each
adapter converts, so a sum over calls never mixes the two.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BatchItem",
    "BatchItemResult",
    "BatchStatus",
    "EmbedReply",
    "Message",
    "ModelReply",
    "TextRequest",
    "Usage",
]

Role = Literal["system", "user", "assistant", "tool"]


def is_count(value: Any) -> bool:
    """A token count as a server sends it: a number (not None, not a bool; some
    servers send 12.0), finite (a Python server's ``Infinity`` read as a count
    failed the billed call on an OverflowError)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def read_count(usage: dict[str, Any], *keys: str) -> int:
    """The first of `keys` that holds a count: a server that sends ``prompt_tokens:
    null`` beside ``input_tokens`` is told (`openai_usage_told`), so that count is read."""
    return next((int(usage[k]) for k in keys if is_count(usage.get(k))), 0)


def read_part(usage: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The first of `keys` that holds a details object; {} if none does. A gateway's
    ``"prompt_tokens_details": "n/a"`` failed the billed call on a bare AttributeError;
    a count in it that is no number (`read_count`) is left out the same way."""
    return next((usage[k] for k in keys if isinstance(usage.get(k), dict) and usage[k]), {})


def contradicts(usage: Usage) -> bool:
    """Whether a part of a count is above the count it is a part of (cache reads and
    writes, or audio, above the input; reasoning, or audio, above the output). Such a
    usage has no cost a careful bill can state: the part may be wrong (priced as
    told, 10 input tokens with 20 cached cost more than 10 uncached ones), or the
    whole may (a server that counts only the tokens it evaluated, its cache hits
    apart, under-tells the input). Capping the part at the whole, or leaving it
    out, bills a guess either way, so the cost is unknown (as genai-prices, which
    refuses such counts, has it) and the counts are logged as told."""
    return (
        usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens
        or usage.input_audio_tokens > usage.input_tokens
        or usage.reasoning_tokens > usage.output_tokens
        or usage.output_audio_tokens > usage.output_tokens
    )


class Usage(BaseModel):
    """Tokens of one call (or a sum of calls), in one convention for all providers."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    # the cache writes kept an hour (Anthropic's extended cache), a part of
    # `cache_write_tokens` priced higher than the 5-minute ones
    cache_write_1h_tokens: int = 0
    web_search_requests: int = 0  # Anthropic's server-side web searches, billed each
    # audio parts of the input and of the output (OpenAI's `prompt_tokens_details` and
    # `completion_tokens_details` `audio_tokens`), billed many times the text rate
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            input_audio_tokens=self.input_audio_tokens + other.input_audio_tokens,
            output_audio_tokens=self.output_audio_tokens + other.output_audio_tokens,
        )


class Message(BaseModel):
    """A chat message; `content` is text or the provider's content parts, untouched.

    A tool loop on OpenAI's wire format also needs the assistant's `tool_calls`
    and, on a ``tool`` message, the `tool_call_id` it answers (Anthropic keeps
    both inside `content` parts; its adapter turns these into them). Unset fields
    are left out of the request.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str | list[dict[str, Any]]
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class TextRequest(BaseModel):
    """One generation request, before a provider shapes it for its API.

    Checked here so a bad argument fails before any provider is called, whatever
    the provider would make of it: one message at least, a finite temperature in
    [0, 2] (the widest range providers take), at least one token."""

    messages: list[Message] = Field(min_length=1)
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    json_schema: dict[str, Any] | None = None  # generate_object: the schema asked for
    schema_name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the provider untouched

    @field_validator("options")
    @classmethod
    def _no_stream(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The SDK would hand back a stream, not an answer. `extra_body` is merged into
        the body as sent, so a ``stream`` in it is refused too: let through, the
        provider streamed, the answer read as "not JSON" was retried, each try billed."""
        extra = value.get("extra_body")
        if value.get("stream") or (isinstance(extra, dict) and extra.get("stream")):
            where = "extra_body's 'stream'" if not value.get("stream") else "'stream'"
            raise ValueError(
                "wf.ai does not stream: a call is one step that records the whole answer; "
                f"leave out {where}"
            )
        return value

    @field_validator("temperature", "max_tokens", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read True as 1
            raise ValueError("Input should be a number, not a bool")
        return value


class ModelReply(BaseModel):
    """What a generation gave back."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = None
    refusal: str | None = None  # why the model declined (OpenAI's `message.refusal`)
    usage: Usage = Field(default_factory=Usage)
    # False: the answer carried no usage (some OpenAI-compatible servers), so its
    # tokens, and its cost, are unknown rather than zero
    usage_reported: bool = True
    model: str = ""
    request_id: str | None = None
    service_tier: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class EmbedReply(BaseModel):
    vectors: list[list[float]]
    usage: Usage = Field(default_factory=Usage)
    usage_reported: bool = True  # as `ModelReply`'s
    model: str = ""
    request_id: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class BatchItem(BaseModel):
    """One request of a batch; `custom_id` keys its result."""

    custom_id: str
    request: TextRequest


class BatchStatus(BaseModel):
    """A provider batch's state: `state` is pending, done, failed, cancelled or expired.
    `error` is set on a poll whose read failed transiently: the state is not known
    and counts as pending until the next poll reads it. `reason` is why the provider
    failed the batch as a whole (OpenAI's ``errors``: an input file it refused at
    validation), for the run's error to say what to fix."""

    state: Literal["pending", "done", "failed", "cancelled", "expired"]
    provider_status: str
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    reason: str | None = None


class BatchItemResult(BaseModel):
    """One request's result. A failed one (`ok` False) with a `reply` was answered but
    its answer could not be read (a line not of the API's shape): it may have been
    billed, and `reply` holds only the usage its line told (`usage_reported` False
    if none), for the call log to price it or log its cost as unknown."""

    custom_id: str
    ok: bool
    reply: ModelReply | None = None
    error: str | None = None
