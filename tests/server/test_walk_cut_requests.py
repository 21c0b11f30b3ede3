"""Requests a walk of the API found mishandled: one whose client left before its body
came is not acted on (a cancel whose body never arrived cancelled the run), and an
API token's empty name is refused in a string's words, not a list's ("items"); the
client takes tags as `App.start` does, a set too (it raised a bare TypeError)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tether import RunStatus
from tether.testing import eventually


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tether.App]:
    app = tether.App(f"sqlite:///{tmp_path / 'cut.db'}")

    @app.workflow(name="waits")
    async def waits(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go")

    yield app
    await app.aclose()


async def test_a_cancel_whose_body_never_came_cancels_nothing(app: tether.App) -> None:
    asgi = app.asgi(allow_unauthenticated=True)
    wid = await app.astart(app.get_workflow("waits").fn)

    async def parked() -> bool:
        return (await app.aget_run(wid)).status is RunStatus.WAITING

    await eventually(parked, timeout=30)
    sent: list[dict[str, Any]] = []

    async def gone() -> dict[str, Any]:  # the client left after its headers
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/runs/{wid}/cancel",
        "raw_path": f"/api/v1/runs/{wid}/cancel".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"40"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    await asgi(scope, gone, send)
    assert (await app.aget_run(wid)).status is RunStatus.WAITING
    assert sent == []  # nobody is there to answer
    # the same cancel, whole, still cancels
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        done = await http.post(f"/api/v1/runs/{wid}/cancel", json={"reason": "whole"})
    assert done.status_code == 200, done.text
    assert (await app.aget_run(wid)).status is RunStatus.CANCELLED


async def test_an_api_token_of_an_empty_name_is_refused_in_a_strings_words(
    app: tether.App,
) -> None:
    transport = httpx.ASGITransport(app=app.asgi(allow_unauthenticated=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        refused = await http.post("/api/v1/api-tokens", json={"scope": "read", "name": ""})
        named = await http.post("/api/v1/api-tokens", json={"scope": "read", "name": "ci"})
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["error"]["details"]
    assert problem["field"] == "body.name"
    assert problem["message"] == "String should have at least 1 character"
    assert named.status_code == 201, named.text
    assert named.json()["info"]["name"] == "ci"


async def test_the_client_takes_tags_as_a_set_as_app_start_does(app: tether.App) -> None:
    transport = httpx.ASGITransport(app=app.asgi(allow_unauthenticated=True))
    async with tether.AsyncClient("http://127.0.0.1", transport=transport) as client:
        wid = await client.start("waits", tags={"nightly"}, tenant="t")
        (run,) = (await client.list_runs(tag="nightly")).runs
    assert (run.workflow_id, run.tags) == (wid, ["nightly"])
