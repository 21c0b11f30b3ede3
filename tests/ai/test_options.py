"""What a call asks reaches the provider's wire as it was given: `temperature`, and
`options=` the SDK has no keyword for (OpenRouter's `provider`, vLLM's `top_k`,
a field newer than the SDK), sent in the request body untouched, through the
official SDKs to a real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer

ROUTING = {"provider": {"sort": "throughput", "require_parameters": True}}


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        router=ai.OpenAICompatible(base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _asker(app: App) -> object:
    @app.workflow(name="ask")
    async def ask(wf: Workflow, call: dict[str, Any]) -> str:
        answer = await wf.ai.generate_text(
            call["model"], prompt="hi", temperature=0.2, options=call["options"]
        )
        return answer.text

    return ask


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("router:meta-llama/llama-3.1-8b", {**ROUTING, "top_k": 40, "min_p": 0.05}),
        ("router:meta-llama/llama-3.1-8b", {"seed": 7}),  # one the SDK has a keyword for
        ("anthropic:claude-sonnet-4-5", {"top_k": 5, "a_newer_field": {"x": [1, 2]}}),
    ],
)
async def test_temperature_and_options_reach_the_wire_untouched(
    app: App, server: ProviderServer, model: str, options: dict[str, Any]
) -> None:
    ask = _asker(app)
    done = await app.arun(ask, {"model": model, "options": options}, workflow_id="o1")  # type: ignore[arg-type]
    assert done.value is not None and done.value.startswith("echo"), done.record.last_error
    [(_, sent)] = server.state.bodies
    assert sent["temperature"] == 0.2
    assert {k: sent[k] for k in options} == options
    assert "extra_body" not in sent


async def test_the_sdks_request_keywords_in_options_act_as_the_sdk_has_them(
    app: App, server: ProviderServer
) -> None:
    """`extra_body` is merged into the body and `extra_headers`/`extra_query` are sent
    as headers and query, as the typed SDK method takes them; none is a body field."""
    options = {
        "extra_body": {"top_k": 3},
        "extra_headers": {"X-Trace": "t-1"},
        "extra_query": {"api-version": "2"},
        "timeout": 30,
    }
    ask = _asker(app)
    call = {"model": "router:meta-llama/llama-3.1-8b", "options": options}
    done = await app.arun(ask, call, workflow_id="k1")  # type: ignore[arg-type]
    assert done.value is not None and done.value.startswith("echo"), done.record.last_error
    [(_, sent)] = server.state.bodies
    assert sent["top_k"] == 3 and not {"extra_body", "extra_headers", "timeout"} & set(sent)
    assert server.state.headers[0]["x-trace"] == "t-1"
    assert server.state.queries[0] == {"api-version": ["2"]}


async def test_embedding_options_the_sdk_does_not_know_reach_the_wire(
    app: App, server: ProviderServer
) -> None:
    @app.workflow(name="emb")
    async def emb(wf: Workflow) -> list[list[float]]:
        found = await wf.ai.embed("router:e5", ["a b"], options={"input_type": "query"})
        return found.vectors

    done = await app.arun(emb, workflow_id="e1")
    assert done.value == [[3.0, 0.5, -0.5]], done.record.last_error  # base64, decoded
    [(_, sent)] = server.state.bodies
    assert sent["input_type"] == "query" and sent["input"] == ["a b"]
    assert sent["encoding_format"] == "base64"


async def test_max_tokens_reaches_a_reasoning_model_as_openai_asks(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """`max_tokens=` was sent as `max_tokens`, which OpenAI's reasoning models (o3,
    gpt-5) refuse with a 400: every capped call to them failed. OpenAI is sent
    `max_completion_tokens`; an OpenAI-compatible server still gets `max_tokens`."""
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        local=ai.OpenAICompatible(base_url=server.openai_url),
    )
    app = App(database_url, clock=clock, ai=providers)

    @app.workflow(name="capped")
    async def capped(wf: Workflow, model: str) -> str:
        return (await wf.ai.generate_text(model, prompt="hi", max_tokens=64)).text

    try:
        done = await app.arun(capped, "openai:o3", workflow_id="c1")
        assert done.value == "echo: hi", done.record.last_error
        local = await app.arun(capped, "local:qwen3", workflow_id="c2")
    finally:
        await app.aclose()
    [(_, to_openai), (_, to_local)] = server.state.bodies
    assert to_openai["max_completion_tokens"] == 64 and "max_tokens" not in to_openai
    assert local.value == "echo: hi" and to_local["max_tokens"] == 64
