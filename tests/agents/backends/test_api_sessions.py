"""The api backend keeps a bounded number of conversations (least recently used
dropped), against a real local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ai._server import ProviderServer
from tether.agents import parse_workflow
from tether.agents._factory import make_backend
from tether.agents.backends import AgentEvent, ApiBackend, TurnRequest, TurnResult

from .test_api_backend import _providers, _sent


async def _say(backend: ApiBackend, ws: Path, prompt: str, session: str | None) -> TurnResult:
    async def on_event(event: AgentEvent) -> None:
        return None

    request = TurnRequest(prompt, ws, 1, 1, session, {}, 60.0)
    try:
        return await backend.run_turn(request, on_event)
    finally:
        await backend.aclose()


async def test_only_the_most_recently_used_sessions_are_kept(
    tmp_path: Path, server: ProviderServer
) -> None:
    """Before: every session's history stayed in `sessions` for the life of the
    process, so a dispatcher running thousands of issues grew without bound."""
    for _ in range(5):
        server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini", max_sessions=2)
    a = (await _say(backend, tmp_path, "first a", None)).session_id
    b = (await _say(backend, tmp_path, "first b", None)).session_id
    assert (await _say(backend, tmp_path, "again a", a)).session_id == a  # a: the newest now
    c = (await _say(backend, tmp_path, "first c", None)).session_id  # b, the oldest, dropped
    assert list(backend.sessions) == [a, c]
    fresh = await _say(backend, tmp_path, "again b", b)  # as an unknown session: a new one
    assert fresh.session_id not in {a, b, c} and list(backend.sessions) == [c, fresh.session_id]
    asked = [
        [m["content"] for m in body["messages"][1:]]
        for body in _sent(server, "/v1/chat/completions")
    ]
    assert asked[2] == ["first a", "ok", "again a"]  # a kept its conversation
    assert asked[4] == ["again b"]  # b's was dropped


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bound_that_keeps_nothing_is_refused(server: ProviderServer, bad: object) -> None:
    with pytest.raises(ValueError, match="max_sessions must be a whole number of at least 1"):
        ApiBackend(_providers(server), "openai:gpt-4.1-mini", max_sessions=bad)  # type: ignore[arg-type]


def test_workflow_md_sets_how_many_conversations_are_kept(server: ProviderServer) -> None:
    wf = parse_workflow(
        "---\ntracker: {kind: linear, team: ENG, api_key: k}\n"
        'agent: {backend: api, model: "openai:gpt-4.1-mini", max_sessions: 7}\n---\n'
    )
    backend = make_backend(wf, _providers(server))
    assert isinstance(backend, ApiBackend) and backend.max_sessions == 7
