"""A scripted agent for tests and demos: each turn plays the next entry of a script.

An entry is a dict: ``events`` (a list of command-protocol lines, such as
``{"type": "message", "text": "..."}``), ``result`` (``completed``, ``failed``,
``input_required`` or ``rate_limited``), ``message``, ``usage`` (a cumulative
``{"input_tokens": .., "output_tokens": ..}``), ``files`` (``{name: text}``
written into the workspace) and ``block`` (seconds to wait before answering, for
stall and stop tests). Past the end of the script every turn completes.

Agents work side by side, so turns of several issues take one shared script in
no set order: give a dict of scripts by issue identifier to say which issue
plays what (an issue it does not name completes every turn).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ._cli import parse_command_line
from ._port import OnEvent, TurnRequest, TurnResult
from ._process import Parsed

__all__ = ["MockBackend"]


class MockBackend:
    name = "mock"

    def __init__(
        self, script: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] | None = None
    ) -> None:
        self.scripts = {k: list(v) for k, v in script.items()} if isinstance(script, dict) else None
        self.script = [] if isinstance(script, dict) else list(script or [])
        self.requests: list[TurnRequest] = []

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult:
        self.requests.append(request)
        script = self.script
        if self.scripts is not None:
            script = self.scripts.get(str(request.issue.get("identifier")), [])
        entry = script.pop(0) if script else {}
        session = request.session_id or f"mock-{request.issue.get('identifier', 'issue')}"
        for name, text in (entry.get("files") or {}).items():
            target = (request.workspace / name).resolve()
            if target.is_relative_to(request.workspace.resolve()):
                Path(target).write_text(str(text))
        if entry.get("block"):
            await asyncio.sleep(float(entry["block"]))
        for line in entry.get("events") or []:
            parsed: Parsed = parse_command_line({**line, "session_id": session})
            if parsed.event is not None:
                await on_event(parsed.event)
        if entry.get("usage"):
            usage = parse_command_line({"type": "usage", "session_id": session, **entry["usage"]})
            if usage.event is not None:
                await on_event(usage.event)
        status = entry.get("result", "completed")
        message = entry.get("message")
        return TurnResult(
            status,
            session,
            message=message,
            error=message if status == "failed" else None,
            retry_after=entry.get("retry_after"),
        )
