"""The `api` backend: a tool loop on `tether.ai`, with hands confined to the workspace.

No agent CLI to install: the dispatcher asks a model (any `tether.ai`
provider: OpenAI, Anthropic, an OpenAI-compatible server) and carries out
the tools it calls, in the issue's workspace, until the model answers
without a tool call (the turn is done), asks for a person (`request_input`),
or uses up `max_tool_rounds`. The tools:

- ``read_file``, ``write_file``, ``list_files``: paths are relative to the
  workspace; a path that leaves it (``..``, an absolute path elsewhere, a
  symlink pointing out) is refused and the model is told why;
- ``run_command``: ``sh -lc`` in the workspace, in its own process group,
  killed whole after its timeout; output is truncated to its tail;
- ``request_input``: ends the turn as ``input_required`` with the question,
  which the dispatcher parks for ``tether agents answer``.

A command runs with the dispatcher's rights, as the CLI agents do; the
confinement is of the file tools and the working directory, not a sandbox.

Each model call reports its usage as a delta with its price (the App's
price table, then genai-prices), so the turn's tokens and cost land in the
AI call log once. The conversation of a session lives in this process:
a later turn of the same session continues it; after a restart the next turn
starts a new session with its continuation prompt, as with a CLI agent whose
session was lost. Only the `max_sessions` most recently used conversations are
kept (the port says when a turn starts, never when an issue ends), so a
dispatcher running for months holds a bounded number; a turn naming one
dropped since starts a new session the same way.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...ai import Anthropic, Message, ModelReply, ProviderError, Providers, TextRequest
from ...errors import InvalidArgumentError
from .._workspace import run_shell
from ._port import AgentEvent, OnEvent, TurnRequest, TurnResult, Usage

__all__ = ["ApiBackend"]

SYSTEM = (
    "You are a coding agent working on one issue in a workspace folder. Use the tools to "
    "read and change files and to run commands (tests, git) in the workspace. Paths are "
    "relative to the workspace. When the work of this turn is done, answer with a short "
    "summary and no tool call. If you cannot go on without a person, call request_input."
)

_TOOLS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "read_file",
        "Read a text file of the workspace (at most max_chars characters from offset).",
        {
            "path": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0},
            "max_chars": {"type": "integer", "minimum": 1},
        },
    ),
    (
        "write_file",
        "Write a text file of the workspace (created with its folders, or replaced).",
        {"path": {"type": "string"}, "content": {"type": "string"}},
    ),
    (
        "list_files",
        "List a folder of the workspace (folders end with '/').",
        {"path": {"type": "string"}},
    ),
    (
        "run_command",
        "Run a shell command in the workspace; its exit code and output.",
        {"command": {"type": "string"}, "timeout_seconds": {"type": "number", "minimum": 1}},
    ),
    (
        "request_input",
        "Stop and ask a person a question; the turn ends until they answer.",
        {"question": {"type": "string"}},
    ),
]
_REQUIRED = {
    "read_file": ["path"],
    "write_file": ["path", "content"],
    "list_files": [],
    "run_command": ["command"],
    "request_input": ["question"],
}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]
    problem: str | None = None  # arguments that were not a JSON object


class _Input(Exception):
    """`request_input` was called: the turn ends waiting for a person."""


class Toolbox:
    """The tools, confined to one workspace."""

    def __init__(self, root: Path, *, env: dict[str, str], timeout: float, max_output: int) -> None:
        self.root = root.resolve()
        self.env = env
        self.timeout = timeout
        self.max_output = max_output

    def path(self, given: Any) -> Path:
        """`given` inside the workspace, symlinks resolved; ValueError if it leaves it."""
        if not isinstance(given, str) or "\x00" in given:
            raise ValueError(f"path must be a string, got {given!r}")
        real = (self.root / given).resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise ValueError(f"path {given!r} is outside the workspace; use a relative path")
        return real

    async def run(self, call: ToolCall) -> str:
        """The tool's answer as text for the model; a refusal is an answer too."""
        if call.problem is not None:
            return f"error: {call.problem}"
        try:
            if call.name == "read_file":
                return self.read(call.args)
            if call.name == "write_file":
                return self.write(call.args)
            if call.name == "list_files":
                return self.list(call.args)
            if call.name == "run_command":
                return await self.command(call.args)
            if call.name == "request_input":
                raise _Input(str(call.args.get("question") or "the agent needs input"))
        except (ValueError, OSError) as exc:
            return f"error: {exc}"
        return f"error: there is no tool {call.name!r}; use one of {', '.join(_REQUIRED)}"

    def read(self, args: dict[str, Any]) -> str:
        path = self.path(args.get("path"))
        if not path.is_file():
            raise ValueError(f"{args.get('path')!r} is not a file")
        offset = int(_number(args, "offset", 0, least=0))
        limit = int(_number(args, "max_chars", self.max_output, least=1))
        text = path.read_text("utf-8", errors="replace")
        part = text[offset : offset + min(limit, self.max_output)]
        rest = len(text) - offset - len(part)
        return part + (f"\n[... {rest} more characters; read on with offset]" if rest > 0 else "")

    def write(self, args: dict[str, Any]) -> str:
        path = self.path(args.get("path"))
        content = args.get("content")
        if not isinstance(content, str):
            raise ValueError("content must be a string")
        if path == self.root or path.is_dir():
            raise ValueError(f"{args.get('path')!r} is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, "utf-8")
        return f"wrote {len(content.encode())} bytes to {path.relative_to(self.root)}"

    def list(self, args: dict[str, Any]) -> str:
        path = self.path(args.get("path") or ".")
        if not path.is_dir():
            raise ValueError(f"{args.get('path')!r} is not a folder")
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        shown = names[:500]
        more = f"\n[... {len(names) - 500} more]" if len(names) > 500 else ""
        return "\n".join(shown) + more if shown else "(empty)"

    async def command(self, args: dict[str, Any]) -> str:
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("command must be a non-empty string")
        timeout = min(_number(args, "timeout_seconds", self.timeout, least=1), self.timeout)
        # its output in a file, its tail kept: `yes` for minutes costs no memory, and a
        # daemon it started (holding the output open) does not hold the turn up
        code, text, size = await run_shell(
            command,
            self.root,
            timeout=timeout,
            limit=self.max_output,
            env={**os.environ, **self.env},
        )
        head = f"exit code {code}" if code is not None else f"killed after {timeout:g} s"
        cut = size - self.max_output
        return f"{head}\n" + (f"[... {cut} bytes cut]\n" if cut > 0 else "") + text


class _OpenAIShape:
    """Tools and tool calls in OpenAI's chat completions format (OpenAI-compatible too)."""

    @staticmethod
    def tools() -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {"name": name, "description": doc, "parameters": _schema(name, p)},
            }
            for name, doc, p in _TOOLS
        ]

    @staticmethod
    def calls(reply: ModelReply) -> list[ToolCall]:
        out = []
        for tc in reply.tool_calls:
            fn = tc.get("function") or {}
            args, problem = _arguments(fn.get("arguments"))
            out.append(ToolCall(str(tc.get("id")), str(fn.get("name")), args, problem))
        return out

    @staticmethod
    def assistant(reply: ModelReply) -> Message:
        return Message(role="assistant", content=reply.text, tool_calls=reply.tool_calls or None)

    @staticmethod
    def answers(results: list[tuple[ToolCall, str]]) -> list[Message]:
        return [Message(role="tool", content=text, tool_call_id=c.id) for c, text in results]


class _AnthropicShape:
    """Tools and tool calls in Anthropic's Messages format."""

    @staticmethod
    def tools() -> list[dict[str, Any]]:
        return [
            {"name": name, "description": doc, "input_schema": _schema(name, p)}
            for name, doc, p in _TOOLS
        ]

    @staticmethod
    def calls(reply: ModelReply) -> list[ToolCall]:
        out = []
        for block in reply.tool_calls:
            args = block.get("input")
            problem = None if isinstance(args, dict) else "the tool input must be an object"
            out.append(ToolCall(str(block.get("id")), str(block.get("name")), args or {}, problem))
        return out

    @staticmethod
    def assistant(reply: ModelReply) -> Message:
        text = [{"type": "text", "text": reply.text}] if reply.text else []
        return Message(role="assistant", content=[*text, *reply.tool_calls])

    @staticmethod
    def answers(results: list[tuple[ToolCall, str]]) -> list[Message]:
        parts = [
            {"type": "tool_result", "tool_use_id": c.id, "content": text} for c, text in results
        ]
        return [Message(role="user", content=parts)]


class ApiBackend:
    """``agent: {backend: api, model: "anthropic:claude-sonnet-4-5"}`` in WORKFLOW.md.

    `providers` are the App's (``App(ai=...)``); `model` is ``provider:model``.
    `max_tool_rounds` bounds the model calls of one turn; `command_timeout`
    caps one `run_command`; `max_output` caps what a tool hands back;
    `max_sessions` is how many conversations are kept, the least recently used
    dropped first (a turn continuing one dropped starts a new session).
    """

    name = "api"

    def __init__(
        self,
        providers: Providers,
        model: str,
        *,
        max_tool_rounds: int = 50,
        command_timeout: float = 300.0,
        max_output: int = 20_000,
        max_tokens: int = 4096,
        system: str = SYSTEM,
        max_sessions: int = 100,
    ) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise InvalidArgumentError(
                f"max_sessions must be a whole number of at least 1, got {max_sessions!r}; "
                "pass e.g. max_sessions=100"
            )
        self.providers = providers
        self.provider_name, self.provider, self.model_id = providers.resolve(model)
        self.provider.check()  # a missing key fails when the backend is built, naming it
        self.model = model
        self.shape = _AnthropicShape if isinstance(self.provider, Anthropic) else _OpenAIShape
        self.max_tool_rounds = max_tool_rounds
        self.command_timeout = command_timeout
        self.max_output = max_output
        self.max_tokens = max_tokens
        self.system = system
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, list[Message]] = OrderedDict()  # oldest use first

    async def aclose(self) -> None:
        """Close the model clients this event loop opened (a later turn opens new ones)."""
        await self.providers.aclose()

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult:
        session = request.session_id if request.session_id in self.sessions else None
        session = session or f"api-{uuid.uuid4().hex[:16]}"
        history = self.sessions.get(session, [])
        self._keep(session, history)
        history.append(Message(role="user", content=request.prompt))
        try:
            return await self._loop(request, session, history, on_event)
        finally:  # kept again at its end: others started meanwhile do not drop it
            self._keep(session, history)

    def _keep(self, session: str, history: list[Message]) -> None:
        """Keep `session` as the most recently used, dropping the least recently used
        beyond `max_sessions`."""
        self.sessions[session] = history
        self.sessions.move_to_end(session)
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)

    async def _loop(
        self, request: TurnRequest, session: str, history: list[Message], on_event: OnEvent
    ) -> TurnResult:
        tools = Toolbox(
            request.workspace,
            env=request.env,
            timeout=self.command_timeout,
            max_output=self.max_output,
        )
        await on_event(AgentEvent("session", message=self.model, session_id=session))
        for _ in range(self.max_tool_rounds):
            try:
                reply = await self._ask(history, session, on_event)
            except ProviderError as exc:
                return _refused(exc, session)
            history.append(self.shape.assistant(reply))
            calls = self.shape.calls(reply)
            if not calls:
                return TurnResult("completed", session, message=reply.text)
            results, question = await self._carry_out(calls, tools, session, on_event)
            history += self.shape.answers(results)
            if question is not None:  # the person's answer comes as the next turn's prompt
                return TurnResult("input_required", session, message=question)
        return TurnResult(
            "failed",
            session,
            error=f"the model called tools {self.max_tool_rounds} times without ending the "
            "turn; raise max_tool_rounds or split the issue",
        )

    async def _ask(self, history: list[Message], session: str, on_event: OnEvent) -> ModelReply:
        req = TextRequest(
            messages=list(history),
            system=self.system,
            tools=self.shape.tools(),
            max_tokens=self.max_tokens,
        )
        reply = await self.provider.generate(self.model_id, req)
        micro = None
        if reply.usage_reported:  # counts left out (or contradicting): unknown, as wf.ai's
            micro = self.providers.price(
                self.provider_name, self.model_id, reply.usage, at=datetime.now(UTC)
            ).micro_usd
        u = reply.usage
        usage = Usage(
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            None if micro is None else micro / 1_000_000,
            cumulative=False,
        )
        await on_event(
            AgentEvent("model", message=reply.text[:500] or None, usage=usage, session_id=session)
        )
        return reply

    async def _carry_out(
        self, calls: list[ToolCall], tools: Toolbox, session: str, on_event: OnEvent
    ) -> tuple[list[tuple[ToolCall, str]], str | None]:
        """Every call's answer, in order, and the question for a person if one was asked."""
        results, question = [], None
        for call in calls:
            shown = json.dumps(call.args)[:300]
            await on_event(
                AgentEvent("tool_call", message=f"{call.name} {shown}", session_id=session)
            )
            try:
                text = await tools.run(call)
            except _Input as ask:
                question = str(ask)
                text = "asked a person; their answer is the next message"
            results.append((call, text))
            await on_event(AgentEvent("tool_result", message=text[:300], session_id=session))
        return results, question


def _number(args: dict[str, Any], key: str, default: float, *, least: float) -> float:
    """`args[key]`, a number at least `least` (`default` when absent or null), else
    the ValueError the model is answered with: a list or a negative offset is a
    mistake to tell it about, never a crashed turn or a command killed at once."""
    value = args.get(key)
    if value is None:
        return default
    try:  # "60" as a string too, as models sometimes write it
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= least):
        raise ValueError(f"{key} must be a number of at least {least:g}, got {value!r}")
    return number


def _schema(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": _REQUIRED[name]}


def _arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """OpenAI's tool arguments (a JSON text) as a dict, or the problem with them."""
    try:
        args = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}, f"the arguments were not valid JSON: {str(raw)[:200]!r}"
    if not isinstance(args, dict):
        return {}, "the arguments must be a JSON object"
    return args, None


def _refused(exc: ProviderError, session: str) -> TurnResult:
    if exc.status == 429:  # a retry-after date (`retry_at`) is a time on the wall clock
        wait = exc.wait_from(datetime.now(UTC)).retry_after
        return TurnResult("rate_limited", session, error=str(exc), retry_after=wait)
    return TurnResult("failed", session, error=f"the model call failed: {exc}")
