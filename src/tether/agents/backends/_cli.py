"""The CLI backends: `command` (tether's own JSON-lines protocol), `claude` (Claude
Code ``--output-format stream-json``) and `codex` (``codex exec --json``).

The `command` protocol, for any program: the prompt arrives on stdin, the
issue in ``TETHER_ISSUE_*`` variables, the session to continue in
``TETHER_SESSION_ID``; each stdout line is a JSON object with a ``type``:

- ``message`` / ``tool`` / ``progress`` (progress), ``heartbeat`` (alive, not progress);
- ``usage`` with ``input_tokens``, ``output_tokens``, ``cached_input_tokens``,
  ``cost_usd``, and ``cumulative`` (default true: a running total of the session);
- ``rate_limit`` with ``retry_after`` (seconds);
- ``input_required`` with ``question`` (the run waits for ``tether agents answer``);
- ``result`` with ``status`` (``completed`` or ``failed``), ``message``, ``session_id``.

A line that is not JSON is an ``other_message``. Exit 0 without a result is a
completed turn, any other exit a failed one.
"""

from __future__ import annotations

import shlex
from typing import Any

from .._errors import capped_wait
from ._port import AgentEvent, TurnRequest, TurnResult, TurnStatus, Usage
from ._process import Parsed, ProcessBackend

__all__ = [
    "ClaudeBackend",
    "CodexBackend",
    "CommandBackend",
    "parse_claude_line",
    "parse_codex_line",
    "parse_command_line",
]


def _int(data: dict[str, Any], *keys: str) -> int:
    total = 0
    for k in keys:
        v = data.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            total += v
    return total


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:2000]


def parse_command_line(data: dict[str, Any]) -> Parsed:
    kind = str(data.get("type", "other_message"))
    session = _text(data.get("session_id"))
    if kind == "usage":
        cost = data.get("cost_usd")
        usage = Usage(
            _int(data, "input_tokens"),
            _int(data, "output_tokens"),
            _int(data, "cached_input_tokens"),
            float(cost) if isinstance(cost, int | float) else None,
            cumulative=bool(data.get("cumulative", True)),
        )
        return Parsed(
            AgentEvent("usage", progress=False, usage=usage, session_id=session, raw=data)
        )
    if kind == "heartbeat":
        return Parsed(AgentEvent("heartbeat", progress=False, session_id=session, raw=data))
    if kind == "rate_limit":
        after = data.get("retry_after")
        number = after if isinstance(after, int | float) and not isinstance(after, bool) else None
        wait = capped_wait(number, "the agent's rate_limit line")
        event = AgentEvent(
            "rate_limit", progress=False, retry_after=wait, session_id=session, raw=data
        )
        return Parsed(
            event, TurnResult("rate_limited", session, error="rate limited", retry_after=wait)
        )
    if kind == "input_required":
        question = _text(data.get("question") or data.get("message"))
        return Parsed(
            AgentEvent("input_required", message=question, session_id=session, raw=data),
            TurnResult("input_required", session, message=question),
        )
    if kind == "result":
        ok = data.get("status", "completed") == "completed"
        message = _text(data.get("message"))
        result = TurnResult(
            "completed" if ok else "failed",
            session,
            message=message,
            error=None if ok else message or "failed",
        )
        return Parsed(
            AgentEvent(
                "turn_completed" if ok else "turn_failed",
                message=message,
                session_id=session,
                raw=data,
            ),
            result,
        )
    return Parsed(
        AgentEvent(
            kind,
            message=_text(data.get("text") or data.get("message")),
            session_id=session,
            raw=data,
        )
    )


def _told_counts(u: Any) -> dict[str, Any] | None:
    """A usage object that tells its input and output counts, else None: a running
    total missing one cannot be diffed against the last one."""
    if not isinstance(u, dict):
        return None
    told = all(
        isinstance(u.get(k), int) and not isinstance(u.get(k), bool)
        for k in ("input_tokens", "output_tokens")
    )
    return u if told else None


def _claude_usage(data: dict[str, Any], cost: Any) -> Usage | None:
    """The result's usage; None when it told neither counts nor a cost (the turn's usage
    is then unknown, never zero)."""
    u = data.get("usage")
    price = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
    if not isinstance(u, dict):
        if price is None:
            return None
        u = {}
    return Usage(
        _int(u, "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
        _int(u, "output_tokens"),
        _int(u, "cache_read_input_tokens"),
        price,
        cumulative=False,
    )


def parse_claude_line(data: dict[str, Any]) -> Parsed:
    """Claude Code's stream-json: ``system/init`` starts a session, ``assistant`` and
    ``user`` messages are progress, ``result`` ends the turn with its usage and
    ``total_cost_usd``. Those are totals of the *process*, and each turn is its own
    ``claude -p`` process (``--resume`` continues the conversation, not the
    counters), so the result is the turn's delta. The per-call usage on
    ``assistant`` messages is not counted: Claude Code repeats it on every content
    block of a message, and the result already sums it."""
    kind = data.get("type")
    session = _text(data.get("session_id"))
    if kind == "system":
        sub = str(data.get("subtype", ""))
        progress = sub == "init"
        return Parsed(AgentEvent(f"system.{sub}", progress=progress, session_id=session, raw=data))
    if kind in ("assistant", "user"):
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        assert isinstance(message, dict)
        parts = message.get("content") if isinstance(message.get("content"), list) else []
        assert isinstance(parts, list)
        text = " ".join(
            str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text"
        )
        return Parsed(AgentEvent(str(kind), message=text or None, session_id=session, raw=data))
    if kind == "result":
        usage = _claude_usage(data, data.get("total_cost_usd"))
        answer = _text(data.get("result"))
        failed = bool(data.get("is_error")) or data.get("subtype") not in (None, "success")
        limited = (
            failed
            and answer is not None
            and ("rate limit" in answer.lower() or "usage limit" in answer.lower())
        )
        status: TurnStatus = "rate_limited" if limited else ("failed" if failed else "completed")
        event = AgentEvent("result", message=answer, usage=usage, session_id=session, raw=data)
        return Parsed(
            event, TurnResult(status, session, message=answer, error=answer if failed else None)
        )
    return Parsed(AgentEvent(str(kind or "other_message"), session_id=session, raw=data))


def parse_codex_line(data: dict[str, Any]) -> Parsed:
    """``codex exec --json``: ``thread.started`` names the session (its thread id),
    items are progress, ``turn.completed`` carries the usage of the *thread* so far
    (Codex fills it from its running total, and a resumed thread goes on from the
    total it had: an absolute figure, turned into a delta per thread by the meter),
    ``turn.failed`` and ``error`` fail the turn."""
    kind = str(data.get("type", "other_message"))
    if kind == "thread.started":
        return Parsed(AgentEvent(kind, session_id=_text(data.get("thread_id")), raw=data))
    if kind == "turn.completed":
        # no counts: no usage told (not a total of zero, which would count the
        # thread's whole total again on its next turn)
        u = _told_counts(data.get("usage"))
        usage = None
        if u is not None:
            usage = Usage(
                _int(u, "input_tokens"),
                _int(u, "output_tokens"),
                _int(u, "cached_input_tokens"),
                None,
                cumulative=True,
            )
        return Parsed(AgentEvent(kind, usage=usage, raw=data), TurnResult("completed"))
    if kind in ("turn.failed", "error"):
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        assert isinstance(err, dict)
        message = _text(err.get("message") or data.get("message")) or kind
        limited = "rate limit" in message.lower() or "429" in message
        status: TurnStatus = "rate_limited" if limited else "failed"
        return Parsed(
            AgentEvent(kind, message=message, raw=data),
            TurnResult(status, error=message),
            ends_turn=kind == "turn.failed",  # an `error` may come before the turn's end
        )
    item = data.get("item") if isinstance(data.get("item"), dict) else {}
    assert isinstance(item, dict)
    return Parsed(AgentEvent(kind, message=_text(item.get("text")), raw=data))


class CommandBackend(ProcessBackend):
    """Any program speaking the JSON-lines protocol above."""

    def __init__(self, command: str) -> None:
        super().__init__(command, parse_command_line, name="command")


class ClaudeBackend(ProcessBackend):
    """Claude Code in print mode; later turns ``--resume`` the session."""

    tells_usage = True

    def __init__(self, command: str = "claude") -> None:
        super().__init__(command, parse_claude_line, name="claude")

    def shell_command(self, request: TurnRequest) -> str:
        args = [self.command, "-p", "--output-format", "stream-json", "--verbose"]
        args.append("--permission-mode bypassPermissions")
        if request.session_id:
            args.append(f"--resume {shlex.quote(request.session_id)}")
        return " ".join(args)


class CodexBackend(ProcessBackend):
    """Codex CLI ``exec --json`` (the prompt on stdin); later turns resume the thread."""

    tells_usage = True

    def __init__(self, command: str = "codex") -> None:
        super().__init__(command, parse_codex_line, name="codex")

    def shell_command(self, request: TurnRequest) -> str:
        resume = f" resume {shlex.quote(request.session_id)}" if request.session_id else ""
        return f"{self.command} exec --json --skip-git-repo-check{resume} -"
