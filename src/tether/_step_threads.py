"""The threads that run sync step functions, with a cheap hand-off.

`asyncio.to_thread` costs two wake-ups through the event loop's self-pipe
and the default executor's bookkeeping: on a VM that is 0.1-0.3 ms, more
than the fsync of the step it serves. Here a step thread is handed the call
through a `SimpleQueue`, and the loop first waits a short moment (`SPIN`)
on a plain lock for the answer: a trivial function is back before the loop
would even have gone to sleep, with no trip through the self-pipe. Past that
moment the loop stops waiting and awaits a future the thread resolves with
`call_soon_threadsafe`, so a long step blocks nothing (mutex and lease
renewal, other `for_each` branches keep running) beyond `SPIN` once.

The threads are daemon threads: they never keep the interpreter alive. To
let the engine wait for steps in flight before it exits, `StepThreads.shutdown`
stops the threads and waits (up to a timeout) for running calls; steps still
running when the interpreter exits regardless are reported in a warning at
exit, never dropped silently.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SPIN", "StepThreads", "watching_abandoned"]

# where a caller that gives up on a call still running learns when it returns at last:
# a mutex block keeps its key until the sync steps it gave up on (a step timeout) end
_WATCH: contextvars.ContextVar[list[asyncio.Future[None]] | None] = contextvars.ContextVar(
    "tether_abandoned_calls", default=None
)


@contextlib.contextmanager
def watching_abandoned() -> Iterator[list[asyncio.Future[None]]]:
    """While the block runs (and in the tasks it starts), each call given up on while
    still running adds a future here, resolved when its function returns at last."""
    found: list[asyncio.Future[None]] = []
    token = _WATCH.set(found)
    try:
        yield found
    finally:
        _WATCH.reset(token)


log = logging.getLogger("tether")

# how long the loop waits in place for a sync step before it yields (seconds):
# about one loop wake-up, well under a durable commit
SPIN = 0.0005
# an idle step thread ends after this many seconds (the next sync step starts one)
IDLE_EXIT = 30.0


class _Call:
    """One call handed to a step thread, and how its answer gets back."""

    __slots__ = (
        "abandoned",
        "args",
        "ctx",
        "done",
        "ended",
        "epoch",
        "error",
        "fn",
        "fut",
        "loop",
        "parked",
        "result",
        "running",
        "state",
        "stuck",
    )

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.ctx = contextvars.copy_context()
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the thread when the answer is in
        self.state = threading.Lock()  # decides, once, who delivers the answer
        self.parked = False  # the loop stopped waiting in place: resolve `fut`
        self.fut: asyncio.Future[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # under the pool's lock: the awaiting task gave up (a step timeout, a cancel);
        # a thread (of `epoch`) runs it now; it was abandoned while running
        self.abandoned = False
        self.running = False
        self.ended: asyncio.Future[None] | None = None  # resolved when it returns at last
        self.epoch = -1
        self.stuck = False


def _ended(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _deliver(fut: asyncio.Future[Any], call: _Call) -> None:
    if fut.done():  # the awaiting task was cancelled
        return
    if call.error is not None:
        fut.set_exception(call.error)
    else:
        fut.set_result(call.result)


class StepThreads:
    """A small pool of daemon threads for sync step functions.

    Threads start on demand, up to `max_threads` (default as for
    `asyncio.to_thread`: ``min(32, cpu count + 4)``), and park on a queue
    while idle. Owned by the App's runtime; call `shutdown` before exit to
    wait for steps in flight.
    """

    def __init__(self, max_threads: int | None = None) -> None:
        self.max_threads = max_threads or min(32, (os.cpu_count() or 1) + 4)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)  # notified when a call returns
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._busy = 0
        self._stuck = 0  # threads running a call whose caller gave up (see `_abandon`)
        self._epoch = 0  # bumped by shutdown: threads of an older epoch are leaving
        _ALL.add(self)

    @property
    def in_flight(self) -> int:
        """Calls running right now."""
        return self._busy

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a step thread (in a copy of the caller's context); its result.

        Exceptions raised by `fn` propagate. Cancelling the awaiting task does
        not stop `fn`, as with `asyncio.to_thread`.
        """
        call = _Call(fn, args)
        self._submit(call)
        if call.done.acquire(timeout=SPIN):
            return self._answer(call)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with call.state:
            if not call.done.acquire(blocking=False):
                call.fut, call.loop, call.parked = fut, loop, True
        if not call.parked:
            return self._answer(call)
        try:
            return await fut
        except asyncio.CancelledError:
            ended = self._abandon(call, loop)
            watch = _WATCH.get()
            if ended is not None and watch is not None:
                watch.append(ended)
            raise

    def _abandon(self, call: _Call, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """The caller gave up on `call` (a step timeout): a sync function cannot be
        stopped, so a call still running holds its thread, perhaps for ever (a hung
        request), and another thread is allowed in its place, else hung calls would
        starve every later step; a call not started yet is dropped, not run late.
        Returns, for a call still running, a future resolved when it returns."""
        with self._lock:
            call.abandoned = True
            if not call.running:
                return None
            if call.epoch == self._epoch:
                call.stuck = True
                self._stuck += 1
            call.ended = loop.create_future()
            return call.ended

    @staticmethod
    def _answer(call: _Call) -> Any:
        if call.error is not None:
            raise call.error
        return call.result

    def _submit(self, call: _Call) -> None:
        with self._lock:
            if self._idle <= 0 and len(self._threads) - self._stuck < self.max_threads:
                t = threading.Thread(
                    target=self._work,
                    args=(self._queue, self._epoch),
                    name=f"tether-step-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.add(t)
                self._idle += 1
                t.start()
            self._idle -= 1
            self._busy += 1
            # under the lock, so an idle thread that times out sees this call waiting
            self._queue.put(call)

    def _work(self, q: queue.SimpleQueue[_Call | None], epoch: int) -> None:
        while True:
            try:
                call = q.get(timeout=IDLE_EXIT)
            except queue.Empty:
                call = None
                with self._lock:
                    if not q.empty():  # handed a call meanwhile (puts happen under the lock)
                        continue
                    self._leave(epoch)
                return
            if call is None:  # shutdown
                with self._lock:
                    self._leave(epoch)
                return
            with self._lock:
                dropped = call.abandoned  # its caller gave up before it started
                call.running, call.epoch = not dropped, epoch
            if not dropped:
                try:
                    call.result = call.ctx.run(call.fn, *call.args)
                except BaseException as exc:  # handed to the awaiting task, as to_thread does
                    call.error = exc
            with self._lock:
                self._busy -= 1
                call.running = False
                if epoch == self._epoch:
                    self._idle += 1
                    self._stuck -= call.stuck
                self._quiet.notify_all()
            with call.state:
                call.done.release()
                if call.parked:
                    assert call.loop is not None and call.fut is not None
                    with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                        call.loop.call_soon_threadsafe(_deliver, call.fut, call)
                        if call.ended is not None:  # (set before `running` went false)
                            call.loop.call_soon_threadsafe(_ended, call.ended)
            del call

    def _leave(self, epoch: int) -> None:
        """Under `_lock`: this (idle) thread ends."""
        if epoch == self._epoch:
            self._threads.discard(threading.current_thread())
            self._idle -= 1

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Let the threads end once the calls handed to them have returned.

        With `wait`, block until every call in flight has returned, or
        `timeout` seconds passed; returns True when no call is left running.
        Calls already handed over still run. A later `run` starts fresh
        threads, so an App used again after shutdown keeps working.
        """
        with self._lock:
            threads, q = list(self._threads), self._queue
            self._threads, self._queue, self._idle = set(), queue.SimpleQueue(), 0
            self._stuck = 0
            self._epoch += 1
            for _ in threads:
                q.put(None)
            if wait:  # calls of earlier shutdowns count too: wait on the calls, not threads
                self._quiet.wait_for(lambda: self._busy == 0, timeout)
            return self._busy == 0


_ALL: weakref.WeakSet[StepThreads] = weakref.WeakSet()


@atexit.register
def _report_abandoned() -> None:
    """Daemon threads die with the interpreter: say so if a step was still running."""
    busy = sum(p.in_flight for p in list(_ALL))
    if busy:
        log.warning(
            "%d sync step(s) still running at interpreter exit were abandoned; their runs "
            "resume from the last completed step. To let steps finish at exit, give them "
            "longer with App(shutdown_grace=<seconds>), or wait for the runs to end and "
            "call app.close() before the program exits",
            busy,
        )
