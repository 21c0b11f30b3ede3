"""A call the provider may have billed at a cost nobody knows (a 200 it could not use
that told no usage, a request that timed out or lost its connection after it was
sent) is of unknown cost everywhere: in its row, in the usage totals, in the budgets;
never $0, never left out. A call refused before anything was sent stays free. Against
the real local provider server (the official SDKs talk to it; time is a fake clock)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app, _ended
from .test_billed_failures import _odd
from .test_provider_faults import _ask, _asker

PRICE = {"input_per_million": 1.0, "output_per_million": 1.0}
OPENAI_ERROR = {"error": {"message": "upstream failed", "type": "server_error"}}
ANTHROPIC_ERROR = {"type": "error", "error": {"type": "api_error", "message": "upstream"}}


def _providers(openai_url: str, anthropic_url: str, timeout: float = 10) -> ai.Providers:
    return ai.Providers(
        local=ai.OpenAICompatible(base_url=openai_url, timeout=timeout),
        anthropic=ai.Anthropic(api_key="k", base_url=anthropic_url, timeout=timeout),
        prices=ai.Prices({"m": PRICE}),  # a known price: a refused call is logged at $0
    )


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    the_app = App(
        database_url, clock=clock, ai=_providers(server.openai_url, server.anthropic_url, 0.3)
    )
    yield the_app
    await the_app.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening: a connection to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


async def _unknown_everywhere(app: App, wid: str) -> None:
    """The run's first call is of unknown cost in its row, in `tether usage`, in the
    run's record and in the budget's spend, which agree; its second was priced."""
    failed, answered = await app.alist_ai_calls(wid)
    assert failed.error and failed.cost_micro_usd is None and failed.cost_unknown
    assert answered.error is None and answered.cost_micro_usd == 120
    [row] = await app.ausage(run=wid)
    assert (row.calls, row.unknown_cost_calls, row.priced_calls) == (2, 1, 1)
    record = (await app.aget_record(wid)).usage
    assert record is not None and record.total.unknown_cost_calls == 1
    spend = await app.store.ai_spend(wid, None)
    assert (spend.calls, spend.unknown_cost_calls, spend.micro_usd) == (2, 1, 120)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("local:m", b"<html>bad gateway</html>"),  # not JSON
        ("local:m", OPENAI_ERROR),  # an error inside the 200, no usage
        ("anthropic:m", ANTHROPIC_ERROR),
    ],
)
async def test_a_failed_200_that_told_no_usage_is_of_unknown_cost_in_the_usage_too(
    app: App, server: ProviderServer, model: str, body: Any
) -> None:
    """It was logged at no cost with its error and no tokens, as a refused call is: the
    budget counted it as of unknown cost, but `tether usage`, the run's record and
    the row's `cost_unknown` counted it as neither priced nor unknown, hiding it."""
    server.answer_next(200, body)
    server.queue_chat("after")
    server.queue_message("after")
    assert (await app.arun(_asker(app, model), workflow_id="b1")).value == "after"
    await _unknown_everywhere(app, "b1")


@pytest.mark.parametrize("model", ["local:m", "anthropic:m"])
@pytest.mark.parametrize("mode", ["stall", "reset"])
async def test_a_request_lost_after_it_was_sent_is_of_unknown_cost_never_free(
    app: App, server: ProviderServer, model: str, mode: str
) -> None:
    """A timeout (the request left unanswered) or a connection dropped mid-answer comes
    after the provider had the request: it may have processed and billed it. It was
    logged as a refused call, at $0 for a model of known price."""
    server.answer_next(200, {"id": "x", "padding": "x" * 200}, mode)
    server.queue_chat("after")
    server.queue_message("after")
    try:
        assert (await app.arun(_asker(app, model), workflow_id="t1")).value == "after"
    finally:
        server.release.set()  # the stalled answer's thread ends
    await _unknown_everywhere(app, "t1")


@pytest.mark.parametrize("mode", ["stall", "reset"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_error_of_a_request_lost_after_it_was_sent_says_it_may_be_billed(
    server: ProviderServer, provider: str, mode: str
) -> None:
    providers = _providers(server.openai_url, server.anthropic_url, 0.3)
    pname = "local" if provider == "openai" else "anthropic"
    _, client, model_id = providers.resolve(f"{pname}:m")
    server.answer_next(200, {"id": "x", "padding": "x" * 200}, mode)
    try:
        with pytest.raises(ai.ProviderError) as lost:
            await client.generate(model_id, _ask())
    finally:
        server.release.set()
        await client.aclose()
    assert lost.value.retryable and lost.value.billed and lost.value.usage is None


async def test_a_connection_refused_before_anything_was_sent_stays_free(
    database_url: str, clock: FakeClock, closed_port: int
) -> None:
    """Nothing reached a provider: each attempt is logged at its price for no tokens,
    $0, neither of unknown cost nor hidden."""
    url = f"http://127.0.0.1:{closed_port}"
    app = App(database_url, clock=clock, ai=_providers(f"{url}/v1", url))
    try:
        with pytest.raises(ai.ProviderError, match="the connection failed"):
            await app.arun(_asker(app, "local:m"), workflow_id="c1")  # type: ignore[arg-type]
        calls = await app.alist_ai_calls("c1")
        [row] = await app.ausage(run="c1")
        spend = await app.store.ai_spend("c1", None)
    finally:
        await app.aclose()
    assert len(calls) == 6  # AI_RETRY's attempts, each refused
    assert all(c.cost_micro_usd == 0 and not c.cost_unknown and not c.billed for c in calls)
    assert (row.unknown_cost_calls, row.priced_calls, spend.unknown_cost_calls) == (0, 6, 0)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_result_of_another_shape_without_usage_is_of_unknown_cost_in_the_usage(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """The provider answered the request (billed) in a line tether could not read,
    which told no usage: logged as failed at no cost and no tokens, it was counted
    by the budget but hidden by `tether usage` and the row's `cost_unknown`."""
    app = _app(database_url, clock, server)

    @app.workflow(name="three")
    async def three(wf: Workflow) -> bool:
        res = await wf.ai.batch(MODELS[provider], ["a", "b", "c"], poll_every=60)
        return res.items["1"].ok

    assert (await app.arun(three, workflow_id="o")).status is RunStatus.WAITING
    server.finish_batches()
    server.edit_results(_odd(provider, usage=False))
    try:
        done = await _ended(app, clock, "o", 60)
        calls = {c.custom_id: c for c in await app.alist_ai_calls("o")}
        [row] = await app.ausage(run="o")
        spend = await app.store.ai_spend("o", None)
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED and done.value is False
    assert calls["1"].error and calls["1"].cost_micro_usd is None and calls["1"].cost_unknown
    assert (row.calls, row.unknown_cost_calls, row.priced_calls) == (3, 1, 2)
    assert spend.unknown_cost_calls == 1
