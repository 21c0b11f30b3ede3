"""Anthropic's message batches take a request's custom_id only if it matches
^[a-zA-Z0-9_-]{1,64}$: a batch with another is refused before anything is sent,
naming the id and the rule, rather than refused by Anthropic (or taken by a proxy
and answered under an id tether does not know). Against the real local server."""

from __future__ import annotations

import re

import pytest

from tether import App, FakeClock, RunStatus, Workflow, ai
from tether.ai._types import BatchItem, Message, TextRequest
from tether.errors import InvalidArgumentError

from ._server import ProviderServer

MODEL = "anthropic:claude-sonnet-4-5"
BATCHES = "POST /v1/messages/batches"


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    anthropic = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    return App(database_url, clock=clock, ai=ai.Providers(anthropic=anthropic), inline_wait=0)


@pytest.mark.parametrize(
    ("bad", "said"),
    [("item 1", "'item 1'"), ("x" * 65, repr("x" * 65)), ("", "''"), ("é", "'é'")],
)
async def test_a_batch_with_a_custom_id_anthropic_refuses_is_not_sent(
    database_url: str, clock: FakeClock, server: ProviderServer, bad: str, said: str
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> str:
        requests = [{"custom_id": "ok-1", "prompt": "a"}, {"custom_id": bad, "prompt": "b"}]
        with pytest.raises(InvalidArgumentError) as refused:
            await wf.ai.batch(MODEL, requests)
        return str(refused.value)

    try:
        message = (await app.arun(batched, workflow_id="bad")).value
        assert f"batch request 1 has custom_id {said}" in message
        assert "must match ^[a-zA-Z0-9_-]{1,64}$" in message
        assert server.count(BATCHES) == 0  # nothing was sent
        assert await app.alist_ai_calls("bad") == []
    finally:
        await app.aclose()


async def test_the_provider_refuses_it_on_its_own_too(server: ProviderServer) -> None:
    """Called directly (outside a workflow), the adapter checks before it sends."""
    provider = ai.Anthropic(api_key="k", base_url=server.anthropic_url)
    items = [
        BatchItem(
            custom_id="item 1", request=TextRequest(messages=[Message(role="user", content="a")])
        )
    ]
    try:
        with pytest.raises(InvalidArgumentError, match=re.escape("rename it, e.g. 'item_1'")):
            await provider.batch_submit("claude-sonnet-4-5", items)
        assert server.count(BATCHES) == 0
    finally:
        await provider.aclose()


async def test_ids_within_the_rule_are_sent_as_they_are(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    ids = ["a", "A-z_09", "y" * 64]

    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> list[str]:
        requests = [{"custom_id": i, "prompt": i} for i in ids]
        return list((await wf.ai.batch(MODEL, requests, poll_every=60)).items)

    try:
        assert (await app.arun(batched, workflow_id="good")).status is RunStatus.WAITING
        server.finish_batches()
        clock.advance(60)
        await app.afire_due_timers()
        done = await app.aresult("good", timeout=10)
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        assert done.value == ids
        assert server.count(BATCHES) == 1
    finally:
        await app.aclose()
