"""A cancel never leaves a provider batch running unseen: an App that cannot reach a
run's batches (no such provider, the pipeline not registered) refuses the cancel
and changes nothing, unless told to abandon them. A real local server speaks
OpenAI's wire format; time is a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, BatchesOutError, FakeClock, RunStatus, Workflow, ai

from .ai._server import ProviderServer


def _providers(server: ProviderServer) -> ai.Providers:
    return ai.Providers(openai=ai.OpenAI(api_key="k", base_url=server.openai_url))


async def _batched_run(
    database_url: str, clock: FakeClock, server: ProviderServer, wid: str
) -> None:
    """Run `wid` until it parks on an OpenAI batch, from an App that has the provider."""
    async with App(database_url, clock=clock, ai=_providers(server), inline_wait=0) as app:

        @app.workflow(name="batched")
        async def batched(wf: Workflow) -> int:
            res = await wf.ai.batch("openai:gpt-4.1-mini", ["a", "b"], poll_every=3600)
            return len(res.items)

        await app.arun(batched, workflow_id=wid)


async def test_an_app_without_the_provider_refuses_and_changes_nothing(
    database_url: str, server: ProviderServer
) -> None:
    clock = FakeClock()
    await _batched_run(database_url, clock, server, "b1")
    [batch] = server.state.batches.values()
    async with App(database_url, clock=clock) as bare:
        with pytest.raises(BatchesOutError) as caught:
            await bare.acancel("b1")
        assert caught.value.batches == [f"openai batch {batch['id']!r}"]
        assert "abandon_batches=True" in str(caught.value)
        assert (await bare.aget_run("b1")).status is RunStatus.WAITING  # nothing cancelled
    async with App(database_url, clock=clock, ai=_providers(server)) as app:
        assert await app.acancel("b1") == ["b1"]
    assert batch["status"] in ("cancelling", "cancelled")  # the provider was told


async def test_abandon_batches_cancels_the_run_and_leaves_the_batch(
    database_url: str, server: ProviderServer
) -> None:
    clock = FakeClock()
    await _batched_run(database_url, clock, server, "b2")
    async with App(database_url, clock=clock) as bare:
        assert await bare.acancel("b2", abandon_batches=True) == ["b2"]
        assert (await bare.aget_run("b2")).status is RunStatus.CANCELLED
    [batch] = server.state.batches.values()
    assert batch["status"] == "in_progress"  # left running, as asked


async def test_a_child_runs_batch_counts_for_its_parent(
    database_url: str, server: ProviderServer
) -> None:
    clock = FakeClock()
    async with App(database_url, clock=clock, ai=_providers(server), inline_wait=0) as app:

        @app.workflow(name="child")
        async def child(wf: Workflow) -> int:
            res = await wf.ai.batch("openai:gpt-4.1-mini", ["a"], poll_every=3600)
            return len(res.items)

        @app.workflow(name="parent")
        async def parent(wf: Workflow) -> int:
            return int(await wf.child(child, workflow_id="kid"))

        await app.arun(parent, workflow_id="mum")
    async with App(database_url, clock=clock) as bare:
        with pytest.raises(BatchesOutError, match="'mum' has openai batch"):
            await bare.acancel("mum")


class Job(BaseModel):
    name: str


CANCELLED: list[str] = []  # the "provider": the batch ids it was told to cancel


@tether.batch_stage(id="summarise", input=Job, output=Job)
async def summarise(ctx: tether.StageContext[Job, None]) -> tether.Suspend:
    return tether.Suspend({"batch_id": "j1"}, poll_every=3600)


@summarise.check
async def _check(state: dict[str, Any], ctx: tether.StageContext[Job, None]) -> Any:
    return tether.NotReady()


@summarise.on_cancel
async def _cancel(state: dict[str, Any]) -> None:
    CANCELLED.append(state["batch_id"])


docs = tether.Pipeline("docs", input=Job, output=Job).pipe(summarise)


async def test_a_batch_stage_of_an_unregistered_pipeline_is_refused(database_url: str) -> None:
    CANCELLED.clear()
    clock = FakeClock()
    async with App(database_url, clock=clock, inline_wait=0) as app:
        app.register(docs)
        await app.arun(docs, Job(name="a"), workflow_id="p1")
        assert (await app.aget_run("p1")).status is RunStatus.WAITING
    async with App(database_url, clock=clock) as bare:
        with pytest.raises(BatchesOutError, match="batch stage 'summarise'"):
            await bare.acancel("p1")
    assert CANCELLED == []
    async with App(database_url, clock=clock) as app:
        app.register(docs)
        assert await app.acancel("p1") == ["p1"]
    assert CANCELLED == ["j1"]
