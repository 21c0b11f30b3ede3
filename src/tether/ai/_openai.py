"""OpenAI, and any OpenAI-compatible endpoint (Ollama, vLLM, OpenRouter), through
the official `openai` SDK (``pip install -e '.[openai]'``).

Usage: Chat Completions' `prompt_tokens` already includes cached tokens and
`completion_tokens` includes reasoning, which is tether's convention, so the
numbers are taken as they are; OpenAI-compatible servers that differ (DeepSeek's
cache hits, Gemini's reasoning outside completion_tokens) are read into it.
Audio models tell their audio tokens as parts of both counts (`audio_tokens` in
the details), read as such so they are priced at the audio rates.
"""

from __future__ import annotations

import array
import base64
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ._batch_limits import check_batch_size
from ._port import tagged
from ._sdk import SDKProvider
from ._types import (
    BatchItem,
    BatchItemResult,
    BatchStatus,
    EmbedReply,
    ModelReply,
    TextRequest,
    Usage,
    contradicts,
    is_count,
)
from ._types import read_count as _count
from ._types import read_part as _part

__all__ = ["OpenAI", "OpenAICompatible", "openai_usage", "openai_usage_told"]

_BATCH_STATES = {
    "validating": "pending",
    "in_progress": "pending",
    "finalizing": "pending",
    "completed": "done",
    "failed": "failed",
    "expired": "expired",
    "cancelling": "pending",  # its partial results come when it is "cancelled"
    "cancelled": "cancelled",
}
_FIND_PAGES = 10  # batches a retried submit looks through for its tag: 10 x 100, newest first


def openai_usage(usage: dict[str, Any] | None) -> Usage:
    """Chat Completions (or Responses, or embeddings) usage in tether's convention."""
    if not isinstance(usage, dict):  # none, or of no shape known: no counts told
        return Usage()
    prompt = _count(usage, "prompt_tokens", "input_tokens")
    output = _count(usage, "completion_tokens", "output_tokens")
    in_details = _part(usage, "prompt_tokens_details", "input_tokens_details")
    out_details = _part(usage, "completion_tokens_details", "output_tokens_details")
    # DeepSeek (OpenAI-compatible) tells its cache hits, a part of prompt_tokens, in
    # its own field, and no prompt_tokens_details
    cached = _count(in_details, "cached_tokens") or _count(usage, "prompt_cache_hit_tokens")
    reasoning = _count(out_details, "reasoning_tokens")
    # Gemini's OpenAI-compatible answers (and gateways in front of it) leave the
    # reasoning out of completion_tokens, their total_tokens telling so: it is output
    if reasoning and usage.get("total_tokens") == int(prompt) + int(output) + reasoning:
        output = int(output) + reasoning
    return Usage(
        input_tokens=int(prompt),
        cached_input_tokens=int(cached),
        output_tokens=int(output),
        reasoning_tokens=reasoning,
        input_audio_tokens=_count(in_details, "audio_tokens"),
        output_audio_tokens=_count(out_details, "audio_tokens"),
    )


def openai_usage_told(usage: Any, *, output: bool = True) -> bool:
    """Whether `usage` tells the input count (and, for a generation, the output):
    a block without them (only `total_tokens`, or a count left out or null, as some
    OpenAI-compatible servers send) would price the call as free of those tokens,
    so its cost is unknown instead; so is that of counts that contradict each other
    (`contradicts`: cached or audio tokens above the prompt's)."""
    if not isinstance(usage, dict):
        return False
    told = _counted(usage, "prompt_tokens", "input_tokens")
    told = told and (not output or _counted(usage, "completion_tokens", "output_tokens"))
    return told and not contradicts(openai_usage(usage))


def _counted(usage: dict[str, Any], *keys: str) -> bool:
    """Whether one of `keys` holds a count (a number, as some servers send 12.0)."""
    return any(is_count(usage.get(k)) for k in keys)


class OpenAI(SDKProvider):
    """The OpenAI API. The key comes from `api_key` or ``$OPENAI_API_KEY``."""

    name = "OpenAI"
    sdk_module = "openai"
    client_class = "AsyncOpenAI"
    default_key_env: str | None = "OPENAI_API_KEY"
    default_price_id: str | None = "openai"
    default_timeout = 120.0
    # OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) refuse `max_tokens` (400
    # "Use 'max_completion_tokens' instead"); every chat model takes this one
    max_tokens_param = "max_completion_tokens"

    # -- generation -------------------------------------------------------------------

    def _body(self, model: str, request: TextRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system is not None:
            messages.append({"role": "system", "content": request.system})
        messages += [m.model_dump(exclude_none=True) for m in request.messages]
        body: dict[str, Any] = {"model": model, "messages": messages}
        for key in ("temperature", "max_tokens", "stop", "tools", "tool_choice"):
            value = getattr(request, key)
            if value is not None:
                body[self.max_tokens_param if key == "max_tokens" else key] = value
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name or "answer",
                    "schema": request.json_schema,
                },
            }
        body.update(request.options)
        return body

    async def generate(self, model: str, request: TextRequest) -> ModelReply:
        body = self._body(model, request)
        raw, request_id = await self._post_json("/chat/completions", model, _holds("choices"), body)
        return self._read(model, lambda: _reply(raw, request_id), raw)

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any]) -> EmbedReply:
        # as the SDK asks: vectors as base64 float32, under half the bytes of JSON floats
        body = {"model": model, "input": inputs, "encoding_format": "base64", **options}
        raw, request_id = await self._post_json(
            "/embeddings", model, _holds("data"), body, output=False
        )
        return self._read(model, lambda: _embedded(raw, request_id, model), raw, output=False)

    def _told(self, raw: Any, *, output: bool = True) -> Usage | None:
        usage = raw.get("usage") if isinstance(raw, dict) else None
        return openai_usage(usage) if openai_usage_told(usage, output=output) else None

    # -- batches --------------------------------------------------------------------------

    def batch_check(self, items: list[BatchItem]) -> None:
        """Refuse more than OpenAI's batches hold (50,000 requests, a 200 MB file) before
        anything is uploaded: it took the file and failed the batch at validation."""
        check_batch_size(items, "OpenAI", 50_000, 200)

    async def batch_submit(
        self, model: str, items: list[BatchItem], tag: dict[str, str] | None = None
    ) -> str:
        """Upload the requests (a JSONL file in UTF-8) and create the batch, `tag` as its
        metadata."""
        client = self._clients.get()
        lines = [
            json.dumps(
                {
                    "custom_id": item.custom_id,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": self._body(model, item.request),
                },
                ensure_ascii=False,  # UTF-8 as counted (`batch_check`), not 6-byte escapes
            )
            for item in items
        ]
        upload = await self._call(
            client.files.create,
            file=("batch.jsonl", ("\n".join(lines) + "\n").encode()),
            purpose="batch",
        )
        batch = await self._call(
            client.batches.create,
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            **({"metadata": tag} if tag else {}),
        )
        return str(batch.id)

    async def batch_find(self, tag: dict[str, str], since: datetime | None = None) -> list[str]:
        """Recent batches submitted with `tag` (`tagged`; the Batches API has no filter,
        so the newest 1000 are listed)."""
        client = self._clients.get()
        found: list[str] = []
        after: dict[str, str] = {}
        for _ in range(_FIND_PAGES):
            page = await self._call(client.batches.list, limit=100, **after)
            found += [
                str(b.id)
                for b in page.data
                if tagged(tag, b.metadata, datetime.fromtimestamp(b.created_at or 0, UTC), since)
            ]
            if not page.data or page.has_more is False:
                break
            after = {"after": str(page.data[-1].id)}
        return found

    async def batch_status(self, batch_id: str) -> BatchStatus:
        batch = await self._call(self._clients.get().batches.retrieve, batch_id=batch_id)
        state = _BATCH_STATES.get(batch.status, "pending")
        if state == "done" and not batch.output_file_id and not batch.error_file_id:
            state = "pending"  # completed, but the results file is not there yet
        counts = batch.request_counts.model_dump() if batch.request_counts else {}
        return BatchStatus(
            state=state,  # type: ignore[arg-type]
            provider_status=batch.status,
            counts=counts,
            reason=_batch_errors(batch) if state == "failed" else None,
        )

    async def batch_results(self, batch_id: str) -> list[BatchItemResult]:
        client = self._clients.get()
        batch = await self._call(client.batches.retrieve, batch_id=batch_id)
        found: list[BatchItemResult] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._call(client.files.content, file_id=file_id)
            found += self._batch_lines(content.text, _batch_line)
        return found

    def _line_body(self, line: dict[str, Any]) -> Any:
        response = line.get("response")
        return response.get("body") if isinstance(response, dict) else None

    async def batch_cancel(self, batch_id: str) -> None:
        await self._call(self._clients.get().batches.cancel, batch_id=batch_id)


class OpenAICompatible(OpenAI):
    """An OpenAI-compatible endpoint at `base_url` (Ollama, vLLM, OpenRouter, ...).

    No key is required unless `api_key_env` names one; prices come only from
    your `Prices` table unless `price_id` names a provider genai-prices knows.
    """

    name = "OpenAICompatible"
    default_key_env = None
    default_price_id = None
    max_tokens_param = "max_tokens"  # what Ollama, vLLM and gateways all take

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float | None = None,
        price_id: str | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            api_key_env=api_key_env,
            price_id=price_id,
        )

    def check(self) -> None:
        if self.api_key_env is not None:
            super().check()

    def batch_check(self, items: list[BatchItem]) -> None:
        """No check: a compatible server's batch limits are its own, not OpenAI's."""


def _vector(embedding: Any) -> list[float]:
    """A vector as sent: a list of floats, or base64 of little-endian float32s (what
    was asked for; servers that ignore the ask send the list)."""
    if not isinstance(embedding, str):
        return list(embedding)
    floats = array.array("f", base64.b64decode(embedding))
    if sys.byteorder == "big":
        floats.byteswap()
    return floats.tolist()


def _holds(key: str) -> Callable[[dict[str, Any]], bool]:
    """An answer is one whose `key` (its choices, its vectors) is not empty."""
    return lambda raw: bool(raw.get(key))


def _reply(raw: dict[str, Any], request_id: str | None) -> ModelReply:
    choice = (raw.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return ModelReply(
        text=_text(message.get("content")),
        tool_calls=message.get("tool_calls") or [],
        finish_reason=choice.get("finish_reason"),
        refusal=message.get("refusal") or None,
        usage=openai_usage(raw.get("usage")),
        usage_reported=openai_usage_told(raw.get("usage")),
        model=raw.get("model") or "",
        request_id=request_id or raw.get("id"),
        service_tier=raw.get("service_tier"),
        raw={k: v for k, v in raw.items() if k != "choices"},
    )


def _text(content: Any) -> str:
    """The answer's text. Some OpenAI-compatible servers (Mistral's reasoning models)
    send content as parts, ``[{"type": "thinking", ...}, {"type": "text", "text": ...}]``:
    its text parts, joined (the thinking is no answer). Taken as it came, the call
    failed on tether's own "ModelReply text: Input should be a valid string" after the
    provider billed it, and was never logged."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(str(p.get("text") or "") for p in parts)
    return json.dumps(content)  # no shape a server is known to send: kept as it came


def _batch_errors(batch: Any) -> str | None:
    """Why OpenAI failed a batch as a whole (its ``errors``: an input file refused at
    validation, each with its code and line), up to five; None if it said nothing."""
    errors = getattr(batch, "errors", None)
    said = []
    for error in (getattr(errors, "data", None) or [])[:5]:
        where = f" (line {error.line})" if getattr(error, "line", None) is not None else ""
        code = f"{error.code}: " if getattr(error, "code", None) else ""
        said.append(f"{code}{getattr(error, 'message', None) or 'no message'}{where}")
    return "; ".join(said) or None


def _embedded(raw: dict[str, Any], request_id: str | None, model: str) -> EmbedReply:
    rows = sorted(raw["data"], key=lambda d: d["index"])
    return EmbedReply(
        vectors=[_vector(r["embedding"]) for r in rows],
        usage=openai_usage(raw.get("usage")),
        usage_reported=openai_usage_told(raw.get("usage"), output=False),
        model=raw.get("model") or model,
        request_id=request_id,
        raw={k: v for k, v in raw.items() if k != "data"},
    )


def _batch_line(line: dict[str, Any], custom_id: str) -> BatchItemResult:
    """A line of a results file: ``{custom_id, response: {status_code, request_id,
    body}, error}``. A body of a 200 that holds no answer (an error inside it, no
    choices) raises ValueError: it is no result, and read as one it was an empty
    answer."""
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code", 200) >= 400:
        error = line.get("error") or (response.get("body") or {}).get("error") or response
        return BatchItemResult(custom_id=custom_id, ok=False, error=json.dumps(error))
    body = response.get("body")
    if not isinstance(body, dict) or not body.get("choices"):
        said = body.get("error") if isinstance(body, dict) else None
        raise ValueError(f"a 200 without choices{f' (error: {said})' if said else ''}")
    return BatchItemResult(
        custom_id=custom_id, ok=True, reply=_reply(body, response.get("request_id"))
    )
