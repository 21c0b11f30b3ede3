"""Probes shared by tests: a SQLite store that keeps every statement it sends, and a
workflow whose step counts how many of it run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tether import App, Workflow
from tether.store import Store, open_store


def traced_store(url: str) -> tuple[Store, list[str]]:
    """The SQLite store of `url`, keeping every statement it sends."""
    sent: list[str] = []
    base: Any = type(open_store(url))

    class Tracing(base):  # type: ignore[misc]
        async def open(self) -> None:
            await super().open()
            self._conn.set_trace_callback(sent.append)

    return Tracing(url), sent


@dataclass
class Probe:
    """How many `work` steps run at once (the most ever), and a gate the run tagged
    "first" waits at inside its step."""

    running: int = 0
    peak: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)


def register_probed(app: App, probe: Probe, name: str) -> Callable[..., Awaitable[str]]:
    """Register workflow `name` on `app`: one `work` step that `probe` counts."""

    async def body(wf: Workflow, tag: str) -> str:
        async def work() -> str:
            probe.running += 1
            probe.peak = max(probe.peak, probe.running)
            try:
                if tag == "first":
                    probe.entered.set()
                    await probe.gate.wait()
                return tag
            finally:
                probe.running -= 1

        return await wf.step("work", work)

    app.workflow(name=name)(body)
    return body
