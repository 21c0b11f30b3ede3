"""Trackers and backends a WORKFLOW.md edit replaced, closed once nothing uses them.

A reload builds a new tracker or backend only when the settings it is built from
changed (`Dispatcher._built`). The one it replaced may still be in a turn (a
backend) or a request (a tracker) on another task: closed then, its client went
from under that use; never closed, its clients leaked with every such edit. Each
use holds a lease; a replaced component is closed when its last lease ends, or at
the next tick when none is held.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

__all__ = ["Leases"]

log = logging.getLogger("tether.agents")

T = TypeVar("T")


class Leases:
    """Who uses which component now, and which replaced ones wait to be closed."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}  # id(component) -> uses in flight
        self._retired: dict[int, object] = {}  # replaced, not closed yet

    @asynccontextmanager
    async def hold(self, component: T) -> AsyncIterator[T]:
        """Use `component` (taken from the dispatcher with no await in between, so a
        tick cannot close it first); a replaced one is closed as its last use ends."""
        key = id(component)
        self._held[key] = self._held.get(key, 0) + 1
        try:
            yield component
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]
                if key in self._retired:
                    await _close(self._retired.pop(key))

    def retire(self, component: object) -> None:
        """`component` was replaced: close it once nothing holds it."""
        self._retired[id(component)] = component

    async def close_idle(self) -> None:
        """Close the replaced components nobody holds."""
        for key in [k for k in self._retired if k not in self._held]:
            await _close(self._retired.pop(key))


async def _close(component: object) -> None:
    """`aclose` it (a backend without one holds nothing); a failure is logged: a
    leaked client is no reason to fail a tick or a turn."""
    what = _described(component)
    close = getattr(component, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except Exception:
        log.exception("closing the replaced %s failed", what)
    else:
        log.info("closed the %s a WORKFLOW.md edit replaced", what)


def _described(component: object) -> str:
    kind = getattr(component, "kind", None)
    if isinstance(kind, str):
        return f"{kind} tracker"
    return f"{getattr(component, 'name', type(component).__name__)} backend"
