"""The `api` backend: a tool loop on tether.ai, driven by a dispatcher, against a real
local server speaking OpenAI's and Anthropic's wire formats through the official SDKs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

import tether
from tests.ai._server import ProviderServer
from tether import ai
from tether.agents import Dispatcher, Issue, WorkflowFileError, parse_workflow
from tether.agents.backends import AgentEvent, ApiBackend, TurnRequest
from tether.agents.trackers import MemoryTracker


def _providers(server: ProviderServer) -> ai.Providers:
    return ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url),
    )


@pytest.fixture
async def app(tmp_path: Path, server: ProviderServer) -> AsyncIterator[tether.App]:
    the_app = tether.App(
        f"sqlite:///{tmp_path}/t.db",
        clock=tether.FakeClock(),
        inline_wait=5.0,
        ai=_providers(server),
    )
    yield the_app
    await the_app.aclose()


def _workflow(tmp: Path, model: str) -> tether.agents.WorkflowFile:
    return parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: api, model: "{model}", max_turns: 1, stall_timeout_ms: 0}}
---
Fix {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )


def _tracker() -> MemoryTracker:
    return MemoryTracker([Issue(id="1", identifier="ENG-1", title="Typo", state="todo")])


def _sent(server: ProviderServer, path: str) -> list[dict[str, Any]]:
    return [body for p, body in server.state.bodies if p == path]


async def test_openai_tool_loop_edits_the_workspace_and_records_priced_usage(
    app: tether.App, tmp_path: Path, server: ProviderServer
) -> None:
    server.queue_chat(
        "",
        prompt_tokens=1000,
        completion_tokens=50,
        tool_calls=[
            ("write_file", {"path": "src/fix.txt", "content": "fixed\n"}),
            ("run_command", {"command": "cat src/fix.txt; echo $TETHER_ISSUE_IDENTIFIER"}),
        ],
    )
    server.queue_chat("", prompt_tokens=1200, completion_tokens=30, tool_calls=[("list_files", {})])
    server.queue_chat("Fixed the typo.", prompt_tokens=1300, completion_tokens=10)
    tracker = _tracker()
    await Dispatcher(app, _workflow(tmp_path, "openai:gpt-4.1-mini"), tracker=tracker).run_once()

    ws = tmp_path / "ws" / "ENG-1"
    assert (ws / "src" / "fix.txt").read_text() == "fixed\n"
    assert tracker.issues["1"].state == "review"
    asked = _sent(server, "/v1/chat/completions")
    assert len(asked) == 3
    assert asked[0]["messages"][-1] == {"role": "user", "content": "Fix ENG-1"}
    assert {t["function"]["name"] for t in asked[0]["tools"]} >= {"read_file", "run_command"}
    # the second request carries the assistant's calls and one answer per call, by id
    second = asked[1]["messages"]
    calls = second[-3]["tool_calls"]
    assert second[-3]["role"] == "assistant" and len(calls) == 2
    answers = second[-2:]
    assert [a["tool_call_id"] for a in answers] == [c["id"] for c in calls]
    assert answers[0]["content"].startswith("wrote 6 bytes to src/fix.txt")
    assert answers[1]["content"] == "exit code 0\nfixed\nENG-1\n"
    assert asked[2]["messages"][-1]["content"] == "src/"

    [row] = await app.alist_ai_calls("agent:memory:ENG-1")  # the turn, once
    assert (row.input_tokens, row.output_tokens) == (3500, 90)
    # gpt-4.1-mini: $0.40 in, $1.60 out per million tokens
    assert row.cost_micro_usd == round(3500 * 0.4 + 90 * 1.6)
    assert row.provider == "api" and row.model == "openai:gpt-4.1-mini"


async def test_anthropic_tool_loop_answers_with_tool_result_blocks(
    app: tether.App, tmp_path: Path, server: ProviderServer
) -> None:
    server.queue_message(
        "Reading first.", tool_uses=[("read_file", {"path": "README"})], input_tokens=100
    )
    server.queue_message("Done.", input_tokens=200)
    (tmp_path / "ws" / "ENG-1").mkdir(parents=True)
    (tmp_path / "ws" / "ENG-1" / "README").write_text("hello")
    await Dispatcher(
        app, _workflow(tmp_path, "anthropic:claude-sonnet-4-5"), tracker=_tracker()
    ).run_once()
    asked = _sent(server, "/v1/messages")
    assert len(asked) == 2 and {t["name"] for t in asked[0]["tools"]} >= {"write_file"}
    assistant, answer = asked[1]["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use"]
    assert answer == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": assistant["content"][1]["id"],
                "content": "hello",
            }
        ],
    }
    [row] = await app.alist_ai_calls("agent:memory:ENG-1")
    assert row.input_tokens == 300 and row.cost_micro_usd is not None


async def _turn(backend: ApiBackend, ws: Path, prompt: str = "go") -> tuple[Any, list[str]]:
    seen: list[str] = []

    async def on_event(event: AgentEvent) -> None:
        seen.append(f"{event.kind}: {event.message}")

    request = TurnRequest(prompt, ws, 1, 1, None, {}, 60.0)
    try:
        return await backend.run_turn(request, on_event), seen
    finally:
        await backend.aclose()


async def test_paths_outside_the_workspace_are_refused_and_the_model_told(
    tmp_path: Path, server: ProviderServer
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "secret.txt").write_text("s3cret")
    (ws / "link").symlink_to(tmp_path)
    server.queue_chat(
        "",
        tool_calls=[
            ("write_file", {"path": "../escape.txt", "content": "x"}),
            ("read_file", {"path": str(tmp_path / "secret.txt")}),
            ("read_file", {"path": "link/secret.txt"}),
            ("list_files", {"path": "/"}),
            ("read_file", {"path": 7}),
        ],
    )
    server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini")
    result, _ = await _turn(backend, ws)
    assert result.status == "completed"
    assert not (tmp_path / "escape.txt").exists()
    answers = [m["content"] for m in _sent(server, "/v1/chat/completions")[1]["messages"][-5:]]
    assert all(a.startswith("error: path") and "outside the workspace" in a for a in answers[:4])
    assert answers[4] == "error: path must be a string, got 7"
    assert not any("s3cret" in a for a in answers)


async def test_a_command_past_its_timeout_is_killed_with_its_children(
    tmp_path: Path, server: ProviderServer
) -> None:
    server.queue_chat(
        "",
        tool_calls=[("run_command", {"command": "(sleep 30; touch late) & sleep 30"})],
    )
    server.queue_chat("gave up")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini", command_timeout=0.5)
    result, seen = await _turn(backend, tmp_path)
    answer = _sent(server, "/v1/chat/completions")[1]["messages"][-1]["content"]
    assert answer.startswith("killed after 0.5 s") and result.status == "completed"
    assert any(s.startswith("tool_call: run_command") for s in seen)


async def test_bad_arguments_and_unknown_tools_are_answered_not_raised(
    tmp_path: Path, server: ProviderServer
) -> None:
    server.queue_chat("", tool_calls=[("format_disk", {}), ("write_file", {"path": "a"})])
    server.queue_chat("ok")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini")
    result, _ = await _turn(backend, tmp_path)
    answers = [m["content"] for m in _sent(server, "/v1/chat/completions")[1]["messages"][-2:]]
    assert answers[0].startswith("error: there is no tool 'format_disk'")
    assert answers[1] == "error: content must be a string"
    assert result.status == "completed"


async def test_request_input_ends_the_turn_and_the_answer_continues_the_session(
    app: tether.App, tmp_path: Path, server: ProviderServer
) -> None:
    server.queue_chat("", tool_calls=[("request_input", {"question": "which colour?"})])
    server.queue_chat("Painted it blue.")
    d = Dispatcher(app, _workflow(tmp_path, "openai:gpt-4.1-mini"), tracker=_tracker())
    await d.run_once()
    [row] = await d.status()
    assert row.phase == "waiting" and row.reason == "input_required: which colour?"
    await d.answer("ENG-1", "blue")
    await d.run_once()
    last = _sent(server, "/v1/chat/completions")[-1]["messages"]
    # one conversation: the question's call was answered, then the person's reply follows
    assert last[0]["role"] == "system" and last[1]["content"] == "Fix ENG-1"
    assert last[-1] == {"role": "user", "content": "blue"}
    assert last[-2]["role"] == "tool" and "asked a person" in last[-2]["content"]
    assert (await app.aget_run("agent:memory:ENG-1")).status.value == "completed"


async def test_a_turn_that_never_stops_calling_tools_fails(
    tmp_path: Path, server: ProviderServer
) -> None:
    for _ in range(3):
        server.queue_chat("", tool_calls=[("list_files", {})])
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini", max_tool_rounds=3)
    result, _ = await _turn(backend, tmp_path)
    assert result.status == "failed" and "3 times" in (result.error or "")


async def test_a_rate_limit_ends_the_turn_as_rate_limited(
    tmp_path: Path, server: ProviderServer
) -> None:
    server.fail_next(429, retry_after="7")
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini")
    result, _ = await _turn(backend, tmp_path)
    assert result.status == "rate_limited" and result.retry_after == 7


def test_workflow_file_needs_a_provider_model_for_the_api_backend(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError, match=r"agent.model must name the model"):
        _workflow(tmp_path, "gpt-4.1-mini")


def test_a_missing_key_is_named_when_the_backend_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    providers = ai.Providers(anthropic=ai.Anthropic())
    with pytest.raises(ai.MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        ApiBackend(providers, "anthropic:claude-sonnet-4-5")


def test_tool_definitions_are_json_schema_objects(server: ProviderServer) -> None:
    openai = ApiBackend(_providers(server), "openai:gpt-4.1-mini").shape.tools()  # no call made
    anthropic = ApiBackend(_providers(server), "anthropic:claude-sonnet-4-5").shape.tools()
    schemas = [t["function"]["parameters"] for t in openai] + [t["input_schema"] for t in anthropic]
    assert len(schemas) == 10
    for params in schemas:
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
    assert json.loads(json.dumps(anthropic)) == anthropic


async def test_a_rate_limit_until_an_http_date_waits_until_then(
    tmp_path: Path, server: ProviderServer
) -> None:
    """A provider (or its proxy) may send ``retry-after`` as an HTTP date, which
    tether.ai keeps as `retry_at`: the api agent read only `retry_after`, so it took
    no wait at all (the default cooldown) instead of the one asked."""
    until = datetime.now(UTC) + timedelta(minutes=10)
    server.fail_next(429, retry_after=format_datetime(until, usegmt=True))
    backend = ApiBackend(_providers(server), "openai:gpt-4.1-mini")
    result, _ = await _turn(backend, tmp_path)
    assert result.status == "rate_limited" and result.retry_after is not None
    assert 500 < result.retry_after <= 600
