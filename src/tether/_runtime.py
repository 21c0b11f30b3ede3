"""What every run of one App shares: the store, the clock, the process's identity."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._interceptors import StepInterceptor
from ._owners import new_owner
from ._step_threads import StepThreads
from .clock import Clock
from .store import Store

if TYPE_CHECKING:
    from .definition import WorkflowDef

__all__ = ["EventHook", "Runtime", "Waker"]

EventHook = Callable[[str, str, "str | None", Any], None]


class Waker:
    """Wakes in-process mutex waiters when a holder in this process releases.

    Waiters in other processes fall back to polling; this only saves the
    common case of contention between tasks of one process from spinning.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    async def wait(self, key: str, timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        try:
            async with asyncio.timeout(timeout):  # (wait_for may swallow a cancel on 3.11)
                await asyncio.shield(fut)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    del self._waiters[key]

    def notify(self, key: str) -> None:
        for fut in self._waiters.get(key, ()):
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class Runtime:
    """What every Workflow of one App shares."""

    store: Store
    clock: Clock
    owner: str = field(default_factory=new_owner)
    waker: Waker = field(default_factory=Waker)
    draining: bool = False  # the process is shutting down: start no more steps
    # sync step functions run here; `threads.shutdown(wait, timeout)` waits for them at exit
    threads: StepThreads = field(default_factory=StepThreads)
    # wrap every executed step attempt, outermost first (empty: no cost at all)
    interceptors: tuple[StepInterceptor, ...] = ()
    # the model providers of `wf.ai` (a tether.ai.Providers), None: no AI configured
    ai: Any = None
    # the budget a workflow declares for runs started without their own (by name)
    workflow_budget: Callable[[str], Any] = field(default=lambda name: None)
    # where artifacts and large stage outputs go (a tether.blobs.BlobStore), None: none
    blobs: Any = None
    # by run id, the WorkflowDef of a run started here from a callable never declared (a
    # lambda, a partial): such callables share a registry name, the latest run under it
    # holding it, so each run keeps its own here until it ends
    run_defs: dict[str, WorkflowDef] = field(default_factory=dict)
    # by run id, the retry back-offs its steps wait out now (see `rest`)
    resting: dict[str, set[asyncio.Future[None]]] = field(default_factory=dict)

    def drain(self) -> None:
        """Start no more steps, and cut every back-off short: a run waiting to retry
        has no step in flight, so it can hand itself back at once instead of keeping
        the exit waiting out its grace period."""
        self.draining = True
        self.wake(list(self.resting))

    def wake(self, workflow_ids: list[str]) -> None:
        """Cut short the back-offs of these runs (cancelled: their next attempt is
        refused at once, and their compensations need not wait for it)."""
        for wid in workflow_ids:
            for fut in list(self.resting.get(wid, ())):
                fut.get_loop().call_soon_threadsafe(_resolve, fut)

    async def rest(self, workflow_id: str, seconds: float) -> None:
        """Wait `seconds` on the clock before a step's next attempt, unless the process
        starts draining or the run is cancelled meanwhile (`wake`: at once when here,
        at the next keep-alive turn when by another process)."""
        if self.draining:
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.resting.setdefault(workflow_id, set()).add(wake)
        nap = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait((nap, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            waits = self.resting.get(workflow_id)
            if waits is not None:
                waits.discard(wake)
                if not waits:
                    del self.resting[workflow_id]
