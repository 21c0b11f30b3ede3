"""A lone surrogate ("\ud800", left by a bad decode or a split emoji) in a prompt
cannot be sent as UTF-8: it is an `InvalidArgumentError` naming the request and what
to do, before anything is sent, not a raw PydanticSerializationError. The official
SDKs talk to a real local server; time is a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from tether import FakeClock, InvalidArgumentError, Workflow, ai

from ._server import ProviderServer
from .test_batches_walk import MODELS, _app

SAYS = "a lone surrogate UTF-8 cannot encode (no provider takes it); remove or replace it"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_lone_surrogate_in_a_batch_prompt_is_named_before_the_submit(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="b")
    async def b(wf: Workflow) -> Any:
        return await wf.ai.batch(
            MODELS[provider], ["fine", {"custom_id": "q2", "prompt": "x\ud800"}]
        )

    with pytest.raises(InvalidArgumentError) as caught:
        await app.arun(b, workflow_id="b")
    message = str(caught.value)
    assert message.startswith("batch request 1: the request's messages[0].content holds")
    assert SAYS in message and "custom_id 'q2'" in message
    assert not server.state.counts  # nothing was sent
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_lone_surrogate_in_a_call_is_named_before_it_is_sent(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="c")
    async def c(wf: Workflow) -> Any:
        return await wf.ai.generate_text(MODELS[provider], "ok", system="be \udfff brief")

    with pytest.raises(InvalidArgumentError, match="the request's system holds '\\\\udfff'"):
        await app.arun(c, workflow_id="c")
    assert not server.state.counts
    await app.aclose()


def test_the_size_check_names_the_request_it_cannot_encode() -> None:
    """A provider's `batch_check` called on items made elsewhere (not by `wf.ai.batch`)."""
    msg = ai.Message(role="user", content="\ud800")
    items = [ai.BatchItem(custom_id="z", request=ai.TextRequest(messages=[msg]))]
    with pytest.raises(InvalidArgumentError, match=r"batch request 0 \(custom_id 'z'\)"):
        ai.OpenAI(api_key="k").batch_check(items)
