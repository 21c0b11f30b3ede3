"""A 200 whose body is JSON but not of the API's shape, against the real local server:
usage parts of another shape are left out (the answer stands, its cost told or unknown),
an answer of another shape is a retried ProviderError naming provider and model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, FakeClock, ai

from ._server import ProviderServer
from .test_provider_faults import _asker


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        local=ai.OpenAICompatible(base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
        prices=ai.Prices({"m": {"input_per_million": 1.0, "output_per_million": 1.0}}),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _chat(**over: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": "ok"}
    body = {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    return {**body, **over}


def _message(**over: Any) -> dict[str, Any]:
    body = {
        "id": "m1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "ok"}],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    return {**body, **over}


USAGE_PARTS = {
    "prompt_tokens_details": "n/a",
    "completion_tokens_details": {"reasoning_tokens": "x"},
}
# a Python server's json.dumps writes an infinite float as Infinity, which json reads back
ENDLESS = {
    "prompt_tokens_details": {"cached_tokens": float("inf")},
    "completion_tokens_details": {"reasoning_tokens": float("-inf")},
}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("local:m", _chat(usage={"prompt_tokens": 10, "completion_tokens": 5, **USAGE_PARTS})),
        ("local:m", _chat(usage={"prompt_tokens": 10, "completion_tokens": 5, **ENDLESS})),
        (
            "anthropic:m",
            _message(usage={"input_tokens": 10, "output_tokens": 5, "cache_creation": "n/a"}),
        ),
    ],
)
async def test_usage_details_of_another_shape_leave_the_answer_and_its_counts(
    app: App, server: ProviderServer, model: str, body: dict[str, Any]
) -> None:
    server.answer_next(200, body)
    done = await app.arun(_asker(app, model), workflow_id="d1")
    assert done.value == "ok"
    (call,) = await app.alist_ai_calls("d1")
    assert (call.input_tokens, call.output_tokens, call.cost_micro_usd) == (10, 5, 15)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("local:m", _chat(choices=[None])),
        ("local:m", _chat(choices=[{"message": "hi"}])),
        ("local:m", _chat(usage=[10, 5])),
        ("anthropic:m", _message(content=[None])),
        ("anthropic:m", _message(content="ok")),
    ],
)
async def test_an_answer_of_another_shape_is_a_retried_provider_error(
    app: App, server: ProviderServer, model: str, body: dict[str, Any]
) -> None:
    server.answer_next(200, body)
    server.queue_chat("after")
    server.queue_message("after")
    done = await app.arun(_asker(app, model), workflow_id="s1")
    calls = await app.alist_ai_calls("s1")
    if body.get("usage") == [10, 5]:  # only the usage is odd: the answer stands, cost unknown
        assert done.value == "ok" and calls[0].cost_micro_usd is None
        return
    assert done.value == "after"
    failed, answered = calls
    said = failed.error or ""
    assert "not of its API's shape" in said and " model m " in said
    assert answered.error is None
