"""`Client` and `AsyncClient` are made from one list of calls (`_wire.Calls`): the
same methods, arguments and docs; the async ones are coroutine functions."""

from __future__ import annotations

import asyncio
import inspect

import httpx

from tether import AsyncClient, Client

CALLS = [
    "list_runs", "get_record", "events", "waits", "start", "cancel", "signal", "send_event",
    "complete_token", "rerun_from", "retry_compensations", "usage", "ai_calls", "queues", "workers",
    "list_api_tokens", "create_api_token", "revoke_api_token", "openapi",
]  # fmt: skip


def test_the_twins_have_the_same_calls_with_the_same_signatures() -> None:
    sync, async_ = Client("http://x"), AsyncClient("http://x")
    for name in CALLS:
        blocking, awaited = getattr(sync, name), getattr(async_, name)
        assert not inspect.iscoroutinefunction(blocking), name
        assert inspect.iscoroutinefunction(awaited), name
        assert inspect.signature(blocking) == inspect.signature(awaited), name
        assert "self" not in inspect.signature(blocking).parameters, name
        assert blocking.__name__ == name and blocking.__doc__ == awaited.__doc__
    start = inspect.signature(Client.start)
    assert start.return_annotation == "str"  # the answer, not the Call that reads it
    assert list(start.parameters)[:3] == ["self", "workflow", "input"]


def test_a_call_is_sent_and_its_answer_read_by_both() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path == b"/api/v1/runs/a%2Fb/cancel"
        assert request.headers["Idempotency-Key"] == "k"
        return httpx.Response(200, json={"cancelled": ["a/b"]})

    with Client("http://x", transport=httpx.MockTransport(answer)) as client:
        assert client.cancel("a/b", idempotency_key="k") == ["a/b"]

    async def main() -> list[str]:
        async with AsyncClient("http://x", transport=httpx.MockTransport(answer)) as client:
            return await client.cancel("a/b", idempotency_key="k")

    assert asyncio.run(main()) == ["a/b"]
