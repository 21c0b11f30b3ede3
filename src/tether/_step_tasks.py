"""Async step functions run in tasks of their own, so that a drive can stop waiting on one.

Awaited in the drive's own task, a step function that catches its cancellation and
goes on (``except asyncio.CancelledError: pass`` in a loop) held its drive for good:
a cancelled run never ended, a step past its timeout never failed, and `App.close`
waited on it past its grace period, for ever. In a task of its own it is cancelled
and given `STOP_GRACE` seconds to end; one still running then is abandoned (left to
run, unawaited, a warning naming its step) and the drive goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from .errors import RunCancelledError

__all__ = ["STOP_GRACE", "StepTasks"]

# real seconds a cancelled step function has to end (its cleanup) before it is abandoned
STOP_GRACE = 1.0

log = logging.getLogger("tether")


class _Exited(Exception):
    """Carries a step's KeyboardInterrupt or SystemExit out of its task: raised there
    as itself, asyncio re-raises it out of the event loop, ending the loop under the run."""

    def __init__(self, exit: KeyboardInterrupt | SystemExit) -> None:
        self.exit = exit


async def _guarded(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except (KeyboardInterrupt, SystemExit) as exc:
        raise _Exited(exc) from None


class StepTasks:
    """The async step functions running now, by run, and those abandoned."""

    def __init__(self) -> None:
        # by run id: the futures its drive awaits its running step functions through
        self._waits: dict[str, set[asyncio.Future[Any]]] = {}
        self._stopped: set[asyncio.Future[Any]] = set()  # cancelled by `stop`
        self.abandoned: set[asyncio.Task[Any]] = set()  # running still, kept from GC

    async def run(self, workflow_id: str, key: str, coro: Coroutine[Any, Any, Any]) -> Any:
        """`coro`, step `key`'s function called, awaited in a task of its own (in a copy
        of this context). The caller cancelled (a timeout, a shutdown) cancels it too;
        its run cancelled (`stop`) cancels it and raises `RunCancelledError`. Either
        way it has `STOP_GRACE` seconds to end before it is abandoned."""
        task = asyncio.get_running_loop().create_task(_guarded(coro))
        waited = asyncio.shield(task)
        waits = self._waits.setdefault(workflow_id, set())
        waits.add(waited)
        try:
            return await waited
        except _Exited as exc:
            raise exc.exit from None
        except asyncio.CancelledError:
            if task.done():
                raise  # the function raised it itself (only `_end` cancels the task)
            stopped = waited in self._stopped
            await self._end(task, workflow_id, key)
            if stopped:
                raise RunCancelledError(workflow_id) from None
            raise
        finally:
            self._stopped.discard(waited)
            waits.discard(waited)
            if not waits and self._waits.get(workflow_id) is waits:
                del self._waits[workflow_id]

    def running(self, workflow_id: str) -> bool:
        """Whether a step function of the run is running here now."""
        return workflow_id in self._waits

    def stop(self, workflow_ids: list[str]) -> None:
        """Cancel the step functions these runs (cancelled) are running now here."""
        for wid in workflow_ids:
            for waited in list(self._waits.get(wid, ())):
                self._stopped.add(waited)
                waited.cancel()

    async def _end(self, task: asyncio.Task[Any], workflow_id: str, key: str) -> None:
        """Cancel `task` and wait up to `STOP_GRACE` seconds for it to end; abandon it
        if it does not (a second cancellation of the caller abandons it at once)."""
        task.cancel()
        try:
            await asyncio.wait((task,), timeout=STOP_GRACE)
        finally:
            if not task.done():
                self._abandon(task, workflow_id, key)
            elif not task.cancelled():
                task.exception()  # retrieved: its late end is no news to anyone

    def _abandon(self, task: asyncio.Task[Any], workflow_id: str, key: str) -> None:
        log.warning(
            "step %r of run %s ignored its cancellation (it caught asyncio.CancelledError "
            "and went on) and still runs %gs later: abandoned, it runs on unawaited, its "
            "result discarded. Let CancelledError propagate from the step function",
            key,
            workflow_id,
            STOP_GRACE,
        )
        self.abandoned.add(task)
        task.add_done_callback(_forgotten(self.abandoned))


def _forgotten(tasks: set[asyncio.Task[Any]]) -> Any:
    def forget(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody awaits it any more

    return forget
