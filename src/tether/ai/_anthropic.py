"""Anthropic's Messages API through the official `anthropic` SDK
(``pip install -e '.[anthropic]'``).

Usage: Anthropic's `input_tokens` excludes cache reads and cache writes, so
the total input is ``input_tokens + cache_creation_input_tokens +
cache_read_input_tokens``; counting `input_tokens` alone would under-count a
cached prompt and price it wrong.

`generate_object` asks for the object as the input of a forced tool whose
input schema is the pydantic schema, Anthropic's documented way to get JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidArgumentError
from ._batch_limits import check_batch_size
from ._errors import ProviderError
from ._sdk import SDKProvider, _http_response
from ._types import (
    BatchItem,
    BatchItemResult,
    BatchStatus,
    EmbedReply,
    Message,
    ModelReply,
    TextRequest,
    Usage,
    contradicts,
    is_count,
    read_count,
    read_part,
)

__all__ = ["Anthropic", "anthropic_usage", "anthropic_usage_told"]

DEFAULT_MAX_TOKENS = 4096


def anthropic_usage(usage: dict[str, Any] | None) -> Usage:
    """Messages usage in tether's convention (input is the total, cache included)."""
    if not isinstance(usage, dict):  # none, or of no shape known: no counts told
        return Usage()
    fresh = read_count(usage, "input_tokens")
    read = read_count(usage, "cache_read_input_tokens")
    split = read_part(usage, "cache_creation")
    hour = read_count(split, "ephemeral_1h_input_tokens")
    # some gateways tell the writes only split by how long they are kept: their sum
    parts = hour + read_count(split, "ephemeral_5m_input_tokens")
    write = max(read_count(usage, "cache_creation_input_tokens"), parts)
    details = read_part(usage, "output_tokens_details")
    searches = read_count(read_part(usage, "server_tool_use"), "web_search_requests")
    return Usage(
        input_tokens=fresh + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(hour, write),
        web_search_requests=searches,
        output_tokens=read_count(usage, "output_tokens"),
        reasoning_tokens=read_count(details, "thinking_tokens")
        or read_count(details, "reasoning_tokens"),
    )


def anthropic_usage_told(usage: Any) -> bool:
    """Whether `usage` tells both the input and the output count: a count left out
    would price the call as free of those tokens, so its cost is unknown instead; so
    is that of counts that contradict each other (`contradicts`: thinking above the
    output; the input is the sum of its parts, so they cannot)."""
    told = isinstance(usage, dict) and all(
        is_count(usage.get(k)) for k in ("input_tokens", "output_tokens")
    )
    return told and not contradicts(anthropic_usage(usage))


# what Anthropic's message batches take as a request's custom_id
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_custom_ids(items: list[BatchItem]) -> None:
    """`InvalidArgumentError` naming the first custom_id outside ^[a-zA-Z0-9_-]{1,64}$:
    Anthropic refuses the whole batch over it (a proxy may take it and answer under
    another id), so it is refused before anything is sent."""
    for i, item in enumerate(items):
        if not CUSTOM_ID.fullmatch(item.custom_id):
            fixed = re.sub(r"[^a-zA-Z0-9_-]", "_", item.custom_id)[:64] or "_"
            raise InvalidArgumentError(
                f"batch request {i} has custom_id {item.custom_id!r}, which Anthropic's "
                "message batches refuse: a custom_id must match ^[a-zA-Z0-9_-]{1,64}$ "
                f"(1 to 64 letters, digits, '_' or '-'); rename it, e.g. {fixed!r}"
            )


class Anthropic(SDKProvider):
    """Anthropic's API. The key comes from `api_key` or ``$ANTHROPIC_API_KEY``.

    A Message Batch carries no metadata and its create takes no idempotency key,
    so a batch cannot be found again by the run and step that submitted it
    (it has no `batch_find`): a crash after Anthropic accepted a batch and
    before the submit step was recorded makes the retried step submit a second
    one, and the first is neither tracked nor cancelled (see the console).
    """

    name = "Anthropic"
    sdk_module = "anthropic"
    client_class = "AsyncAnthropic"
    request_id_header = "request-id"
    default_key_env: str | None = "ANTHROPIC_API_KEY"
    default_price_id: str | None = "anthropic"
    default_timeout = 600.0

    def _params(self, model: str, request: TextRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _messages(request.messages),
        }
        system = _system(request)
        if system:
            params["system"] = system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.stop:
            params["stop_sequences"] = request.stop
        if request.tools is not None:
            params["tools"] = request.tools
        if request.tool_choice is not None:
            params["tool_choice"] = request.tool_choice
        if request.json_schema is not None:
            name = request.schema_name or "answer"
            params["tools"] = [*params.get("tools", []), _schema_tool(name, request.json_schema)]
            params["tool_choice"] = {"type": "tool", "name": name}
        params.update(request.options)
        return params

    async def generate(self, model: str, request: TextRequest) -> ModelReply:
        params = self._params(model, request)
        raw, request_id = await self._post_json("/v1/messages", model, _answered, params)
        forced = request.schema_name or "answer" if request.json_schema is not None else None
        return self._read(model, lambda: _reply(raw, request_id, forced), raw)

    def _told(self, raw: Any, *, output: bool = True) -> Usage | None:
        usage = raw.get("usage") if isinstance(raw, dict) else None
        return anthropic_usage(usage) if anthropic_usage_told(usage) else None

    async def embed(self, model: str, inputs: list[str], options: dict[str, Any]) -> EmbedReply:
        raise ProviderError(
            "Anthropic has no embeddings API; embed with another provider "
            "(e.g. 'openai:text-embedding-3-small')"
        )

    # -- message batches ---------------------------------------------------------------

    def batch_check(self, items: list[BatchItem]) -> None:
        """Refuse a custom_id Anthropic's message batches do not take (`check_custom_ids`),
        and more than they hold (100,000 requests, 256 MB), before the batch is submitted."""
        check_custom_ids(items)
        check_batch_size(items, "Anthropic", 100_000, 256)

    async def batch_submit(self, model: str, items: list[BatchItem]) -> str:
        """Create the batch (no tag: a message batch keeps no metadata, see the class)."""
        check_custom_ids(items)
        requests = [
            {"custom_id": item.custom_id, "params": self._params(model, item.request)}
            for item in items
        ]
        batch = await self._call(self._clients.get().messages.batches.create, requests=requests)
        return str(batch.id)

    async def batch_status(self, batch_id: str) -> BatchStatus:
        """Ended is done, unless requests of it expired or were cancelled: then it ended
        as OpenAI's would (expired, cancelled; told by the requests' own words), its
        completed results still there."""
        batch = await self._call(self._clients.get().messages.batches.retrieve, batch_id)
        status = batch.processing_status
        counts = batch.request_counts.model_dump() if batch.request_counts else {}
        state = "pending"
        if status == "ended":
            state = "done"
            if counts.get("expired"):
                state, status = "expired", "expired"
            elif counts.get("canceled"):
                state, status = "cancelled", "canceled"
        return BatchStatus(state=state, provider_status=status, counts=counts)  # type: ignore[arg-type]

    async def batch_results(self, batch_id: str) -> list[BatchItemResult]:
        """The results, read line by line as OpenAI's (`_batch_lines`): the SDK's stream
        stopped at a line that is not JSON, every line after it lost."""
        client = self._clients.get()
        batch = await self._call(client.messages.batches.retrieve, batch_id)
        if not batch.results_url:
            raise ProviderError(
                f"Anthropic has no results for batch {batch_id} yet (it has not ended); "
                "fetched again",
                retryable=True,
            )
        response = await self._call(
            client.get,
            batch.results_url,
            cast_to=_http_response(self.sdk()),
            options={"headers": {"Accept": "application/binary"}},
        )
        return self._batch_lines(response.text, _batch_line)

    def _line_body(self, line: dict[str, Any]) -> Any:
        result = line.get("result")
        return result.get("message") if isinstance(result, dict) else None

    async def batch_cancel(self, batch_id: str) -> None:
        await self._call(self._clients.get().messages.batches.cancel, batch_id)


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation in Messages' shape. A tool loop written in OpenAI's (an
    assistant's `tool_calls`, ``tool`` messages with the `tool_call_id` they answer)
    becomes Anthropic's ``tool_use`` and ``tool_result`` parts, the results of one
    turn in one user message: sent as it was, Anthropic refused it (400, "role:
    Input should be 'user' or 'assistant'"), saying nothing of how to write it."""
    said: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = said[-1] if said else None
            if last is not None and last.get("_results"):
                last["content"].append(result)
            else:
                said.append({"role": "user", "content": [result], "_results": True})
        elif m.tool_calls:
            text = (
                [{"type": "text", "text": m.content}] if isinstance(m.content, str) else m.content
            )
            uses = [_tool_use(c) for c in m.tool_calls]
            said.append(
                {"role": m.role, "content": [p for p in text if p.get("text") != ""] + uses}
            )
        else:
            said.append(m.model_dump(exclude_none=True))
    return [{k: v for k, v in m.items() if k != "_results"} for m in said]


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call as a ``tool_use`` part (one already in that shape as it is)."""
    function = call.get("function")
    if call.get("type") == "tool_use" or not isinstance(function, dict):
        return call
    arguments = function.get("arguments") or "{}"
    try:
        given = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        given = {"arguments": arguments}  # as the model wrote it: Anthropic takes an object
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": given}


def _system(request: TextRequest) -> str | list[dict[str, Any]] | None:
    """The system prompt: `system` and the system messages, text joined by blank
    lines; content parts (a ``cache_control`` on a block, to cache the prompt) kept as
    the text blocks Anthropic takes, never written out as a Python list's repr."""
    parts = [m.content for m in request.messages if m.role == "system"]
    if request.system is not None:
        parts.insert(0, request.system)
    if not parts:
        return None
    if all(isinstance(p, str) for p in parts):
        return "\n\n".join(str(p) for p in parts)
    blocks: list[dict[str, Any]] = []
    for part in parts:
        blocks += [{"type": "text", "text": part}] if isinstance(part, str) else part
    return blocks


def _answered(raw: dict[str, Any]) -> bool:
    return raw.get("type") != "error" and raw.get("content") is not None


def _schema_tool(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": "Answer with this object.", "input_schema": schema}


def _reply(
    raw: dict[str, Any], request_id: str | None, forced_tool: str | None = None
) -> ModelReply:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in raw.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            if forced_tool is not None and block.get("name") == forced_tool:
                texts.append(json.dumps(block.get("input")))
            else:
                tool_calls.append(block)
    told = raw.get("usage")
    usage: dict[str, Any] = told if isinstance(told, dict) else {}
    return ModelReply(
        text="".join(texts),
        tool_calls=tool_calls,
        finish_reason=raw.get("stop_reason"),
        usage=anthropic_usage(usage),
        usage_reported=anthropic_usage_told(usage),
        model=raw.get("model") or "",
        request_id=request_id or raw.get("id"),
        service_tier=usage.get("service_tier"),
        raw={k: v for k, v in raw.items() if k != "content"},
    )


def _batch_line(line: dict[str, Any], custom_id: str) -> BatchItemResult:
    """A line of the results: ``{custom_id, result: {type: succeeded | errored |
    canceled | expired, message | error}}``. A succeeded one whose message holds no
    answer (an error, no content) raises ValueError: read as one, it was an empty
    answer."""
    result = line.get("result") or {}
    if result.get("type") == "succeeded":
        message = result["message"]
        if not _answered(message):
            raise ValueError("a succeeded result without a message's content")
        return BatchItemResult(custom_id=custom_id, ok=True, reply=_reply(message, None))
    error = result.get("error") or {"type": result.get("type")}
    return BatchItemResult(custom_id=custom_id, ok=False, error=json.dumps(error))
