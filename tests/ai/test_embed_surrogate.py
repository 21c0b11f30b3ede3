"""A lone surrogate ("\ud800") in a text to embed cannot be sent as UTF-8: it is an
`InvalidArgumentError` naming the text and what to do, before anything is sent or
logged, as for chat and batch requests. The official SDK talks to a real local
server; time is a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from tether import FakeClock, InvalidArgumentError, Workflow

from ._server import ProviderServer
from .test_batches_walk import _app

SAYS = "a lone surrogate UTF-8 cannot encode (no provider takes it); remove or replace it"


@pytest.mark.parametrize(
    ("inputs", "where"),
    [("x\ud800", "the text to embed holds"), (["fine", "a\udfffb"], "text 1 to embed holds")],
)
async def test_a_lone_surrogate_in_a_text_to_embed_is_named_before_it_is_sent(
    database_url: str, clock: FakeClock, server: ProviderServer, inputs: Any, where: str
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="e")
    async def e(wf: Workflow) -> Any:
        return await wf.ai.embed("openai:text-embedding-3-small", inputs)

    try:
        with pytest.raises(InvalidArgumentError) as caught:
            await app.arun(e, workflow_id="e")
        assert where in str(caught.value) and SAYS in str(caught.value)
        assert not server.state.counts  # nothing was sent
        assert await app.alist_ai_calls("e") == []  # nor logged
    finally:
        await app.aclose()
