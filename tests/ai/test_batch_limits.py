"""A batch past what the provider's batches hold (OpenAI: 50,000 requests or a 200 MB
file; Anthropic: 100,000 or 256 MB) is refused before anything is sent, saying how to
split it. OpenAI took the upload and failed the batch at validation: the run learned
it at its first poll. Against the real local server."""

from __future__ import annotations

import pytest

from tether import App, FakeClock, Workflow, ai
from tether.errors import InvalidArgumentError

from ._server import ProviderServer

CASES = [
    ("openai:gpt-4.1-mini", "POST /v1/files", 50_001, "OpenAI's batches take (50,000)"),
    ("anthropic:claude-sonnet-4-5", "POST /v1/messages/batches", 100_001,
     "Anthropic's batches take (100,000)"),
]  # fmt: skip


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )
    return App(database_url, clock=clock, ai=providers, inline_wait=0)


@pytest.mark.parametrize(("model", "sent", "many", "said"), CASES)
async def test_more_requests_than_a_batch_holds_are_refused_before_sending(
    database_url: str,
    clock: FakeClock,
    server: ProviderServer,
    model: str,
    sent: str,
    many: int,
    said: str,
) -> None:
    app = _app(database_url, clock, server)

    @app.workflow(name="big")
    async def big(wf: Workflow) -> str:
        with pytest.raises(InvalidArgumentError) as refused:
            await wf.ai.batch(model, ["x"] * many)
        return str(refused.value)

    try:
        message = (await app.arun(big, workflow_id="big")).value
        assert f"a batch of {many:,} requests is more than {said}" in message
        assert "split the requests into batches" in message
        assert server.count(sent) == 0  # nothing was sent
    finally:
        await app.aclose()


def _items(count: int, size: int) -> list[ai.BatchItem]:
    request = ai.TextRequest(messages=[ai.Message(role="user", content="x" * size)])
    return [ai.BatchItem(custom_id=str(n), request=request) for n in range(count)]


def test_requests_past_the_size_a_batch_holds_are_refused() -> None:
    """Counted in characters of JSON: 3 requests of 80 MB are past OpenAI's 200 MB."""
    items = _items(3, 80_000_000)
    with pytest.raises(InvalidArgumentError, match=r"are 240 MB of JSON, more than OpenAI"):
        ai.OpenAI(api_key="k").batch_check(items)
    ai.OpenAI(api_key="k").batch_check(items[:2])  # 160 MB: taken


def test_a_compatible_server_keeps_its_own_limits() -> None:
    server = ai.OpenAICompatible(base_url="http://127.0.0.1:9/v1")
    server.batch_check(_items(50_001, 1))  # not OpenAI's 50,000
