"""The threads sinks' blocking calls run in: a few per sink, reused.

A sync plugin function or a webhook's POST must not block the event loop, so it
runs in a thread; a thread per delivery made and destroyed thousands of them on
a busy outbox. A `SinkPool` keeps at most a few threads, reused from one
delivery to the next (an idle one leaves after a while).

A delivery given up on (its timeout passed) stops counting against that bound,
so a receiver that never answers cannot starve the deliveries after it; its
thread leaves once the call returns. One given up on before it started never
runs.

Exits are clean: `close` (the kernel's, as its App closes) and the interpreter's
normal exit wait for the calls running then to return, for up to `EXIT_GRACE`
seconds, rather than killing them midway. Threads are daemons, so a call that
hangs past that holds no exit: at-least-once delivery sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_GRACE", "SinkPool", "off_loop"]

log = logging.getLogger("tether.kernel")

EXIT_GRACE = 10.0  # seconds a close (or the exit) waits for the calls still running
IDLE_FOR = 30.0  # seconds an idle thread waits for work before it leaves

_POOLS: weakref.WeakSet[SinkPool] = weakref.WeakSet()


@dataclass(eq=False)
class _Call:
    """One call of `fn(arg)` for a task awaiting `done` on `loop`."""

    fn: Callable[[Any], Any]
    arg: Any
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Any]
    ctx: contextvars.Context = field(default_factory=contextvars.copy_context)
    given_up: bool = False

    def run(self) -> None:
        try:
            out, error = self.ctx.run(self.fn, self.arg), None
        except BaseException as exc:  # handed to the awaiting task
            out, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
            self.loop.call_soon_threadsafe(_settle, self.done, out, error)


def _settle(done: asyncio.Future[Any], out: Any, error: BaseException | None) -> None:
    if done.done():  # given up on
        return
    if error is None:
        done.set_result(out)
    else:
        done.set_exception(error)


class SinkPool:
    """At most `size` threads running a sink's blocking calls, reused."""

    def __init__(self, name: str, size: int = 4) -> None:
        self.name = name
        self.size = size
        self.start_afresh()
        _POOLS.add(self)

    def start_afresh(self) -> None:
        """Forget every thread and call: a forked child has none of its parent's threads,
        and counted, they would take its calls for good."""
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # a call was queued
        self._quiet = threading.Condition(lock)  # a call returned (`close` waits)
        self._queue: deque[_Call] = deque()
        self._threads = 0  # threads counted against `size`
        self._idle = 0  # of those, waiting for work
        self._running: set[_Call] = set()

    def submit(self, call: _Call) -> None:
        with self._work:
            self._queue.append(call)
            if len(self._queue) > self._idle and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._serve, name=self.name, daemon=True).start()
            else:
                self._work.notify()

    def give_up(self, call: _Call) -> None:
        """The awaiting task stopped waiting: a queued call never runs, a running one's
        thread leaves the bound (a new one may start) and the pool once it returns."""
        with self._work:
            if call.given_up:
                return
            call.given_up = True
            if call in self._running:
                self._threads -= 1

    def _next(self) -> _Call | None:
        """The next call to run, or None when this thread should leave (idle too long)."""
        with self._work:
            while True:
                while self._queue:
                    call = self._queue.popleft()
                    if not call.given_up:
                        self._running.add(call)
                        return call
                self._idle += 1
                waited = self._work.wait(IDLE_FOR)
                self._idle -= 1
                if not waited and not self._queue:
                    self._threads -= 1
                    return None

    def _serve(self) -> None:
        while (call := self._next()) is not None:
            call.run()
            with self._quiet:
                self._running.discard(call)
                self._quiet.notify_all()
                if call.given_up:  # no longer counted: leave
                    return

    def close(self, grace: float = EXIT_GRACE) -> int:
        """Wait up to `grace` seconds for the calls queued or running now to return; the
        number still running then (left to finish in their daemon threads)."""
        deadline = time.monotonic() + grace
        with self._quiet:
            while self._running or any(not c.given_up for c in self._queue):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._quiet.wait(left)
            busy = len(self._running)
        if busy:
            log.warning(
                "%d %s call(s) still running after %g s are left unfinished; "
                "their events are delivered again later",
                busy,
                self.name,
                grace,
            )
        return busy


async def off_loop(pool: SinkPool, fn: Callable[[Any], Any], arg: Any) -> Any:
    """`fn(arg)` in one of `pool`'s threads (with this task's context). Cancelling the
    wait (a timeout) gives the call up: its outcome is dropped, and at-least-once
    delivery covers what it did."""
    loop = asyncio.get_running_loop()
    call = _Call(fn, arg, loop, loop.create_future())
    pool.submit(call)
    try:
        return await asyncio.shield(call.done)
    except asyncio.CancelledError:
        call.done.cancel()  # its late outcome is dropped, not logged as never retrieved
        pool.give_up(call)
        raise


def _at_exit() -> None:
    """At normal interpreter exit, before daemon threads are stopped: let the calls
    running now return (all pools within one `EXIT_GRACE`)."""
    deadline = time.monotonic() + EXIT_GRACE
    for pool in list(_POOLS):
        pool.close(max(0.0, deadline - time.monotonic()))


def _forget_in_child() -> None:
    for pool in list(_POOLS):
        pool.start_afresh()


_register = getattr(threading, "_register_atexit", None)
if _register is not None:  # runs before the interpreter stops daemon threads
    _register(_at_exit)
else:  # pragma: no cover - every supported CPython has it
    import atexit

    atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
