"""A run stopped while its `wf.ai.batch` call is inside the submit step: the provider
has the POST and accepts the batch, but the step has not recorded its id. The run
cancelled (`app.cancel`: the step's record is refused) or the call's task cancelled
(a ``for_each`` sibling failed) left that batch running at the provider, billed,
for a run that had ended; nothing knew its id to cancel it. The provider's submit
answer is held on a gate until the run was stopped, so the order is forced."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, Workflow, ai

from ._server import ProviderServer

MODELS = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}
# the request that submits a batch, and where a batch's cancel goes
SUBMIT = {"openai": "/v1/batches", "anthropic": "/v1/messages/batches"}
CANCEL = {"openai": "/v1/batches/{}/cancel", "anthropic": "/v1/messages/batches/{}/cancel"}


class _HeldSubmit:
    """Holds the server's answer to a batch submit, the batch accepted already, until
    `gate` is set; `arrived` is set once the provider has accepted it."""

    def __init__(self, server: ProviderServer, provider: str) -> None:
        self.arrived, self.gate = threading.Event(), threading.Event()
        held, path = self, SUBMIT[provider]
        base: Any = server.httpd.RequestHandlerClass

        class Held(base):  # type: ignore[misc, valid-type]
            def _send(self, status: int, body: Any, headers: Any = None) -> None:
                if self.command == "POST" and self.path == path:
                    held.arrived.set()
                    held.gate.wait(60)
                super()._send(status, body, headers)

        server.httpd.RequestHandlerClass = Held


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )
    return App(database_url, clock=clock, ai=providers, inline_wait=0)


def _accepted(server: ProviderServer, provider: str) -> tuple[str, str]:
    """The one batch the provider accepted: its id and its state there."""
    if provider == "openai":
        [(batch_id, batch)] = server.state.batches.items()
        return batch_id, batch["status"]
    [(batch_id, batch)] = server.state.anthropic_batches.items()
    return batch_id, batch["processing_status"]


def _cancelled_there(server: ProviderServer, provider: str) -> str:
    """The accepted batch's id, once it is seen cancelled at the provider, and only once."""
    batch_id, status = _accepted(server, provider)
    assert server.state.counts[f"POST {CANCEL[provider].format(batch_id)}"] == 1
    assert status in {"cancelled", "ended"}  # Anthropic's cancelled batch has "ended"
    return batch_id


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_run_cancelled_while_its_batch_is_submitted_cancels_that_batch(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    held = _HeldSubmit(server, provider)
    app = _app(database_url, clock, server)

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> int:
        res = await wf.ai.batch(MODELS[provider], ["a", "b"], poll_every=60, max_wait=3600)
        return len(res.items)

    try:
        await app.astart(batched, workflow_id="cs")
        assert await asyncio.to_thread(held.arrived.wait, 60)  # accepted, not yet answered
        assert await app.acancel("cs") == ["cs"]  # no batch recorded yet: none to cancel
        held.gate.set()
        await app.asettle(timeout=60)  # the run's drive saw its submit through
        done = await app.aresult("cs", timeout=60)
        assert done.status is RunStatus.CANCELLED
        batch_id = _cancelled_there(server, provider)
        events = (await app.aget_record("cs")).events
        assert "ai.batch.cancel_failed" not in [e.type for e in events]
        assert batch_id not in await ai.open_batches(app.store, "cs")
    finally:
        held.gate.set()
        await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_call_cancelled_while_it_is_submitted_has_that_batch_cancelled(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """The call's task cancelled for good (the workflow moves on without it): the run's
    end cancels the batch, as it does one the call left parked on its poll timer."""
    held = _HeldSubmit(server, provider)
    app = _app(database_url, clock, server)

    @app.workflow(name="impatient")
    async def impatient(wf: Workflow) -> str:
        model = MODELS[provider]
        call = asyncio.ensure_future(wf.ai.batch(model, ["a"], poll_every=60, max_wait=3600))
        assert await asyncio.to_thread(held.arrived.wait, 60)  # accepted, not yet answered
        call.cancel()
        held.gate.set()  # the answer comes once the call was cancelled
        await asyncio.gather(call, return_exceptions=True)
        return "moved on"

    try:
        done = await app.arun(impatient, workflow_id="cc")
        assert done.status is RunStatus.COMPLETED and done.value == "moved on"
        _cancelled_there(server, provider)
    finally:
        held.gate.set()
        await app.aclose()


class N(BaseModel):
    x: int


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stage_stopped_while_its_batch_is_submitted_has_that_batch_cancelled(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """A stage of a parallel group calling ``ctx.ai.batch``, stopped as its sibling
    fails: the group cancels what it had out (`stop_batches`)."""
    held = _HeldSubmit(server, provider)
    app = _app(database_url, clock, server)
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def when_cut(task: asyncio.Task[Any]) -> None:
        while not task.cancelling() and not task.done():  # a yield, not a timed wait
            await asyncio.sleep(0)
        held.gate.set()  # the submit answers only once its stage was cancelled

    @tether.stage(id="embed", input=N, output=N)
    async def embed(ctx: tether.StageContext[N, None]) -> N:
        tasks["embed"] = asyncio.current_task()  # type: ignore[assignment]
        await ctx.ai.batch(MODELS[provider], ["a"], poll_every=60, max_wait=3600)
        return ctx.input

    @tether.stage(id="check", input=N, output=N)
    async def check(ctx: tether.StageContext[N, None]) -> N:
        await asyncio.to_thread(held.arrived.wait, 60)  # embed's batch is accepted ...
        tasks["watch"] = asyncio.ensure_future(when_cut(tasks["embed"]))
        raise ValueError("the check broke")  # ... and this sibling fails

    p = tether.Pipeline("grouped", input=N).parallel([embed, check])
    app.register(p)
    try:
        await app.astart(p, N(x=1), workflow_id="gs")
        done = await app.aresult("gs", timeout=60)
        assert done.status is RunStatus.FAILED
        assert {s.id: s.status for s in done.record.stages} == {
            "embed": "cancelled",
            "check": "failed",
        }
        _cancelled_there(server, provider)
        assert tasks["watch"].done()
    finally:
        held.gate.set()
        await app.aclose()
