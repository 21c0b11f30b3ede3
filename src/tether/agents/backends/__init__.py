"""Agent backends: the port and its adapters (`api`, `claude`, `codex`, `command`, `mock`)."""

from __future__ import annotations

from ._api import ApiBackend
from ._cli import (
    ClaudeBackend,
    CodexBackend,
    CommandBackend,
    parse_claude_line,
    parse_codex_line,
    parse_command_line,
)
from ._mock import MockBackend
from ._port import (
    AgentBackend,
    AgentEvent,
    OnEvent,
    TurnRequest,
    TurnResult,
    TurnStatus,
    Usage,
    UsageMeter,
)
from ._process import ProcessBackend

__all__ = [
    "AgentBackend",
    "AgentEvent",
    "ApiBackend",
    "ClaudeBackend",
    "CodexBackend",
    "CommandBackend",
    "MockBackend",
    "OnEvent",
    "ProcessBackend",
    "TurnRequest",
    "TurnResult",
    "TurnStatus",
    "Usage",
    "UsageMeter",
    "parse_claude_line",
    "parse_codex_line",
    "parse_command_line",
]
