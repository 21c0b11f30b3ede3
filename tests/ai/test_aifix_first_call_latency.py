"""A call's `latency_ms` is the provider's time, from when the request is sent: not
the building of the provider's SDK client (importing the SDK, making its HTTP
client) that the first call of a process (of an event loop) pays. Against the real
local server, on a fake clock that building advances by two seconds, as a slow
import would; the server answers at once, so the provider's time is 0."""

from __future__ import annotations

from typing import Any

from tether import App, FakeClock, Workflow, ai

from ._server import ProviderServer

BUILD_SECONDS = 2.0


class _SlowToBuild(ai.Anthropic):
    """The Anthropic adapter whose client takes BUILD_SECONDS on the App's clock to
    build (the real client, built as the adapter builds it)."""

    def __init__(self, clock: FakeClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.built = 0

    def _client(self) -> Any:
        self.clock.advance(BUILD_SECONDS)
        self.built += 1
        return super()._client()


class _SlowOpenAI(ai.OpenAI):
    def __init__(self, clock: FakeClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def _client(self) -> Any:
        self.clock.advance(BUILD_SECONDS)
        return super()._client()


async def test_the_first_calls_latency_leaves_out_building_the_client(
    database_url: str, server: ProviderServer
) -> None:
    clock = FakeClock()
    anthropic = _SlowToBuild(clock, api_key="k", base_url=server.anthropic_url)
    openai = _SlowOpenAI(clock, api_key="k", base_url=server.openai_url)
    app = App(database_url, clock=clock, ai=ai.Providers(anthropic=anthropic, openai=openai))

    @app.workflow(name="asks")
    async def asks(wf: Workflow) -> list[str]:
        first = await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="one")
        second = await wf.ai.generate_text("anthropic:claude-sonnet-4-5", prompt="two")
        await wf.ai.embed("openai:text-embedding-3-small", ["three"])
        return [first.text, second.text]

    try:
        done = await app.arun(asks, workflow_id="first")
        assert done.value == ["echo", "echo"]  # the server's Anthropic answer
        assert anthropic.built == 1  # the first call built it; the second reused it
        calls = await app.alist_ai_calls("first")
        assert [(c.call_type, c.latency_ms) for c in calls] == [
            ("text", 0),
            ("text", 0),
            ("embed", 0),
        ]
    finally:
        await app.aclose()
