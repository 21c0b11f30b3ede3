"""A new user's walk through wf.ai, against the real local server: a 200 whose body is
not even UTF-8, and usage in the less common shapes servers send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, FakeClock, ai

from ._server import ProviderServer
from .test_provider_faults import _asker

PRICES = ai.Prices(
    {
        "local:m": {"input_per_million": 1.0, "output_per_million": 2.0},
        "anthropic:m": {
            "input_per_million": 1.0,
            "output_per_million": 2.0,
            "cache_write_per_million": 10.0,
            "cache_write_1h_per_million": 20.0,
        },
    }
)


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        local=ai.OpenAICompatible(base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
        prices=PRICES,
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "body", [b"\x89PNG\r\n\x1a\n\x00", "<html>d\xe9j\xe0 vu</html>".encode("latin-1")]
)
async def test_a_200_body_that_is_not_utf8_is_a_retried_provider_error(
    app: App, server: ProviderServer, provider: str, body: bytes
) -> None:
    server.answer_next(200, body)
    server.queue_chat("after the page")
    server.queue_message("after the page")
    model = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:m"}[provider]
    done = await app.arun(_asker(app, model), workflow_id="u1")
    assert done.value == "after the page"
    failed, answered = await app.alist_ai_calls("u1")
    assert "not JSON" in (failed.error or "") and model.split(":")[1] in (failed.error or "")
    assert answered.error is None


def _chat(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


async def test_a_null_prompt_tokens_beside_input_tokens_counts_the_input(
    app: App, server: ProviderServer
) -> None:
    usage = {"prompt_tokens": None, "input_tokens": 1000, "completion_tokens": 500}
    server.answer_next(200, _chat(usage))
    await app.arun(_asker(app, "local:m"), workflow_id="n1")
    (call,) = await app.alist_ai_calls("n1")
    assert (call.input_tokens, call.output_tokens) == (1000, 500)
    assert call.cost_micro_usd == 2000  # 1000 x 1.0 + 500 x 2.0, not the output alone


async def test_anthropic_cache_writes_told_only_split_by_duration_are_counted(
    app: App, server: ProviderServer
) -> None:
    usage = {
        "input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 50,
    }
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": usage,
    }
    server.answer_next(200, body)
    await app.arun(_asker(app, "anthropic:m"), workflow_id="a1")
    (call,) = await app.alist_ai_calls("a1")
    assert (call.input_tokens, call.cache_write_tokens) == (1600, 1500)
    # 100 x 1 + 1000 x 10 + 500 x 20 + 50 x 2
    assert call.cost_micro_usd == 20200
