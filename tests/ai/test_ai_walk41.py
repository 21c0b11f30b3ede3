"""A harness author's walk through wf.ai against the real local server: usage read as
each provider tells it, priced by genai-prices, and the totals the call log gives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from genai_prices import Usage as GUsage
from genai_prices import calc_price
from pydantic import BaseModel

from tether import App, FakeClock, RunStatus, Workflow, ai
from tether.testing import eventually

from ._server import OPENAI_NO_USAGE, Failure, ProviderServer
from .test_batches_walk import _ended


class Verdict(BaseModel):
    label: str
    confidence: float


def _providers(server: ProviderServer) -> ai.Providers:
    """Both providers at the local server, priced by genai-prices alone."""
    return ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=10),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=10),
    )


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock, ai=_providers(server))
    yield the_app
    await the_app.aclose()


def _micro(
    provider: str, model: str, usage: GUsage, at: datetime, discount: Decimal = Decimal(0)
) -> int:
    usd = calc_price(usage, model, provider_id=provider, genai_request_timestamp=at).total_price
    usd *= 1 - discount
    return int((Decimal(usd) * 1_000_000).quantize(Decimal(1), rounding="ROUND_HALF_UP"))


async def test_openai_cached_and_reasoning_tokens_are_logged_and_priced(
    app: App, server: ProviderServer, clock: FakeClock
) -> None:
    server.queue_chat(
        "ok", prompt_tokens=2000, cached_tokens=1500, completion_tokens=800, reasoning_tokens=600
    )

    @app.workflow(name="o")
    async def flow(wf: Workflow) -> Any:
        return (await wf.ai.generate_text("openai:o4-mini", prompt="hi")).model_dump()

    done = await app.arun(flow, workflow_id="o1")
    (call,) = await app.alist_ai_calls("o1")
    assert (call.input_tokens, call.cached_input_tokens) == (2000, 1500)
    assert (call.output_tokens, call.reasoning_tokens) == (800, 600)
    want = _micro(
        "openai", "o4-mini", GUsage(input_tokens=2000, cache_read_tokens=1500, output_tokens=800),
        call.at,
    )  # fmt: skip
    assert call.cost_micro_usd == want and want > 0
    assert done.value["cost_usd"] == want / 1_000_000


async def test_anthropic_cache_reads_and_both_writes_are_priced_as_genai_prices(
    app: App, server: ProviderServer
) -> None:
    server.queue_message(
        "ok", input_tokens=50, cache_read=3000, cache_write=1000, cache_write_1h=400,
        output_tokens=200,
    )  # fmt: skip

    @app.workflow(name="a")
    async def flow(wf: Workflow) -> str:
        return (await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="hi")).text

    await app.arun(flow, workflow_id="a1")
    (call,) = await app.alist_ai_calls("a1")
    assert (call.input_tokens, call.cached_input_tokens, call.cache_write_tokens) == (
        4050, 3000, 1000,
    )  # fmt: skip
    usage = GUsage(
        input_tokens=4050, cache_read_tokens=3000, cache_write_tokens=1000,
        cache_write_1h_tokens=400, output_tokens=200,
    )  # fmt: skip
    assert call.cost_micro_usd == _micro("anthropic", "claude-sonnet-4-5", usage, call.at)


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ANTHROPIC_WEATHER = {
    "name": "weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _walker(app: App, provider: str) -> Any:
    model = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}
    tools = [WEATHER] if provider == "openai" else [ANTHROPIC_WEATHER]

    @app.workflow(name=f"walk-{provider}")
    async def walk(wf: Workflow) -> dict[str, Any]:
        obj = await wf.ai.generate_object(model[provider], Verdict, prompt="classify")
        told = await wf.ai.generate_text(model[provider], prompt="weather?", tools=tools)
        said = {"object": type(obj.object).__name__, "text": type(told).__name__}
        if provider == "openai":
            emb = await wf.ai.embed("openai:text-embedding-3-small", ["a b", "c"])
            said["embed"] = type(emb).__name__
        await wf.wait_for_signal("go")
        return said

    return walk


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_walk_replayed_in_a_new_app_asks_nothing_again_and_sums_match(
    database_url: str, server: ProviderServer, provider: str
) -> None:
    if provider == "openai":
        server.queue_chat('{"label": "bug", "confidence": 0.5}', cached_tokens=40)
        server.queue_chat("", tool_calls=[("weather", {"city": "Oslo"})], reasoning_tokens=5)
    else:
        server.queue_message("", tool_input={"label": "bug", "confidence": 0.5}, cache_read=30)
        server.queue_message("", tool_uses=[("weather", {"city": "Oslo"})], cache_write=10)
    providers = _providers(server)
    first = App(database_url, clock=FakeClock(), ai=providers)
    try:
        await first.astart(_walker(first, provider), workflow_id="w1")
        await eventually(lambda: _waiting(first, "w1"))
    finally:
        await first.aclose()
    sent = server.count("POST /v1/")
    second = App(database_url, clock=FakeClock(), ai=providers)
    try:
        _walker(second, provider)
        await second.asignal("w1", "go")
        await second.aresume("w1")
        done = await second.aresult("w1", timeout=10)
        assert done.value["object"] == "Verdict" and done.value["text"] == "TextResult"
        assert server.count("POST /v1/") == sent
        calls = await second.alist_ai_calls("w1")
        assert len(calls) == (3 if provider == "openai" else 2)
        [usage] = await second.ausage(run="w1")
        assert usage.calls == len(calls)
        for field in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                      "output_tokens", "reasoning_tokens"):  # fmt: skip
            assert getattr(usage, field) == sum(getattr(c, field) for c in calls), field
        assert usage.cost_micro_usd == sum(c.cost_micro_usd or 0 for c in calls) > 0
        assert usage.unknown_cost_calls == 0
    finally:
        await second.aclose()


async def _waiting(app: App, wid: str) -> bool:
    return (await app.aget_run(wid)).status is RunStatus.WAITING


async def test_an_unknown_model_costs_unknown_and_is_counted_so(
    app: App, server: ProviderServer
) -> None:
    server.queue_chat("ok", prompt_tokens=100, completion_tokens=10)

    @app.workflow(name="u")
    async def flow(wf: Workflow) -> Any:
        return (await wf.ai.generate_text("openai:gpt-nonesuch-9", prompt="hi")).cost_usd

    done = await app.arun(flow, workflow_id="u1")
    assert done.value is None
    (call,) = await app.alist_ai_calls("u1")
    assert call.cost_micro_usd is None and call.cost_unknown
    [usage] = await app.ausage(run="u1")
    assert (usage.unknown_cost_calls, usage.priced_calls, usage.known_cost_usd) == (1, 0, None)


async def test_the_usage_of_a_run_of_faults_is_the_sum_of_its_calls_in_app_and_cli(
    app: App, server: ProviderServer, database_url: str
) -> None:
    fails = server.state.failures
    server.fail_next(429, retry_after="0", path="messages")  # refused: no tokens, not unknown
    server.fail_next(529, path="messages")  # overloaded
    no_content = {
        "type": "message",
        "content": None,
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
    fails.append(Failure(200, body=no_content, path="messages"))  # billed, priced
    fails.append(Failure(200, body=b'{"id": "msg_1", "content": [', path="messages"))
    server.queue_message("ok", input_tokens=10, cache_read=100, output_tokens=5)
    server.fail_next(500, path="chat")
    fails.append(Failure(200, body=OPENAI_NO_USAGE, mode="reset", path="chat"))
    server.queue_chat("ok", prompt_tokens=300, cached_tokens=200, completion_tokens=9)
    server.queue_chat("?", prompt_tokens=40, completion_tokens=4)

    @app.workflow(name="faults")
    async def flow(wf: Workflow) -> list[str]:
        a = await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="a")
        b = await wf.ai.generate_text("openai:gpt-4.1-mini", prompt="b")
        c = await wf.ai.generate_text("openai:nonesuch", prompt="c")
        return [a.text, b.text, c.text]

    done = await app.arun(flow, workflow_id="f1")
    assert done.value == ["ok", "ok", "?"]
    calls = await app.alist_ai_calls("f1")
    [usage] = await app.ausage(run="f1")
    assert usage.calls == len(calls) == 9
    for field in ("input_tokens", "cached_input_tokens", "output_tokens"):
        assert getattr(usage, field) == sum(getattr(c, field) for c in calls), field
    assert usage.cost_micro_usd == sum(c.cost_micro_usd or 0 for c in calls)
    assert usage.unknown_cost_calls == sum(c.cost_unknown for c in calls)
    assert usage.priced_calls == sum(c.cost_micro_usd is not None for c in calls)
    record = (await app.aget_record("f1")).usage
    assert record is not None and asdict(record.total)["calls"] == usage.calls
    for field in ("input_tokens", "cost_micro_usd", "unknown_cost_calls", "priced_calls"):
        assert getattr(record.total, field) == getattr(usage, field), field
        by_model = await app.ausage(run="f1", group_by="model")
        assert sum(getattr(r, field) for r in by_model) == getattr(usage, field), field
    from tether.cli import cli

    out = await asyncio.to_thread(
        CliRunner().invoke, cli, ["usage", "--run", "f1", "--json", "--db", database_url],
        env={"TETHER_DATABASE_URL": None},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["total"] == asdict(usage)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batchs_cached_and_reasoning_tokens_are_priced_at_half(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    if provider == "openai":
        model = "o4-mini"
        server.queue_chat("a", prompt_tokens=3000, cached_tokens=2048, completion_tokens=700,
                          reasoning_tokens=500)  # fmt: skip
        want = GUsage(input_tokens=3000, cache_read_tokens=2048, output_tokens=700)
    else:
        model = "claude-sonnet-4-5"
        server.queue_message("a", input_tokens=20, cache_read=4000, cache_write=1000,
                             cache_write_1h=600, output_tokens=300)  # fmt: skip
        want = GUsage(input_tokens=5020, cache_read_tokens=4000, cache_write_tokens=1000,
                      cache_write_1h_tokens=600, output_tokens=300)  # fmt: skip
    providers = _providers(server)
    app = App(database_url, clock=clock, ai=providers, inline_wait=0)

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> Any:
        res = await wf.ai.batch(f"{provider}:{model}", ["q"], poll_every=60, max_wait=3600)
        return [res.items["0"].cost_usd, type(res).__name__]

    try:
        assert (await app.arun(batched, workflow_id="b")).status is RunStatus.WAITING
        server.finish_batches()
        done = await _ended(app, clock, "b", 60)
        (call,) = await app.alist_ai_calls("b")
        expected = _micro(provider, model, want, call.at, Decimal("0.5"))
        assert call.cost_micro_usd == expected > 0
        assert call.reasoning_tokens == (500 if provider == "openai" else 0)
        assert done.value == [expected / 1_000_000, "BatchResult"]
        [usage] = await app.ausage(run="b")
        assert (usage.calls, usage.cost_micro_usd) == (1, expected)
    finally:
        await app.aclose()
