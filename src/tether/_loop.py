"""The event loop behind the sync facade, and what happens to it at exit.

Each `App` drives its sync methods on one long-lived loop in a daemon thread
rather than calling ``asyncio.run`` per call: connection pools and background
work (a run started with `App.start`, a run woken by a signal, a mutex
renewal) belong to one loop for the App's whole life.

A daemon thread is killed mid-step when the interpreter exits, which would
be a crash, not an exit. So the first loop started registers one exit hook
for the process: at normal interpreter exit (and on SIGTERM, which is turned
into a normal exit while tether's loop runs) every open loop's owner is
closed gracefully first (`on_exit`): steps in flight finish and are
recorded, and the runs are handed back. The hook runs before the
interpreter joins worker threads and shuts the default executor down, so
sync steps in flight can still finish and be recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread  # its exit hook must be registered before ours
import contextlib
import functools
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._control import StepExited
from .errors import TetherError

__all__ = ["LoopThread", "await_on", "check_not_forked", "home_loop", "homed", "mark_used"]

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")
log = logging.getLogger("tether")

_OPEN: set[LoopThread] = set()  # loops running now (kept alive until stopped)
_STARTED: weakref.WeakSet[LoopThread] = weakref.WeakSet()  # every one that started a loop
# the process each owner (an App) was first used in: a forked child must not use it
_USED_IN: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()


def _forget_in_child() -> None:
    # a forked child (multiprocessing) has none of its parent's threads: their loops are
    # not its to close, and waiting on them at its exit would hang it for good
    _OPEN.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
_hook_installed = False
_hook_guard = threading.Lock()


def _at_exit() -> None:
    for lt in list(_OPEN):
        try:
            lt.exit()
        except BaseException:  # one App failing to close must not stop the others
            log.exception("closing tether at exit failed")


def _install_exit_hook() -> None:
    """Once per process: close open loops at exit, and make SIGTERM a normal exit."""
    global _hook_installed
    with _hook_guard:
        if _hook_installed:
            return
        _hook_installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:  # runs before threads are joined and executors shut down
        register(_at_exit)
    else:  # pragma: no cover - every supported CPython has it
        import atexit

        atexit.register(_at_exit)
    _catch_sigterm()


def _catch_sigterm() -> None:
    """Make SIGTERM a normal exit (once a loop started), unless the process has a
    handler of its own. Only the main thread may set a handler: an App built there
    and first used from another thread (a web server's) has it set when built."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # pragma: no cover - not the main interpreter
        pass


def _terminate(signum: int, frame: object) -> None:
    if not _hook_installed:  # no loop started yet: nothing to close, die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise SystemExit(128 + signum)


def check_not_forked(owner: object) -> None:
    """Refuse to use `owner` (an App) in a process forked from the one whose loop thread
    it opened: that thread is not in the child, and a call handed to its loop waited
    for good; its database connections are the parent's too. So do they once it was
    used at all (`mark_used`), through the async API too: the child's call waited for
    good on the SQLite connection's thread, or on the parent's PostgreSQL pool."""
    for lt in list(_STARTED):
        if lt.serves(owner):
            lt.check_here()
    _check_used_here(owner)


def _check_used_here(owner: object) -> None:
    used_in = None if owner is None else _USED_IN.get(owner)
    if used_in is not None and used_in != os.getpid():
        raise TetherError(_forked_message(used_in))


def mark_used(owner: object) -> None:
    """Note that `owner` is used (its store opened) in this process (`check_not_forked`)."""
    with contextlib.suppress(TypeError):  # an owner without weak references: not tracked
        if owner not in _USED_IN:  # once: every App call passes here
            _USED_IN[owner] = os.getpid()


def _forked_message(pid: int) -> str:
    return (
        f"this App was opened in process {pid} (its event loop thread, its database "
        "connections), and this process was forked from it (multiprocessing's default on "
        "Linux, a pre-forking server such as gunicorn), where neither works: a call waited "
        "for good. Create an App in the child process (in the function it runs, a Pool "
        "initializer or a post-fork hook: app.with_database(app.database_url) builds one "
        "with this App's workflows and settings), or start children with "
        "multiprocessing.get_context('spawn')"
    )


_CUT_SHORT = (
    "the App was closed (app.close(), or the process exiting) while this call ran on it, "
    "and the call was cut short; make calls before closing the App, or use a new one"
)
_CLOSING = (
    "the App is closing (app.close(), or the process exiting) and takes no more calls; "
    "make calls before closing the App, or use a new one "
    "(app.with_database(app.database_url) builds one with the same workflows and settings)"
)


def _coro_advice(coro: Coroutine[Any, Any, Any]) -> str:
    """The async call to await instead of the sync one that was given `coro`."""
    qualname = str(getattr(coro, "__qualname__", ""))
    if qualname.startswith("App.a"):
        return f"await the async method instead: `await app.{qualname[4:]}(...)`"
    return "await the coroutine in that loop instead of handing it to app.run_sync"


def home_loop(owner: object) -> asyncio.AbstractEventLoop | None:
    """The loop thread running for `owner` (an App whose sync facade started one: its
    `on_exit` is `owner`'s method), or None. While it runs, `owner`'s store, runner
    and background runs live on it, and async work of `owner` belongs there too: run
    beside it on another loop, the two would take the store from each other."""
    lt = _home_thread(owner)
    return None if lt is None else lt.loop


def _home_thread(owner: object) -> LoopThread | None:
    """The loop thread running for `owner` (see `home_loop`), or None."""
    for lt in list(_OPEN):
        if lt.serves(owner):
            return lt
    return None


async def await_on(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], on_cancel: Callable[[], None]
) -> T:
    """Await `coro` run on `loop` (another thread's). Cancelled here, it calls
    `on_cancel` (a graceful stop) and still waits for `coro` to end there, so what
    it does on its way out is done when this returns, not abandoned midway."""
    fut = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
            break
        except asyncio.CancelledError:
            if fut.done():  # ended (or cancelled) there: nothing left to wait for
                raise
            cancelled = True
            on_cancel()
    if cancelled:
        raise asyncio.CancelledError
    return result


def homed(
    amethod: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """`amethod` of an owner (an App), run on the owner's loop thread while one runs
    (`home_loop`) when awaited on another loop: a program that used the sync facade
    (`app.start`, whose run goes on in the background) and then ``asyncio.run``s the
    async API would otherwise open the store anew on its own loop, taking the
    connections from under the background run (on PostgreSQL the run stopped for
    good). Cancelled here, the call is cancelled there and awaited to its end."""

    @functools.wraps(amethod)
    async def hop(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        check_not_forked(self)
        refuse_closed = getattr(self, "refuse_closed", None)  # an App: not once closed
        if refuse_closed is not None:
            refuse_closed(amethod.__name__)
        mark_used(self)
        lt = _home_thread(self)
        home = None if lt is None else lt.loop
        if lt is None or home is None or home is asyncio.get_running_loop():
            return await amethod(self, *args, **kwargs)
        # the task there, and whether a cancel came (set on two threads: each writes its
        # own key before it reads the other's, so a cancel is never missed)
        seen: dict[str, Any] = {}

        async def there() -> T:
            seen["task"] = asyncio.current_task()
            if seen.get("cancelled"):
                raise asyncio.CancelledError
            return await lt.call(amethod(self, *args, **kwargs))  # one of its calls there

        def cancel() -> None:
            seen["cancelled"] = True
            task = seen.get("task")
            if task is not None:
                home.call_soon_threadsafe(task.cancel)

        return await await_on(home, there(), cancel)

    return hop


class LoopThread:
    """A loop running in a daemon thread, started on first use.

    `on_exit` is called (from the exiting main thread) at interpreter exit if
    the loop still runs then; it should close its owner gracefully.
    """

    def __init__(
        self, name: str = "tether-loop", on_exit: Callable[[], None] | None = None
    ) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._on_exit = on_exit
        self._pid = 0  # the process the loop was started in
        self._calls: set[asyncio.Task[Any]] = set()  # the calls running on the loop now
        self._sealed = False  # `end_calls` ran: no more calls until the loop stopped
        if on_exit is not None:
            _catch_sigterm()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def serves(self, owner: object) -> bool:
        """Whether this loop is `owner`'s (its exit hook is a method of `owner`)."""
        return getattr(self._on_exit, "__self__", None) is owner

    def forked(self) -> bool:
        """Whether this process was forked after the loop started (it is not here)."""
        return self._loop is not None and self._pid != os.getpid()

    def check_here(self) -> None:
        """Refuse to go on in a process forked after this loop started (see
        `check_not_forked`), saying how to do it instead."""
        if self.forked():
            raise TetherError(_forked_message(self._pid))
        _check_used_here(getattr(self._on_exit, "__self__", None))

    def _submit(
        self, coro: Coroutine[Any, Any, T], closing: bool = False
    ) -> concurrent.futures.Future[T]:
        """Hand `coro` to the loop (started if need be), under the guard that `stop`
        takes: a call racing a close is on the loop `stop` drains, never on one that
        stopped with it queued (its caller waited for good). Once the calls were ended
        (`end_calls`) only the owner's close (`closing`) is taken."""
        try:
            self.check_here()
        except BaseException:
            coro.close()
            raise
        with self._guard:
            if self._loop is None or self._loop.is_closed():
                _install_exit_hook()
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop, self._pid, self._sealed = loop, os.getpid(), False
                _OPEN.add(self)
                _STARTED.add(self)
            elif self._sealed and not closing:
                coro.close()
                raise TetherError(_CLOSING)
            return asyncio.run_coroutine_threadsafe(self.call(coro, closing), self._loop)

    async def call(self, coro: Coroutine[Any, Any, T], closing: bool = False) -> T:
        """Await `coro`, a call made on this loop, as one of the calls `end_calls` ends
        (unless it is the owner's close, `closing`): ended there, it raises an error
        saying the App closed under it, not a bare CancelledError."""
        if self._sealed and not closing:  # queued before `end_calls`, started after it
            coro.close()
            raise TetherError(_CLOSING)
        task = None if closing else asyncio.current_task()
        if task is not None:
            self._calls.add(task)
        try:
            return await coro
        except asyncio.CancelledError:
            if self._sealed and task is not None:
                raise TetherError(_CUT_SHORT) from None
            raise
        finally:
            if task is not None:
                self._calls.discard(task)

    async def end_calls(self) -> None:
        """Called by the owner's close on this loop before it closes its store: cut the
        calls still running here short (a read, a `result` waiting, a signal) and take
        no new ones. A call left to run touched the store as it closed, or opened it
        anew (PostgreSQL: a pool whose workers `stop` then waited on for good)."""
        if self._loop is None or self._loop is not asyncio.get_running_loop():
            return  # closed on another loop (the async API alone): its calls are not ours
        self._sealed = True
        me = asyncio.current_task()
        calls = [t for t in self._calls if t is not me]
        for t in calls:
            t.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    def run(self, coro: Coroutine[Any, Any, T], closing: bool = False) -> T:
        """Run `coro` on the loop thread and wait for its result (`closing`: it is the
        owner's close, taken after `end_calls`, see `_submit`).

        Ctrl-C or SystemExit while waiting leaves `coro` running: the exit
        hook (or the App's close) then lets its step in flight finish and
        hands its run back, instead of abandoning the step mid-way.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            advice = _coro_advice(coro)
            coro.close()
            raise TetherError(
                "this is the sync facade, and an event loop is already running in this thread "
                "(an async function, a notebook, an async web handler), which waiting here "
                f"would block; {advice}"
            )
        fut = self._submit(coro, closing)
        try:
            return fut.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except StepExited as exc:  # a step's sys.exit(3) or KeyboardInterrupt: raised
            log.warning("%s", exc)  # as itself, so the script exits as its step asked
            raise exc.exit from None
        except concurrent.futures.CancelledError:
            if self._loop is None:  # `stop` cancelled it: the App closed under the call
                raise TetherError(_CUT_SHORT) from None
            raise
        except BaseException:
            fut.cancel()
            raise

    def exit(self) -> None:
        """The interpreter exits: close the owner gracefully, then stop the loop."""
        if self._loop is None or self._loop.is_closed():
            return
        if self._on_exit is not None:
            try:
                self._on_exit()
            except (KeyboardInterrupt, SystemExit):
                # a second Ctrl-C or SIGTERM during the grace period: cut it short, as
                # a worker does; `stop` cancels the runs still driven, and a run
                # cancelled while draining is handed back, its step in flight
                # recorded as interrupted (left running, it waited for its claim)
                log.warning("stopping at once: the steps in flight are interrupted")
        self.stop()

    def stop(self) -> None:
        """Stop the loop (after cancelling what still runs on it) and join its thread."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            _OPEN.discard(self)
        if loop is None or thread is None or loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
