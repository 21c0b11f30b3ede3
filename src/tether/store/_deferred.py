"""Step completions that ride on the next write (SQLite, PostgreSQL).

A sequential workflow writes a step's completion (durable) and, a few
microseconds later, the next step's start marker: two transactions. Where a
transaction costs more than the fsync it carries (SQLite on the event loop),
the completion waits in memory instead and goes into the next transaction of
the store, whatever it is, which then commits durably. If no transaction
comes before the event loop turns to other work, one is made for it
(`call_soon`). So a completion is on disk before anything else the run does
is (its next step starts, it waits, ends or is handed back), and before any
other task runs: the window in which a crash repeats a finished step grows
only by the synchronous code between two steps, which has no side effects.

A completion is held unread: a read of its fence would cost what holding
saves (on SQLite ~0.05 raw commits, on PostgreSQL the round trip). Only a run
this store itself has cancelled, or given to a newer owner, since the step
began is written (and refused) at once, so the step learns of it as it ends.
A held completion is folded into the run's next step start (PostgreSQL: one
statement; SQLite: one transaction under one fence check and event-number
bump): a completion its run refuses (cancelled or taken over by another
process meanwhile) is dropped with the start it rode on, and the run learns of
the refusal as its next step starts, before that step runs (as if the cancel
or takeover had come a moment later). Any other write first writes what is
held, in statements of its own; one refused there is dropped without failing
the transaction it rides on, as it would have been refused on its own.

On PostgreSQL several writes of one store run at once (a pool). A write that
took held completions carries them until it commits: every other write of
the store waits for it first (`taking`, `settled`), so nothing a run
does next commits before a completion of that run another write carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import RunCancelledError, RunNotFoundError, StaleOwnerError, StoreError

__all__ = ["Deferred"]

log = logging.getLogger("tether.store")

Body = Callable[[Any], Awaitable[Any]]  # a transaction body: given the `Tx`
_REFUSED = (StaleOwnerError, RunCancelledError, RunNotFoundError)
RETRY_DELAYS = (0.01, 0.05, 0.2, 1.0)  # a flush of its own that found the database busy


class Deferred:
    """The completions waiting for the next transaction of one store."""

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._bodies: list[Body] = []
        self._flush = flush  # a transaction with nothing else in it
        self._tries = 0
        self._task: asyncio.Future[None] | None = None  # the flush of its own, if running
        # every write of taken completions in flight (`taking`): until it commits, what
        # it took is neither held nor written
        self._out: list[asyncio.Future[None]] = []
        # the loop a `_soon` is scheduled on and has not yet run on, if any
        self._due: asyncio.AbstractEventLoop | None = None

    def __bool__(self) -> bool:
        return bool(self._bodies)

    @property
    def writing(self) -> bool:
        """Whether a flush of its own is under way, or a write of taken completions is
        in flight."""
        own = self._task is not None and not self._task.done()
        return own or bool(self._out)

    def add(self, body: Body) -> None:
        """Hold `body` for the next transaction; make one if none comes this turn."""
        self._bodies.append(body)
        if len(self._bodies) == 1:
            loop = asyncio.get_running_loop()
            # one scheduled there and not yet run comes first, and looks at what is held
            # then: steps that never yield (async ones on SQLite) scheduled one each
            if self._due is not loop:
                self._due = loop
                loop.call_soon(self._soon)

    def take(self) -> list[Body]:
        """Every held completion (the caller writes them, or gives them back)."""
        taken, self._bodies = self._bodies, []
        return taken

    @contextlib.asynccontextmanager
    async def taking(self) -> AsyncIterator[list[Body]]:
        """Wait until no write of taken completions is in flight, then take what is
        held: everything held before is then written, or in the caller's hands. Until
        the block ends (its write committed, or gave them back), every other write of
        this store waits for it (`settled`)."""
        await self.settled()
        taken = self.take()
        if not taken:
            yield taken
            return
        out = asyncio.get_running_loop().create_future()
        self._out.append(out)
        try:
            yield taken
        finally:
            out.set_result(None)
            self._out.remove(out)

    def give_back(self, taken: list[Body]) -> None:
        """The transaction that carried `taken` rolled back: hold them again, first."""
        self._bodies[:0] = taken

    async def write(self, tx: Any, taken: list[Body]) -> None:
        """Write `taken` into `tx`. One refused (its run has another owner, was cancelled
        or deleted) is dropped, the others stay: a completion's body checks its fence
        with its first statement, so a refused one has written nothing."""
        for body in taken:
            try:
                await body(tx)
            except _REFUSED as exc:
                log.info("a held step completion was refused and dropped: %s", exc)

    async def settled(self) -> None:
        """Until no write of taken completions is in flight (of this event loop), so
        nothing the store writes next can commit before what they carry."""
        loop = asyncio.get_running_loop()
        while out := [f for f in self._out if f.get_loop() is loop]:
            await asyncio.wait(out)

    def _soon(self) -> None:
        self._due = None
        if self._bodies and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._run_flush())

    async def _run_flush(self) -> None:
        try:
            await self._flush()
            self._tries = 0
            if self._bodies:  # held while it wrote, when `_soon` had to leave them
                asyncio.get_running_loop().call_soon(self._soon)
        except StoreError as exc:  # held still: the next write carries them, or a retry
            delay = RETRY_DELAYS[min(self._tries, len(RETRY_DELAYS) - 1)]
            self._tries += 1
            log.warning("writing held step completions failed (%s); again in %gs", exc, delay)
            asyncio.get_running_loop().call_later(delay, self._soon)
