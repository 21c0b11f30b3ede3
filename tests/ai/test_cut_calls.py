"""An AI call in flight when its step is stopped (the run's cancel, from this App or
another; an enclosing step's timeout=): its budget admission is given back, so the
next run under the budget is admitted; its HTTP request is closed (the provider
server sees the connection dropped); and a call the provider took is logged as of
unknown cost, in its row, `tether usage`, the run's record and the budget's spend,
never left out nor priced from tokens nobody told. wf.ai does not stream (a
``stream`` option is refused before anything is sent), so no usage arrives before
the whole answer. Against the real local provider server, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai
from tether.ai._client import ADMISSIONS
from tether.testing import eventually

from ._server import ProviderServer

PRICE = {"input_per_million": 100.0, "output_per_million": 100.0}
MODELS = {"openai": "openai:m", "anthropic": "anthropic:m"}
TEAM = ai.Budget(key="team", max_usd=1.0)
HANG = 30.0  # a guard: a drive that is not stopped waits for an answer held for good


def _providers(server: ProviderServer) -> ai.Providers:
    return ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=HANG),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=HANG),
        prices=ai.Prices({"openai:m": PRICE, "anthropic:m": PRICE}),
    )


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    the_app = App(database_url, clock=clock, ai=_providers(server))
    yield the_app
    server.held.set()  # a call a failed test left held ends
    await the_app.aclose()


async def _cancelled(
    app: App, drive: asyncio.Task[Any], canceller: str, database_url: str, clock: FakeClock
) -> None:
    """Cancel run "w" from `app` ("this") or another App ("other"); its drive ends so."""
    other = app if canceller == "this" else App(database_url, clock=clock)
    try:
        assert await other.acancel("w", "stop") == ["w"]
    finally:
        if other is not app:
            await other.aclose()
    done = await asyncio.wait_for(drive, HANG)
    assert done.status is RunStatus.CANCELLED


def _scope_users() -> list[int]:
    return [scope.users for scope in ADMISSIONS._scopes.values()]


async def _next_run_is_admitted(app: App, provider: str) -> None:
    """A run under the same budget gets its call through (nothing of the cut call is
    held in flight: one would make it wait, one call at a time until a cost is known)."""

    @app.workflow(name="next", budget=TEAM)
    async def after(wf: Workflow) -> str:
        return (await wf.ai.generate_text(MODELS[provider], prompt="next")).text

    done = await asyncio.wait_for(app.arun(after, workflow_id="next"), HANG)
    assert done.status is RunStatus.COMPLETED and done.value.startswith("echo")
    assert len(ADMISSIONS) == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("canceller", ["this", "other"])
async def test_a_cancel_gives_back_the_admissions_and_closes_the_request(
    app: App, server: ProviderServer, database_url: str, clock: FakeClock, provider: str,
    canceller: str,
) -> None:  # fmt: skip
    """Two branches under one budget: the first call held in flight, the second waiting
    for its admission (one at a time until a cost is known); the cancel stops both."""

    @app.workflow(name="fan", budget=TEAM)
    async def fan(wf: Workflow) -> int:
        async def one(i: int) -> str:
            return (await wf.ai.generate_text(MODELS[provider], prompt=f"item {i}")).text

        return (await wf.for_each(range(2), one, max_parallel=2)).fulfilled

    server.drip_next()
    drive = asyncio.create_task(app.arun(fan, workflow_id="w"))
    await eventually(lambda: server.state.dripping == 1 and _scope_users() == [2])
    await _cancelled(app, drive, canceller, database_url, clock)
    await eventually(lambda: server.state.dropped == 1)  # the held request was closed
    assert len(ADMISSIONS) == 0
    assert server.count("POST") == 1  # the waiting branch sent nothing
    await _next_run_is_admitted(app, provider)
    spend = await app.store.ai_spend("next", "team")  # every run under the key
    assert (spend.calls, spend.unknown_cost_calls) == (2, 1)  # the next, and the cut one
    [cut] = await app.alist_ai_calls("w")  # the cut call, of unknown cost
    assert cut.billed and cut.cost_unknown and "cut short before" in (cut.error or "")


def _text(provider: str) -> Callable[[Workflow], Any]:
    async def call(wf: Workflow) -> Any:
        return await wf.ai.generate_text(MODELS[provider], prompt="cut")

    return call


async def _embed(wf: Workflow) -> Any:
    return await wf.ai.embed("openai:m", ["cut"])


@pytest.mark.parametrize(
    ("provider", "call"),
    [("openai", _text("openai")), ("anthropic", _text("anthropic")), ("openai", _embed)],
    ids=["openai-text", "anthropic-text", "openai-embed"],
)
async def test_a_call_cut_by_a_step_timeout_is_logged_of_unknown_cost(
    app: App, server: ProviderServer, provider: str, call: Callable[[Workflow], Any]
) -> None:
    """Before, the call cut short was not logged at all: a request the provider took,
    and may bill, was missing from the log, the usage and the budget, where a request
    the SDK's own timeout ends is logged of unknown cost."""

    @app.workflow(name="cut", budget=TEAM)
    async def cut(wf: Workflow) -> str:
        await wf.ai.generate_text(MODELS[provider], prompt="warm")  # its client is built
        server.drip_next()

        async def outer() -> str:
            await call(wf)
            return "not cut"

        try:
            return await wf.step("outer", outer, timeout=1.0)
        except Exception as exc:
            return type(exc).__name__

    done = await asyncio.wait_for(app.arun(cut, workflow_id="w"), HANG)
    assert done.value == "StepTimeoutError"
    await eventually(lambda: server.state.dropped == 1)  # sent, then closed
    assert len(ADMISSIONS) == 0
    answered, cut_short = await app.alist_ai_calls("w")
    assert answered.error is None and answered.cost_micro_usd == 1500  # 15 tokens
    assert cut_short.step_key.startswith("outer/") and cut_short.billed
    assert "cut short before" in (cut_short.error or "")
    assert (cut_short.cost_micro_usd, cut_short.price_source) == (None, None)
    assert cut_short.input_tokens == cut_short.output_tokens == 0  # none invented
    assert cut_short.cost_unknown
    [row] = await app.ausage(run="w")
    assert (row.calls, row.unknown_cost_calls, row.priced_calls) == (2, 1, 1)
    assert row.cost_micro_usd == 1500
    record = (await app.aget_record("w")).usage
    assert record is not None and record.total.unknown_cost_calls == 1
    spend = await app.store.ai_spend("w", "team")
    assert (spend.calls, spend.unknown_cost_calls, spend.micro_usd) == (2, 1, 1500)
    await _next_run_is_admitted(app, provider)


@pytest.mark.parametrize("canceller", ["this", "other"])
async def test_a_call_its_runs_cancel_cut_short_is_logged_of_unknown_cost(
    app: App, server: ProviderServer, database_url: str, clock: FakeClock, canceller: str
) -> None:
    """The attempt's rows went with its refused write: the cut call was logged for a
    step timeout, and left out for a cancel (as was every answered call of a step
    attempt the cancel cut short)."""

    @app.workflow(name="two", budget=TEAM)
    async def two(wf: Workflow) -> str:
        async def outer() -> str:
            await wf.ai.generate_text("openai:m", prompt="first")  # answered, priced
            server.drip_next()
            await wf.ai.generate_text("openai:m", prompt="second")  # held: cut
            return "not cut"

        return await wf.step("outer", outer)

    drive = asyncio.create_task(app.arun(two, workflow_id="w"))
    await eventually(lambda: server.state.dripping == 1)
    await _cancelled(app, drive, canceller, database_url, clock)
    answered, cut_short = await app.alist_ai_calls("w")
    assert answered.error is None and answered.cost_micro_usd == 1500
    assert cut_short.billed and cut_short.cost_unknown
    assert "cut short before" in (cut_short.error or "")
    spend = await app.store.ai_spend("w", "team")
    assert (spend.calls, spend.unknown_cost_calls, spend.micro_usd) == (2, 1, 1500)
    record = await app.aget_record("w")
    assert all(s.status.value != "running" for s in record.steps.values()), record.steps
