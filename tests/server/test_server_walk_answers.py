"""Answers a client could not read, and requests a server could not: another program
at the client's URL, a query time whose '+' the URL turned into a space. Each is told
what was wrong, never a bare decode error or an event stream read as no events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from tether import AsyncClient, Client
from tether.server import ApiError

from ._serve import Served, answering, serving

PAGE = b"<!doctype html><html><body>welcome to the admin panel</body></html>"


@pytest.fixture(params=["page", "json"])
def other(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a real HTTP server that is not tether's: a web page, or JSON of
    another service."""
    kind, body = {
        "page": ("text/html", PAGE),
        "json": ("application/json", json.dumps({"status": "ok", "version": 3}).encode()),
    }[request.param]
    with serving(answering(kind, body)) as url:
        yield url


def _refused(url: str, error: ApiError) -> None:
    assert error.code == "not_tether" and error.status == 200, error
    assert url in error.message and "without /api/v1" in error.message


def test_a_client_at_another_programs_address_is_told_so(other: str) -> None:
    with Client(other) as client:
        for call in (
            client.list_runs,
            lambda: client.start("hello", "Ada"),
            lambda: client.get_record("r1"),
            lambda: client.events("r1"),
            lambda: client.signal("r1", "go"),
        ):
            with pytest.raises(ApiError) as caught:
                call()
            _refused(other, caught.value)
        with pytest.raises(ApiError) as caught:  # not an empty stream: no events at all
            list(client.stream_events("r1"))
        _refused(other, caught.value)


def test_the_async_client_at_another_programs_address_is_told_so(other: str) -> None:
    async def main() -> list[ApiError]:
        found = []
        async with AsyncClient(other) as client:
            for call in (client.list_runs, lambda: client.get_record("r1")):
                try:
                    await call()
                except ApiError as exc:
                    found.append(exc)
            try:
                [e async for e in client.stream_events("r1")]
            except ApiError as exc:
                found.append(exc)
        return found

    found = asyncio.run(main())
    assert len(found) == 3
    for error in found:
        _refused(other, error)


def test_a_query_time_whose_plus_became_a_space_is_told_how_to_send_it(served: Served) -> None:
    for path in ("/api/v1/runs?created_after=", "/api/v1/usage?since="):
        # as curl sends it when typed: the '+' unencoded, so the server reads a space
        answer = httpx.get(served.url + path + "2026-12-01T00:00:00+01:00")
        assert answer.status_code == 422, answer.text
        assert "%2B01:00" in answer.json()["error"]["message"]
    encoded = httpx.get(served.url + "/api/v1/runs?created_after=2026-12-01T00:00:00%2B01:00")
    assert encoded.status_code == 200 and encoded.json()["runs"] == []
    typo = httpx.get(served.url + "/api/v1/runs?created_after=2026-13-01T00:00:00Z")
    assert typo.status_code == 422 and "%2B" not in typo.json()["error"]["message"]
