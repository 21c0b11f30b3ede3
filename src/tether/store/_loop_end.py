"""Close what a store opened on an event loop when that loop shuts down.

A program on the async API alone (``asyncio.run(main())`` with an App it never
closes) left the PostgreSQL connections of its loop open: at exit they were
collected unclosed, and psycopg said so (a ResourceWarning, an error under
``-W error``). ``asyncio.run`` offers no hook at its end, but it finalizes the
async generators still suspended on its loop (`loop.shutdown_asyncgens`) after
it has cancelled every task (runs driven there have handed themselves back)
and before it closes the loop: a generator suspended there, whose ``finally``
closes the store, is that hook. A loop closed without that step (the App's own
loop thread, which its `close` stops) has its store closed by whoever closes it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["LoopEnd"]

log = logging.getLogger("tether.store")


class LoopEnd:
    """Calls `close` when the event loop it was last armed on shuts down, unless it
    was disarmed (closed) or armed on another loop since."""

    def __init__(self, close: Callable[[], Awaitable[None]], what: str) -> None:
        self._close = close
        self._what = what  # named in the warning a failed close leaves
        self._armed: object | None = None  # the token of the watcher that is to act
        self._watcher: AsyncIterator[None] | None = None  # kept: the loop's set is weak

    async def arm(self) -> None:
        """Watch the running loop's end (a watcher armed before stands down)."""
        token = object()
        watcher = self._watch(token)
        await anext(watcher)  # suspended now: the loop finalizes it at its shutdown
        self._armed, self._watcher = token, watcher

    def disarm(self) -> None:
        """The store was closed: its watcher does nothing when its loop ends."""
        self._armed = self._watcher = None

    async def _watch(self, token: object) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._armed is token:  # not disarmed, nor armed on another loop since
                self.disarm()
                await self._close_untracked()

    async def _close_untracked(self) -> None:
        """Close with the loop's async generator hooks off: the loop warns of every
        generator begun after its shutdown began (a context manager, a driver's
        cursor), and this close is meant to run then."""
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
        try:
            await self._close()
        except Exception as exc:  # one line: the program has ended its work
            log.warning("closing %s as its event loop ended failed: %r", self._what, exc)
        finally:
            sys.set_asyncgen_hooks(*hooks)
