"""The api agent's tools given numbers that are not (a list, a negative count): the
model is told what was wrong, against a real local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

from tests.ai._server import ProviderServer
from tether.agents.backends import ApiBackend

from .test_api_backend import _providers, _sent, _turn


async def test_bad_numbers_are_answered_not_raised_nor_obeyed(
    tmp_path: Path, server: ProviderServer
) -> None:
    """Before: ``offset: [1]`` raised TypeError out of the turn (the attempt failed, the
    model never told); ``offset: -3`` read the file's tail while saying more was left;
    ``timeout_seconds: -1`` killed ``echo`` before it ran ("killed after -1 s")."""
    (tmp_path / "notes.txt").write_text("hello world")
    server.queue_chat(
        "",
        tool_calls=[
            ("read_file", {"path": "notes.txt", "offset": [1]}),
            ("read_file", {"path": "notes.txt", "offset": -3}),
            ("run_command", {"command": "echo hi", "timeout_seconds": -1}),
            ("run_command", {"command": "echo hi", "timeout_seconds": "30"}),
            ("read_file", {"path": "notes.txt", "offset": 6, "max_chars": 3}),
        ],
    )
    server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini")
    result, _ = await _turn(backend, tmp_path)
    assert result.status == "completed"
    answers = [m["content"] for m in _sent(server, "/v1/chat/completions")[1]["messages"][-5:]]
    assert answers == [
        "error: offset must be a number of at least 0, got [1]",
        "error: offset must be a number of at least 0, got -3",
        "error: timeout_seconds must be a number of at least 1, got -1",
        "exit code 0\nhi\n",
        "wor\n[... 2 more characters; read on with offset]",
    ]
