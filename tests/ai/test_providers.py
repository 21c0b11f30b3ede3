"""The provider adapters against a real local server speaking each wire format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether import InvalidArgumentError, ai
from tether.ai import BatchItem, Message, TextRequest, Usage
from tether.ai._anthropic import anthropic_usage
from tether.ai._openai import openai_usage

from ._server import ProviderServer

AT = datetime(2026, 12, 1, tzinfo=UTC)


def _ask(text: str, **kw: object) -> TextRequest:
    return TextRequest(messages=[Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


# -- usage is normalised at the edge ----------------------------------------------------


def test_openai_usage_already_counts_cached_input_and_reasoning_output() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
    )
    assert usage == Usage(
        input_tokens=1200, cached_input_tokens=1000, output_tokens=300, reasoning_tokens=200
    )


def test_anthropic_usage_adds_cache_reads_and_writes_to_the_input() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 150,
            "output_tokens": 80,
        }
    )
    assert usage == Usage(
        input_tokens=1200, cached_input_tokens=1000, cache_write_tokens=150, output_tokens=80
    )


# -- prices ------------------------------------------------------------------------------------


def test_costs_match_hand_computed_figures_per_provider() -> None:
    prices = ai.Prices()
    # gpt-4.1-mini: $0.40 / MTok input, $0.10 cached, $1.60 output
    openai_cost = prices.price(
        "openai",
        "gpt-4.1-mini",
        Usage(input_tokens=1200, cached_input_tokens=1000, output_tokens=300),
        at=AT,
    )
    assert openai_cost.micro_usd == round(200 * 0.40 + 1000 * 0.10 + 300 * 1.60)  # 660
    assert openai_cost.source is not None and openai_cost.source.startswith("genai-prices@")
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output
    anthropic_cost = prices.price(
        "anthropic",
        "claude-sonnet-4-5",
        Usage(
            input_tokens=1200, cached_input_tokens=1000, cache_write_tokens=150, output_tokens=80
        ),
        at=AT,
    )
    # 50 x 3 + 1000 x 0.30 + 150 x 3.75 + 80 x 15 = 2212.5 micro-USD, rounded half up
    assert anthropic_cost.micro_usd == 2213
    batch = prices.price("openai", "gpt-4.1-mini", Usage(input_tokens=1000), at=AT, batch=True)
    assert batch.micro_usd == 200  # half of 1000 x $0.40 / MTok


def test_an_unknown_price_is_none_never_zero_and_a_table_overrides() -> None:
    prices = ai.Prices({"local:llama3": {"input_per_million": 0, "output_per_million": 0}})
    assert prices.price("openai", "no-such-model", Usage(input_tokens=5), at=AT).micro_usd is None
    assert prices.price("ollama", "mistral", Usage(input_tokens=5), at=AT).micro_usd is None
    free = prices.price("local", "llama3", Usage(input_tokens=5, output_tokens=5), at=AT)
    assert (free.micro_usd, free.source is not None) == (0, True)
    own = ai.Prices({"gpt-4.1-mini": ai.Price(input_per_million=1, output_per_million=2)})
    assert own.price("openai", "gpt-4.1-mini", Usage(input_tokens=10**6), at=AT).micro_usd == 10**6


def test_a_bad_price_table_says_which_entry_is_wrong() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'m'.*input_per_million"):
        ai.Prices({"m": {"input_per_million": -1, "output_per_million": 1}})


# -- OpenAI through its SDK ----------------------------------------------------------------


async def test_openai_generate_and_embed_through_the_sdk(server: ProviderServer) -> None:
    server.queue_chat("hello", prompt_tokens=1200, cached_tokens=1000, completion_tokens=40)
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    reply = await provider.generate("gpt-4.1-mini", _ask("hi", system="be brief", max_tokens=9))
    assert reply.text == "hello"
    assert reply.usage == Usage(input_tokens=1200, cached_input_tokens=1000, output_tokens=40)
    assert reply.request_id and reply.model == "gpt-4.1-mini"
    sent = server.state.bodies[-1][1]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent
    emb = await provider.embed("text-embedding-3-small", ["a b", "c"], {})
    assert [v[0] for v in emb.vectors] == [3.0, 1.0] and emb.usage.input_tokens == 3
    await provider.aclose()


async def test_rate_limits_and_server_errors_are_retryable_bad_requests_are_not(
    server: ProviderServer,
) -> None:
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    server.fail_next(429, retry_after="7")
    with pytest.raises(ai.ProviderError) as limited:
        await provider.generate("gpt-4.1-mini", _ask("x"))
    assert (limited.value.status, limited.value.retryable, limited.value.retry_after) == (
        429,
        True,
        7.0,
    )
    server.fail_next(503)
    with pytest.raises(ai.ProviderError) as down:
        await provider.generate("gpt-4.1-mini", _ask("x"))
    assert down.value.retryable
    server.fail_next(400)
    with pytest.raises(ai.ProviderError) as bad:
        await provider.generate("gpt-4.1-mini", _ask("x"))
    assert (bad.value.status, bad.value.retryable) == (400, False)
    assert server.count("POST /v1/chat/completions") == 3  # the SDK itself never retried
    await provider.aclose()


async def test_deepseeks_cache_hits_are_cached_input_and_priced_so(
    server: ProviderServer,
) -> None:
    """DeepSeek's OpenAI-compatible API tells its cache hits (a part of prompt_tokens)
    as `prompt_cache_hit_tokens`, with no prompt_tokens_details: they were read as 0
    and every cached token was priced as a fresh one."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
             "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}  # fmt: skip
    message = {"role": "assistant", "content": "hi"}
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "deepseek-chat",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage}  # fmt: skip
    server.answer_next(200, body)
    deepseek = ai.OpenAICompatible(base_url=server.openai_url, price_id="deepseek")
    try:
        reply = await deepseek.generate("deepseek-chat", _ask("hi"))
    finally:
        await deepseek.aclose()
    assert reply.usage == Usage(input_tokens=1000, cached_input_tokens=800, output_tokens=100)
    providers = ai.Providers(deepseek=deepseek)
    cost = providers.price("deepseek", "deepseek-chat", reply.usage, at=AT).micro_usd
    fresh = Usage(input_tokens=200, output_tokens=100)
    hits = Usage(input_tokens=800, cached_input_tokens=800)
    parts = [
        providers.price("deepseek", "deepseek-chat", u, at=AT).micro_usd for u in (fresh, hits)
    ]
    assert cost is not None and parts[0] is not None and parts[1] is not None
    assert abs(cost - (parts[0] + parts[1])) <= 1  # each part rounded to a micro-dollar


async def test_gemini_reasoning_left_out_of_completion_tokens_is_output(
    server: ProviderServer,
) -> None:
    """Gemini's OpenAI-compatible answers count its thinking apart from
    completion_tokens (total_tokens = prompt + completion + reasoning): the thinking,
    billed as output, was neither counted nor priced (here 400 of 550 output tokens)."""
    usage = {"prompt_tokens": 100, "completion_tokens": 150, "total_tokens": 650,
             "completion_tokens_details": {"reasoning_tokens": 400}}  # fmt: skip
    message = {"role": "assistant", "content": "hi"}
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage}  # fmt: skip
    server.answer_next(200, body)
    gemini = ai.OpenAICompatible(base_url=server.openai_url, price_id="google")
    try:
        reply = await gemini.generate("gemini-2.5-flash", _ask("hi"))
    finally:
        await gemini.aclose()
    assert reply.usage == Usage(input_tokens=100, output_tokens=550, reasoning_tokens=400)
    cost = ai.Providers(gemini=gemini).price("gemini", "gemini-2.5-flash", reply.usage, at=AT)
    assert cost.micro_usd == 100 * 0.30 + 550 * 2.50  # 1405: $0.30 / MTok in, $2.50 out
    # OpenAI's own (reasoning inside completion_tokens) is taken as it is
    inside = {"prompt_tokens": 100, "completion_tokens": 550, "total_tokens": 650,
              "completion_tokens_details": {"reasoning_tokens": 400}}  # fmt: skip
    assert openai_usage(inside) == reply.usage


async def test_openai_batches_submit_poll_and_read_results(server: ProviderServer) -> None:
    server.queue_chat("one", prompt_tokens=10, completion_tokens=2)
    server.queue_chat("two", prompt_tokens=20, completion_tokens=4)
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    items = [BatchItem(custom_id=f"r{i}", request=_ask(f"q{i}")) for i in (1, 2)]
    batch_id = await provider.batch_submit("gpt-4.1-mini", items)
    assert (await provider.batch_status(batch_id)).state == "pending"
    server.finish_batches()
    assert (await provider.batch_status(batch_id)).state == "done"
    results = {r.custom_id: r for r in await provider.batch_results(batch_id)}
    assert results["r1"].reply is not None and results["r1"].reply.text == "one"
    assert results["r2"].reply is not None and results["r2"].reply.usage.input_tokens == 20
    await provider.aclose()


# -- Anthropic through its SDK --------------------------------------------------------------


async def test_a_tool_loop_in_openais_shape_reaches_anthropic_in_its_own(
    server: ProviderServer,
) -> None:
    """An assistant's OpenAI `tool_calls` and the ``tool`` messages answering them
    were sent to Anthropic as they were, and refused (400: role 'tool'); they are its
    ``tool_use`` and ``tool_result`` parts, one turn's results in one user message."""
    calls = [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup", "arguments": '{"q": "a"}'}},
        {"id": "call_2", "type": "function",
         "function": {"name": "lookup", "arguments": '{"q": "b"}'}},
    ]  # fmt: skip
    request = TextRequest(
        messages=[
            Message(role="user", content="find a and b"),
            Message(role="assistant", content="", tool_calls=calls),
            Message(role="tool", content="A", tool_call_id="call_1"),
            Message(role="tool", content="B", tool_call_id="call_2"),
        ],
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
    )
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    try:
        reply = await provider.generate("claude-sonnet-4-5", request)
    finally:
        await provider.aclose()
    assert reply.text == "echo"
    user, assistant, results = server.state.bodies[-1][1]["messages"]
    assert user == {"role": "user", "content": "find a and b"}
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "a"}},
        {"type": "tool_use", "id": "call_2", "name": "lookup", "input": {"q": "b"}},
    ]}  # fmt: skip
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "A"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "B"},
    ]}  # fmt: skip


async def test_anthropic_keeps_a_system_messages_cached_blocks_as_blocks(
    server: ProviderServer,
) -> None:
    """A system message of content blocks (a ``cache_control`` on the long prompt, to
    cache it) was sent as the Python repr of the list: the model read
    "[{'type': 'text', ...}]" and nothing was cached."""
    cached = {"type": "text", "text": "the long rules", "cache_control": {"type": "ephemeral"}}
    request = TextRequest(
        messages=[Message(role="system", content=[cached]), Message(role="user", content="hi")],
        system="be brief",
    )
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    try:
        await provider.generate("claude-sonnet-4-5", request)
        sent = server.state.bodies[-1][1]
        await provider.generate("claude-sonnet-4-5", _ask("hi", system="plain"))
    finally:
        await provider.aclose()
    assert sent["system"] == [{"type": "text", "text": "be brief"}, cached]
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert server.state.bodies[-1][1]["system"] == "plain"  # text stays text


async def test_anthropic_generate_counts_cache_and_forces_the_schema_tool(
    server: ProviderServer,
) -> None:
    server.queue_message("hi", input_tokens=50, cache_read=1000, cache_write=150, output_tokens=8)
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    reply = await provider.generate("claude-sonnet-4-5", _ask("hello", system="sys"))
    assert reply.text == "hi"
    assert reply.usage.input_tokens == 1200 and reply.usage.cache_write_tokens == 150
    sent = server.state.bodies[-1][1]
    assert sent["system"] == "sys" and sent["max_tokens"] == 4096
    server.queue_message("", tool_input={"label": "bug"})
    obj = await provider.generate(
        "claude-sonnet-4-5",
        _ask("classify", json_schema={"type": "object"}, schema_name="Verdict"),
    )
    assert obj.text == '{"label": "bug"}'
    assert server.state.bodies[-1][1]["tool_choice"] == {"type": "tool", "name": "Verdict"}
    with pytest.raises(ai.ProviderError, match="no embeddings"):
        await provider.embed("claude", ["x"], {})
    await provider.aclose()


async def test_anthropic_message_batches(server: ProviderServer) -> None:
    server.queue_message("a", input_tokens=10)
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    batch_id = await provider.batch_submit(
        "claude-sonnet-4-5", [BatchItem(custom_id="x", request=_ask("q"))]
    )
    assert (await provider.batch_status(batch_id)).state == "pending"
    server.finish_batches()
    assert (await provider.batch_status(batch_id)).state == "done"
    [result] = await provider.batch_results(batch_id)
    assert result.custom_id == "x" and result.reply is not None and result.reply.text == "a"
    assert result.reply.service_tier == "batch"
    await provider.aclose()


# -- keys and the fake -----------------------------------------------------------------------


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ai.MissingAPIKeyError, match="OPENAI_API_KEY"):
        ai.OpenAI().check()
    with pytest.raises(ai.MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        ai.Anthropic().check()
    ai.OpenAICompatible(base_url="http://127.0.0.1:1/v1").check()  # a local server needs none
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    ai.OpenAI().check()


async def test_fake_model_answers_from_its_script_and_records_what_it_was_asked() -> None:
    fake = ai.FakeModel(["first", {"label": "bug"}, ai.ProviderError("boom", retryable=True)])
    assert (await fake.generate("m", _ask("a"))).text == "first"
    assert (await fake.generate("m", _ask("b"))).text == '{"label": "bug"}'
    with pytest.raises(ai.ProviderError, match="boom"):
        await fake.generate("m", _ask("c"))
    with pytest.raises(InvalidArgumentError, match="no scripted reply left"):
        await fake.generate("m", _ask("d"))
    assert [r.messages[0].content for _, r in fake.calls] == ["a", "b", "c", "d"]
    vectors = (await fake.embed("e", ["x", "x"], {})).vectors
    assert vectors[0] == vectors[1] and len(vectors[0]) == 8


async def test_a_fake_models_fixed_usage_is_its_embeddings_usage_too() -> None:
    """`FakeModel(usage=...)` "fixes the usage of every call", but an embedding was
    counted from its text: a test of a budget or a price over embeddings saw other
    figures than it fixed."""
    fixed = Usage(input_tokens=1_000_000)
    fake = ai.FakeModel(usage=fixed)
    assert (await fake.embed("e", ["a short text"], {})).usage == fixed
    counted = await ai.FakeModel().embed("e", ["a short text"], {})  # 12 chars: 3 tokens
    assert counted.usage == Usage(input_tokens=3)
