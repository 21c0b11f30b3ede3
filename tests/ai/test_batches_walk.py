"""`wf.ai.batch` and budgets walked as a user would: a batch OpenAI refuses at
validation, one whose requests partly error, a budget that stops (or pauses) a
batch's submit. The official SDKs talk to a real local server; time is a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether import App, FakeClock, InvalidArgumentError, RunResult, RunStatus, Workflow, ai
from tether.testing import eventually

from ._server import ProviderServer

MODELS = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}
PRICES = ai.Prices(
    {m: {"input_per_million": 1.0, "output_per_million": 4.0} for m in MODELS.values()}
)


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
        prices=PRICES,
    )
    return App(database_url, clock=clock, ai=providers, inline_wait=0)


def _batcher(app: App, model: str, size: int, budget: ai.Budget | None = None) -> object:
    @app.workflow(name="batched", budget=budget)
    async def batched(wf: Workflow) -> dict[str, Any]:
        prompts = [f"q{i}" for i in range(size)]
        res = await wf.ai.batch(model, prompts, poll_every=60, max_wait=3600)
        return {k: [v.ok, v.text, v.cost_usd] for k, v in res.items.items()}

    return batched


async def _ended(app: App, clock: FakeClock, wid: str, seconds: float) -> RunResult[Any]:
    clock.advance(seconds)
    await app.afire_due_timers()
    return await app.aresult(wid, timeout=10)


async def _rest(
    app: App, clock: FakeClock, wid: str, seconds: float, event: str, n: int = 1
) -> None:
    clock.advance(seconds)
    await app.afire_due_timers()

    async def there() -> bool:
        rec = await app.aget_record(wid)
        seen = sum(e.type == event for e in rec.events)
        return rec.status is RunStatus.WAITING and seen >= n

    await eventually(there, timeout=10)


async def test_a_batch_openai_refused_at_validation_says_why_and_names_the_model(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """Before, the run failed with "ended failed: none of its 2 requests completed;
    submit any that did not complete again in a new batch": OpenAI's reasons (its
    ``errors``) were dropped, and the advice, to submit the same requests again,
    fails the same way; the error named neither provider nor model."""
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 2)
    assert (await app.arun(batched, workflow_id="v")).status is RunStatus.WAITING
    server.fail_validation("invalid_json_line", "This line is not parseable as valid JSON.")
    done = await _ended(app, clock, "v", 60)
    assert done.status is RunStatus.FAILED
    assert done.record.last_error is not None
    said = done.record.last_error.message
    assert "at openai (openai:gpt-4.1-mini) ended failed" in said, said
    assert "invalid_json_line: This line is not parseable as valid JSON. (line 1)" in said
    assert "none of its 2 requests completed; fix what it names" in said, said
    assert await app.alist_ai_calls("v") == []  # nothing ran, nothing billed
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_some_of_whose_requests_are_refused_records_each_outcome(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """The run goes on with each request's outcome; the refused one is logged with its
    error at $0 (not billed), the others at half the table's price."""
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 3)
    assert (await app.arun(batched, workflow_id="m")).status is RunStatus.WAITING
    server.finish_batches_refusing({"1"})
    done = await _ended(app, clock, "m", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert [v[0] for v in done.value.values()] == [True, False, True]
    calls = sorted(await app.alist_ai_calls("m"), key=lambda c: c.custom_id or "")
    assert [c.custom_id for c in calls] == ["0", "1", "2"]
    assert calls[1].error is not None and "max_tokens: too large" in calls[1].error
    # 10 tokens in at $1/M, 5 out at $4/M: 30 micro-USD, half of it in a batch
    assert [c.cost_micro_usd for c in calls] == [15, 0, 15]
    assert done.record.usage is not None and done.record.usage.total.cost_micro_usd == 30
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_submit_a_paused_budget_stopped_is_submitted_once_when_raised(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    app = _app(database_url, clock, server)
    model = MODELS[provider]

    @app.workflow(name="two")
    async def two(wf: Workflow) -> Any:
        first = await wf.ai.batch(model, ["a", "b"], poll_every=60, max_wait=3600)
        second = await wf.ai.batch(model, ["c", "d"], poll_every=60, max_wait=3600)
        return [first.cost_usd, second.cost_usd]

    budget = ai.Budget(max_usd=0.00002, on_exceed="pause")  # the first batch costs $0.00003
    assert (await app.arun(two, workflow_id="p", budget=budget)).status is RunStatus.WAITING
    server.finish_batches()
    await _rest(app, clock, "p", 60, "budget.exceeded")
    batches = server.state.batches if provider == "openai" else server.state.anthropic_batches
    assert len(batches) == 1  # the second submit refused: nothing sent
    rec = await app.aget_record("p")
    assert list(ai.budget_stops(rec.events)) == [f"ai.batch:{model}#2"]
    await app.asignal("p", "budget.raise", {"max_usd": 1})
    await _rest(app, clock, "p", 1, "ai.batch.submitted", 2)
    server.finish_batches()
    done = await _ended(app, clock, "p", 60)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == [0.00003, 0.00003]
    assert len(batches) == 2  # submitted once, when raised
    assert len(await app.alist_ai_calls("p")) == 4
    await app.aclose()


async def test_a_batch_requests_extra_body_is_merged_into_its_body(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """Before, the line uploaded carried a field named "extra_body", which OpenAI refuses
    in every request of the batch; the SDK's per-request options are refused, named."""
    app = _app(database_url, clock, server)

    @app.workflow(name="extra")
    async def extra(wf: Workflow, req: dict[str, Any]) -> None:
        await wf.ai.batch(MODELS["openai"], [req], poll_every=60, max_wait=3600)

    try:
        req = {"custom_id": "a", "prompt": "x", "extra_body": {"top_k": 3}}
        assert (await app.arun(extra, req, workflow_id="x1")).status is RunStatus.WAITING
        line = next(f for f in server.state.files.values() if b'"custom_id": "a"' in f)
        body = json.loads(line)["body"]
        assert body["top_k"] == 3 and "extra_body" not in body
        timed = {"custom_id": "b", "prompt": "x", "timeout": 5, "extra_headers": {"h": "1"}}
        with pytest.raises(InvalidArgumentError, match="request 0 sets extra_headers, timeout"):
            await app.arun(extra, timed, workflow_id="x2")
    finally:
        await app.aclose()
