"""What a provider does wrong, against a real local server: a 200 carrying an error, a
body that is not JSON, a connection dropped mid-body, a request left unanswered, an
answer without usage. Each is retried or failed as documented, its error naming
provider, model and status, and none is logged as a free answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tether import App, FakeClock, InvalidArgumentError, Workflow, ai

from ._server import ANTHROPIC_NO_USAGE, OPENAI_NO_USAGE, ProviderServer

OPENAI_ERROR = {"error": {"message": "The server had an error", "type": "server_error"}}
ANTHROPIC_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
MODELS = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}
PATHS = {"openai": "POST /v1/chat/completions", "anthropic": "POST /v1/messages"}


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=10),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=10),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


def _asker(app: App, model: str) -> object:
    @app.workflow(name=f"ask-{model}")
    async def ask(wf: Workflow) -> str:
        return (await wf.ai.generate_text(model, prompt="hi")).text

    return ask


def _queue(server: ProviderServer, provider: str, text: str) -> None:
    if provider == "openai":
        server.queue_chat(text)
    else:
        server.queue_message(text)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_200_carrying_an_error_is_retried_never_logged_as_a_free_answer(
    app: App, server: ProviderServer, provider: str
) -> None:
    server.answer_next(200, OPENAI_ERROR if provider == "openai" else ANTHROPIC_ERROR)
    _queue(server, provider, "the real answer")
    done = await app.arun(_asker(app, MODELS[provider]), workflow_id="e1")  # type: ignore[arg-type]
    assert done.value == "the real answer"
    assert server.count(PATHS[provider]) == 2
    failed, answered = await app.alist_ai_calls("e1")
    assert failed.response is None and "answered 200" in (failed.error or "")
    assert MODELS[provider].split(":")[1] in (failed.error or "")
    assert answered.error is None and answered.input_tokens == 100


async def test_an_embedding_200_carrying_an_error_is_a_retryable_error_naming_the_model(
    server: ProviderServer,
) -> None:
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    server.answer_next(200, OPENAI_ERROR)
    with pytest.raises(ai.ProviderError) as failed:
        await provider.embed("text-embedding-3-small", ["hi"], {"encoding_format": "float"})
    assert (failed.value.status, failed.value.retryable) == (200, True)
    assert failed.value.model == "text-embedding-3-small"
    assert "The server had an error" in str(failed.value)
    await provider.aclose()


async def test_an_embedding_200_carrying_an_error_without_a_format_is_the_same_error(
    server: ProviderServer,
) -> None:
    """Without `encoding_format` (base64 is asked for, as the SDK asks) the same: the
    SDK's own check raised a ValueError (a TypeError in older SDKs) here."""
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    server.answer_next(200, OPENAI_ERROR)
    with pytest.raises(ai.ProviderError) as failed:
        await provider.embed("text-embedding-3-small", ["hi"], {})
    assert (failed.value.status, failed.value.retryable) == (200, True)
    assert failed.value.model == "text-embedding-3-small"
    assert str(failed.value).startswith("OpenAI answered 200 for model text-embedding-3-small")
    await provider.aclose()


async def test_an_embedding_200_carrying_an_error_is_retried_by_the_step(
    app: App, server: ProviderServer
) -> None:
    server.answer_next(200, OPENAI_ERROR)  # then the server's own answer

    @app.workflow(name="embedder")
    async def embedder(wf: Workflow) -> list[list[float]]:
        return (await wf.ai.embed("openai:text-embedding-3-small", ["hi"])).vectors

    assert (await app.arun(embedder, workflow_id="m1")).value == [[2.0, 0.5, -0.5]]
    failed, answered = await app.alist_ai_calls("m1")
    assert "text-embedding-3-small" in (failed.error or "") and answered.error is None


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("body", "said"),
    [(b'{"id": "x", "choices": [', "not JSON"), (b'["an", "array"]', "not an object (list)")],
)
async def test_a_body_that_is_not_a_json_object_is_retried_as_a_provider_error(
    app: App, server: ProviderServer, provider: str, body: bytes, said: str
) -> None:
    server.answer_next(200, body)
    _queue(server, provider, "after the garbage")
    done = await app.arun(_asker(app, MODELS[provider]), workflow_id="j1")  # type: ignore[arg-type]
    assert done.value == "after the garbage"
    failed, answered = await app.alist_ai_calls("j1")
    assert said in (failed.error or "") and failed.cost_micro_usd in (0, None)
    assert answered.request_id is not None and answered.request_id.startswith("req_")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_refused_call_names_provider_model_and_status(
    app: App, server: ProviderServer, provider: str
) -> None:
    server.fail_next(400)
    with pytest.raises(ai.ProviderError) as refused:
        await app.arun(_asker(app, MODELS[provider]), workflow_id="r1")  # type: ignore[arg-type]
    model = MODELS[provider].split(":")[1]
    assert refused.value.model == model and refused.value.status == 400
    said = {"openai": "OpenAI", "anthropic": "Anthropic"}[provider]
    assert f"{said} answered 400 for model {model}: scripted 400" in str(refused.value)
    assert server.count(PATHS[provider]) == 1  # a bad request is not retried


async def test_a_connection_dropped_mid_body_is_retried_and_says_it_dropped(
    server: ProviderServer,
) -> None:
    provider = ai.OpenAI(api_key="k", base_url=server.openai_url)
    server.answer_next(200, {"id": "chatcmpl_1", "choices": [], "padding": "x" * 200}, "reset")
    with pytest.raises(ai.ProviderError) as dropped:
        await provider.generate("gpt-4.1-mini", _ask())
    assert dropped.value.retryable and dropped.value.model == "gpt-4.1-mini"
    assert "could not connect" not in str(dropped.value)
    assert "without sending complete message body" in str(dropped.value)
    await provider.aclose()


async def test_a_request_left_unanswered_times_out_retryable_naming_the_model(
    server: ProviderServer,
) -> None:
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=0.2)
    server.answer_next(200, {}, "stall")
    with pytest.raises(ai.ProviderError) as late:
        await provider.generate("claude-sonnet-4-5", _ask())
    assert late.value.retryable
    assert str(late.value) == "Anthropic: the request for model claude-sonnet-4-5 timed out"
    server.release.set()
    await provider.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_answer_without_usage_costs_unknown_not_zero(
    app: App, server: ProviderServer, provider: str
) -> None:
    server.answer_next(200, OPENAI_NO_USAGE if provider == "openai" else ANTHROPIC_NO_USAGE)

    @app.workflow(name="no-usage")
    async def ask(wf: Workflow) -> float | None:
        return (await wf.ai.generate_text(MODELS[provider], prompt="hi")).cost_usd

    done = await app.arun(ask, workflow_id="u1")
    assert done.value is None  # not $0: the provider billed tokens it did not tell
    [call] = await app.alist_ai_calls("u1")
    assert (call.cost_micro_usd, call.price_source, call.error) == (None, None, None)
    # so every total counts it as of unknown cost (no tokens told, yet not free)
    usage = (await app.aget_record("u1")).usage
    assert usage is not None and usage.total.unknown_cost_calls == 1
    [row] = await app.ausage(run="u1")
    assert (row.calls, row.unknown_cost_calls, row.priced_calls) == (1, 1, 0)
    assert call.cost_unknown  # the row says so as the sums do (the dashboard's per step)
    assert (await app.store.ai_spend("u1", None)).unknown_cost_calls == 1  # the budget's read


# usage blocks that lack the input or the output count, as some servers send them
_PARTIAL_USAGE = {
    "openai": [
        {"total_tokens": 15},
        {"prompt_tokens": 10},
        {"prompt_tokens": 10, "completion_tokens": None, "total_tokens": None},
    ],
    "anthropic": [{}, {"input_tokens": 10}, {"output_tokens": 10, "input_tokens": None}],
}


def _answer_with_usage(provider: str, usage: dict[str, object]) -> dict[str, object]:
    return {**(OPENAI_NO_USAGE if provider == "openai" else ANTHROPIC_NO_USAGE), "usage": usage}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_usage_block_missing_a_count_costs_unknown_not_less(
    app: App, server: ProviderServer, provider: str
) -> None:
    """A usage block without its input or output count was priced as if those tokens
    were none: `{"total_tokens": 15}` logged a call at $0, `{"prompt_tokens": 10}`
    one at the price of its input alone."""
    for usage in _PARTIAL_USAGE[provider]:
        server.answer_next(200, _answer_with_usage(provider, usage))

    @app.workflow(name="partial-usage")
    async def ask(wf: Workflow) -> list[float | None]:
        calls = range(len(_PARTIAL_USAGE[provider]))
        return [(await wf.ai.generate_text(MODELS[provider], prompt="hi")).cost_usd for _ in calls]

    done = await app.arun(ask, workflow_id="p1")
    assert done.value == [None, None, None]
    calls = await app.alist_ai_calls("p1")
    assert [c.cost_micro_usd for c in calls] == [None, None, None]
    assert [c.input_tokens for c in calls][1] == 10  # the counts it told are kept
    [row] = await app.ausage(run="p1")
    assert (row.calls, row.unknown_cost_calls, row.priced_calls) == (3, 3, 0)


async def test_a_refused_call_that_billed_nothing_is_not_of_unknown_cost(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = App(
        database_url,
        clock=clock,
        ai=ai.Providers(local=ai.OpenAICompatible(base_url=server.openai_url)),
    )

    @app.workflow(name="refused")
    async def refused(wf: Workflow) -> str:
        return (await wf.ai.generate_text("local:llama3", prompt="hi")).text

    server.fail_next(400)
    try:
        with pytest.raises(ai.ProviderError):
            await app.arun(refused, workflow_id="f1")
        [call] = await app.alist_ai_calls("f1")
        usage = (await app.aget_record("f1")).usage
        [row] = await app.ausage(run="f1")
    finally:
        await app.aclose()
    assert call.cost_micro_usd is None and call.error  # no price, but nothing billed
    assert usage is not None and usage.total.unknown_cost_calls == 0
    assert (row.calls, row.unknown_cost_calls) == (1, 0)
    assert not call.cost_unknown


async def test_asking_for_a_stream_is_refused_before_any_call(
    app: App, server: ProviderServer
) -> None:
    @app.workflow(name="streamer")
    async def streamer(wf: Workflow) -> str:
        reply = await wf.ai.generate_text(
            "openai:gpt-4.1-mini", prompt="hi", options={"stream": True}
        )
        return reply.text

    with pytest.raises(InvalidArgumentError, match="does not stream"):
        await app.arun(streamer, workflow_id="s1")
    assert server.count("POST") == 0


async def test_a_stream_asked_for_in_extra_body_is_refused_before_any_call(
    app: App, server: ProviderServer
) -> None:
    """`extra_body` is merged into the body sent, so its ``stream`` reached the
    provider: the streamed answer, read as "not JSON", was retried, each try billed."""

    @app.workflow(name="streamer")
    async def streamer(wf: Workflow) -> str:
        reply = await wf.ai.generate_text(
            "anthropic:claude-sonnet-4-5", prompt="hi", options={"extra_body": {"stream": True}}
        )
        return reply.text

    with pytest.raises(InvalidArgumentError, match=r"does not stream.*extra_body's 'stream'"):
        await app.arun(streamer, workflow_id="s2")
    assert server.count("POST") == 0


def _ask() -> ai.TextRequest:
    return ai.TextRequest(messages=[ai.Message(role="user", content="hi")])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_retry_after_given_as_a_date_is_waited_by_the_apps_clock(
    app: App, server: ProviderServer, clock: FakeClock, provider: str
) -> None:
    """An HTTP date in ``retry-after`` was counted from this machine's clock: a run
    driven on a fake clock (here, months before the real time) waited the policy's 1 s
    instead of the 45 s asked, and no test could set the time."""
    from email.utils import format_datetime

    when = clock.now() + timedelta(seconds=45)
    server.fail_next(429, retry_after=format_datetime(when, usegmt=True))
    _queue(server, provider, "after the wait")
    ask = _asker(app, MODELS[provider])
    assert (await app.arun(ask, workflow_id=f"date-{provider}")).value == "after the wait"
    assert clock.slept == [45.0]


def test_a_retry_after_date_is_a_time_until_a_clock_reads_it() -> None:
    from datetime import UTC, datetime

    from tether.ai._sdk import _retry_after, _retry_at

    headers = {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    assert _retry_after(headers) is None
    assert _retry_at(headers) == datetime(2026, 10, 21, 7, 28, tzinfo=UTC)
    assert _retry_at({"retry-after": "12"}) is None and _retry_after({"retry-after": "12"}) == 12
    assert _retry_at({"retry-after": "soon"}) is None
    exc = ai.ProviderError(
        "busy", retryable=True, retry_at=datetime(2026, 10, 21, 7, 28, tzinfo=UTC)
    )
    assert exc.wait_from(datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)).retry_after == 30.0
    assert exc.wait_from(datetime(2026, 10, 22, tzinfo=UTC)).retry_after == 0.0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_200_with_neither_a_result_nor_an_error_is_retried(
    app: App, server: ProviderServer, provider: str
) -> None:
    """`{"choices": []}` (a gateway's answer when its upstream failed) was taken as an
    empty answer: the run went on with "" as the model's text, logged as a success."""
    empty = (
        {"id": "chatcmpl_0", "object": "chat.completion", "model": "gpt-4.1-mini", "choices": []}
        if provider == "openai"
        else {"id": "msg_0", "type": "message", "role": "assistant", "model": "claude"}
    )
    server.answer_next(200, empty)
    _queue(server, provider, "the real answer")
    done = await app.arun(_asker(app, MODELS[provider]), workflow_id="n1")  # type: ignore[arg-type]
    assert done.value == "the real answer"
    failed, answered = await app.alist_ai_calls("n1")
    assert "without a result and without an error" in (failed.error or "")
    assert failed.response is None and answered.error is None
