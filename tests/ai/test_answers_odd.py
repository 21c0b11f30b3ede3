"""A user's walk through wf.ai against the real local server: usage a price catalogue
refuses, and structured answers that come back empty, refused or cut short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer
from .test_provider_faults import _asker


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    """OpenAI and Anthropic priced from genai-prices, as a user gets them."""
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


class Verdict(BaseModel):
    label: str


def _chat(usage: Any, content: str | None = "ok", finish: str = "stop", **said: Any) -> Any:
    message = {"role": "assistant", "content": content, **said}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _message(stop_reason: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }


def _object_flow(app: App, model: str, **kwargs: Any) -> Any:
    @app.workflow(name=f"verdict-{model}")
    async def verdict(wf: Workflow) -> str:
        got = await wf.ai.generate_object(model, Verdict, prompt="triage", **kwargs)
        return got.object.label

    return verdict


@pytest.mark.parametrize(
    "usage",
    [
        # cache hits above the prompt (a server counting only the tokens it evaluated)
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 50},
        },
        # no input count at all, its cache hits told
        {"completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 50}},
    ],
)
async def test_usage_genai_prices_refuses_is_logged_at_unknown_cost(
    app: App, server: ProviderServer, usage: dict[str, Any]
) -> None:
    """genai-prices raised ValueError on these counts after the provider had answered
    (billed): the run failed with genai-prices' error and the call was never logged."""
    server.answer_next(200, _chat(usage))
    done = await app.arun(_asker(app, "openai:gpt-4.1-mini"), workflow_id="u1")
    assert done.value == "ok"
    (call,) = await app.alist_ai_calls("u1")
    assert call.cost_micro_usd is None and call.error is None
    assert (call.cached_input_tokens, call.output_tokens) == (50, 5)


async def test_an_empty_object_answer_from_anthropic_is_asked_again(
    app: App, server: ProviderServer
) -> None:
    """The empty answer was sent back as an assistant message with empty content, which
    Anthropic refuses (400): the run failed on the second attempt, not for the schema."""
    server.answer_next(200, _message("end_turn", []))
    server.queue_message("", tool_input={"label": "bug"})
    done = await app.arun(_object_flow(app, "anthropic:claude-sonnet-4-5"), workflow_id="e1")
    assert done.value == "bug"
    *_, again = [b for p, b in server.state.bodies if p == "/v1/messages"]
    assert all(m["content"] not in ("", []) for m in again["messages"])
    assert "empty" in again["messages"][-1]["content"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_refused_object_names_the_refusal(
    app: App, server: ProviderServer, provider: str
) -> None:
    """A refusal (OpenAI's: content null, `refusal` said; Anthropic's: stop_reason
    "refusal") failed as "Invalid JSON: ...", never saying the model refused."""
    said = "I can't help with that."
    for _ in range(2):
        if provider == "openai":
            refused = _chat({"prompt_tokens": 9, "completion_tokens": 4}, None, refusal=said)
        else:
            refused = _message("refusal", [{"type": "text", "text": said}])
        server.answer_next(200, refused)
    with pytest.raises(ai.ObjectValidationError) as caught:
        await app.arun(_object_flow(app, f"{provider}:m", attempts=2), workflow_id="r1")
    assert "refused" in str(caught.value) and "I can't help with that." in str(caught.value)
    assert len(await app.alist_ai_calls("r1")) == 2  # each billed attempt logged


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_object_cut_at_max_tokens_says_so(
    app: App, server: ProviderServer, provider: str
) -> None:
    """A JSON answer cut off at max_tokens failed as "EOF while parsing a string",
    not saying that max_tokens was the cause nor what to raise."""
    for _ in range(2):
        if provider == "openai":
            cut = _chat({"prompt_tokens": 9, "completion_tokens": 5}, '{"label": "bu', "length")
        else:  # a forced tool's input cut short comes back as far as it got
            cut = _message("max_tokens", [{"type": "tool_use", "id": "t", "name": "Verdict",
                                           "input": {}}])  # fmt: skip
        server.answer_next(200, cut)
    flow = _object_flow(app, f"{provider}:m", attempts=2, max_tokens=5)
    with pytest.raises(ai.ObjectValidationError) as caught:
        await app.arun(flow, workflow_id="t1")
    assert "max_tokens=5" in str(caught.value)


async def test_content_sent_as_parts_is_read_as_its_text(app: App, server: ProviderServer) -> None:
    """Mistral's reasoning models answer with content parts (thinking, then text): the
    call failed on "ModelReply text: Input should be a valid string" after the provider
    billed it, and no row was logged."""
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
        {"type": "text", "text": "hel"},
        {"type": "text", "text": "lo"},
    ]
    server.answer_next(200, _chat({"prompt_tokens": 10, "completion_tokens": 5}, parts))
    done = await app.arun(_asker(app, "openai:gpt-4.1-mini"), workflow_id="p1")
    assert done.value == "hello"
    (call,) = await app.alist_ai_calls("p1")
    assert call.cost_micro_usd is not None and call.output_tokens == 5
