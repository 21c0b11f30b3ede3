"""What a 200 the call could not use costs, what contradictory usage counts price at,
and batch result lines and embedding replies of another shape, against the real
local provider server (the official SDKs talk to it; time is a fake clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended
from .test_odd_bodies import _chat, _message
from .test_provider_faults import _asker

# a cache read at a tenth of an input token, as the providers price them
PRICE = {"input_per_million": 1.0, "output_per_million": 1.0, "cached_input_per_million": 0.1}
OPENAI_ERROR = {"error": {"message": "upstream failed", "type": "server_error"}}
ANTHROPIC_ERROR = {"type": "error", "error": {"type": "api_error", "message": "upstream"}}


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    providers = ai.Providers(
        local=ai.OpenAICompatible(base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
        prices=ai.Prices({"m": PRICE}),
    )
    the_app = App(database_url, clock=clock, ai=providers)
    yield the_app
    await the_app.aclose()


@pytest.mark.parametrize(
    ("model", "body", "cost"),
    [
        ("local:m", b"<html>bad gateway</html>", None),  # not JSON
        ("local:m", _chat(choices=[None], usage=None), None),  # odd shape, no usage
        ("local:m", _chat(choices=[None]), 15),  # odd shape, usage told: priced
        ("local:m", {**OPENAI_ERROR, "id": "c1"}, None),  # an error inside the 200
        ("local:m", {**OPENAI_ERROR, "usage": {"prompt_tokens": 7, "completion_tokens": 0}}, 7),
        ("anthropic:m", _message(content=[None], usage=None), None),
        ("anthropic:m", _message(content=[None]), 15),
        ("anthropic:m", ANTHROPIC_ERROR, None),
    ],
)
async def test_a_failed_200_is_logged_at_the_cost_its_body_told_or_unknown_never_free(
    app: App, server: ProviderServer, model: str, body: Any, cost: int | None
) -> None:
    """Before, each was logged at cost_micro_usd=0, as free, though the provider took
    the request and may have billed it."""
    server.answer_next(200, body)
    server.queue_chat("after")
    server.queue_message("after")
    done = await app.arun(_asker(app, model), workflow_id="f1")
    assert done.value == "after"
    failed, answered = await app.alist_ai_calls("f1")
    assert failed.error and answered.error is None
    assert failed.cost_micro_usd == cost
    if cost is not None:  # its tokens are logged with it
        assert failed.input_tokens + failed.output_tokens == cost


async def test_a_failed_200_of_unknown_cost_counts_as_unknown_in_the_budget_and_says_so(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """A dollar budget cannot see it: the run is told, as of an answer without usage."""
    providers = ai.Providers(
        local=ai.OpenAICompatible(base_url=server.openai_url), prices=ai.Prices({"m": PRICE})
    )
    app = App(database_url, clock=clock, ai=providers)

    @app.workflow(name="budgeted", budget=ai.Budget(max_usd=0.5))
    async def budgeted(wf: Workflow) -> str:
        return (await wf.ai.generate_text("local:m", prompt="hi")).text

    server.answer_next(200, b"<html>bad gateway</html>")
    try:
        assert (await app.arun(budgeted, workflow_id="b1")).value == "echo: hi"
        events = (await app.aget_record("b1")).events
        spend = await app.store.ai_spend("b1", None)
    finally:
        await app.aclose()
    told = [e for e in events if e.type == "budget.unpriced"]
    assert len(told) == 1 and "its cost is unknown" in (told[0].message or "")
    assert (spend.calls, spend.unknown_cost_calls, spend.micro_usd) == (2, 1, 15)


CONTRADICTING_OPENAI = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "prompt_tokens_details": {"cached_tokens": 20},
    "completion_tokens_details": {"reasoning_tokens": 9},
}
CONTRADICTING_ANTHROPIC = {
    "input_tokens": 10,
    "output_tokens": 5,
    "output_tokens_details": {"thinking_tokens": 9},
}


@pytest.mark.parametrize(
    ("model", "body", "told"),
    [
        ("local:m", _chat(usage=CONTRADICTING_OPENAI), (10, 20, 5, 9)),
        ("anthropic:m", _message(usage=CONTRADICTING_ANTHROPIC), (10, 0, 5, 9)),
    ],
)
async def test_a_usage_part_above_its_whole_leaves_the_cost_unknown_its_counts_as_told(
    app: App, server: ProviderServer, model: str, body: dict[str, Any], told: tuple[int, ...]
) -> None:
    """Before, 10 input tokens with 20 of them cached were priced as told through a
    Prices table: 25 micro-USD, more than the 15 tokens cost uncached (genai-prices
    refused such counts, so a catalog model's cost was unknown already)."""
    server.answer_next(200, body)
    done = await app.arun(_asker(app, model), workflow_id="c1")
    assert done.value == "ok"
    (call,) = await app.alist_ai_calls("c1")
    counts = (call.input_tokens, call.cached_input_tokens, call.output_tokens)
    assert (*counts, call.reasoning_tokens) == told
    assert call.cost_micro_usd is None and call.error is None


def test_a_usage_part_within_its_whole_is_priced() -> None:
    from tether.ai._anthropic import anthropic_usage_told  # new with the fix
    from tether.ai._openai import openai_usage, openai_usage_told

    within = {**CONTRADICTING_OPENAI, "prompt_tokens_details": {"cached_tokens": 10}}
    within["completion_tokens_details"] = {"reasoning_tokens": 5}
    assert openai_usage_told(within) and not openai_usage_told(CONTRADICTING_OPENAI)
    assert openai_usage(within).cached_input_tokens == 10
    thought = {**CONTRADICTING_ANTHROPIC, "output_tokens_details": {"thinking_tokens": 5}}
    assert anthropic_usage_told(thought) and not anthropic_usage_told(CONTRADICTING_ANTHROPIC)


def _odd(provider: str, usage: bool) -> Any:
    """Request "1"'s line made of another shape: its answer a string (OpenAI), its
    content a null block (Anthropic); its usage kept or left out."""

    def edit(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for line in lines:
            if line["custom_id"] != "1":
                continue
            answer = line["response"]["body"] if provider == "openai" else line["result"]["message"]
            answer["choices" if provider == "openai" else "content"] = [None]
            if not usage:
                answer.pop("usage")
        return lines

    return edit


@pytest.mark.parametrize("usage", [True, False])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_result_line_of_another_shape_fails_its_own_request_only(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str, usage: bool
) -> None:
    """Before, the line raised a bare AttributeError out of the whole collect: no
    request's result reached the run, billed as they all were."""
    app = _app(database_url, clock, server)

    @app.workflow(name="three")
    async def three(wf: Workflow) -> Any:
        res = await wf.ai.batch(MODELS[provider], ["a", "b", "c"], poll_every=60)
        return [[res.items[k].ok, res.items[k].error] for k in "012"] + [res.cost_usd]

    assert (await app.arun(three, workflow_id="o")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_odd(provider, usage))
    done = await _ended(app, clock, "o", 60)
    calls = {c.custom_id: c for c in await app.alist_ai_calls("o")}
    await app.aclose()
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    (ok0, _), (ok1, error), (ok2, _), cost = done.value
    assert (ok0, ok1, ok2) == (True, False, True)
    assert '"code": "unreadable_result"' in error and "not of its API's shape" in error
    # 10 in at $1/M and 5 out at $4/M, half in a batch: 15 micro-USD a request
    assert calls["1"].cost_micro_usd == (15 if usage else None)
    assert cost == (0.000045 if usage else None)


async def test_a_batch_result_line_that_is_not_json_leaves_the_others(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """Its request cannot be told: it ends with no result; the others are read."""
    app = _app(database_url, clock, server)

    @app.workflow(name="two")
    async def two(wf: Workflow) -> Any:
        res = await wf.ai.batch(MODELS["openai"], ["a", "b"], poll_every=60)
        return [res.items[k].ok for k in "01"]

    assert (await app.arun(two, workflow_id="j")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(lambda lines: [x for x in lines if x["custom_id"] == "0"])
    (file_id,) = [b["output_file_id"] for b in server.state.batches.values()]
    server.state.files[file_id] += b"<html>\n"
    done = await _ended(app, clock, "j", 60)
    await app.aclose()
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == [True, False]


@pytest.mark.parametrize(
    ("data", "cost"),
    [
        ([{"index": 0, "embedding": 5}], 3),  # no vector: priced from its usage
        ([{"embedding": [1.0]}], 3),  # no index
        ([{"index": 0, "embedding": "not base64!"}], 3),
        (["x"], 3),
    ],
)
async def test_an_embedding_reply_of_another_shape_is_a_retried_provider_error(
    app: App, server: ProviderServer, data: list[Any], cost: int
) -> None:
    """Before, the run failed on a bare TypeError, KeyError or binascii.Error naming
    neither provider nor model, and the call was never logged."""

    @app.workflow(name="embed")
    async def embed(wf: Workflow) -> list[float]:
        return (await wf.ai.embed("local:m", "a b c")).vector

    body = {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 3}}
    server.answer_next(200, body)
    done = await app.arun(embed, workflow_id="e1")
    assert done.value == [5.0, 0.5, -0.5]
    failed, answered = await app.alist_ai_calls("e1")
    assert "not of its API's shape" in (failed.error or "") and " model m " in failed.error
    assert (failed.cost_micro_usd, answered.error) == (cost, None)
