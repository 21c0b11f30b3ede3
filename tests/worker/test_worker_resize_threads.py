"""A worker running on its own loop in a thread of its own (`asyncio.run(worker.run())`
there, or `worker.serve()`) is resized and stopped from another thread: an autoscaler's,
an admin endpoint's. Both are seen at once, not at the next poll.

Its loop runs in asyncio's debug mode, where a loop touched from another thread
raises: an asyncio.Event set there schedules its waiters without waking the loop,
which saw them only when something else woke it (a store's wait ending, a timer).
Its poll, maintenance and job leases are an hour long."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tether import App, Workflow
from tether.errors import InvalidArgumentError
from tether.testing import eventually_sync
from tether.worker import Worker

HOUR = 3600.0
WITHIN = 5.0  # seconds a thing asked from the test's thread may take: far below an hour


class _Thread:
    """`worker` running in a thread of its own, on a loop of its own."""

    def __init__(self, worker: Worker, first: Callable[[], Awaitable[Any]]) -> None:
        self.worker = worker
        self.failures: list[BaseException] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._first = first
        self.thread = threading.Thread(target=self._main, name="tether-worker", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve(), debug=True)
        except BaseException as exc:  # said by the test, in its own thread
            self.failures.append(exc)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await self._first()
            await self.worker.run(install_signals=False)
        finally:
            await self.worker.app.aclose()

    def end(self) -> None:
        """Make sure the thread ends whatever the test saw: the worker stopped from its
        own loop (the way that always worked), the thread joined."""
        if self.thread.is_alive() and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: it has ended
                self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)


@contextlib.contextmanager
def _running(worker: Worker, first: Callable[[], Awaitable[Any]]) -> Iterator[_Thread]:
    host = _Thread(worker, first)
    host.thread.start()
    try:
        yield host
    finally:
        host.end()
    assert not host.thread.is_alive(), "the worker's thread did not end"
    assert not host.failures, f"the worker's thread failed: {host.failures!r}"


def _stop_from_here(host: _Thread) -> None:
    """`stop()` from the test's thread: the worker's thread ends within `WITHIN`."""
    host.worker.stop()
    host.thread.join(WITHIN)
    assert not host.thread.is_alive(), (
        f"stop() from another thread was not seen within {WITHIN}s (the poll is an hour)"
    )


def test_a_worker_resized_from_another_thread_claims_at_once(database_url: str) -> None:
    """Resized up from another thread while its one slot is busy, the worker starts the
    queued run at once. Before, `resize` set the worker's asyncio.Event from that thread,
    touching its loop off the loop's thread (it raised in debug mode)."""
    app = App(database_url, job_visibility=HOUR)  # no lease renewal wakes the loop
    entered: queue.Queue[int] = queue.Queue()
    gate = threading.Event()

    def blocked() -> int:  # a sync step: it runs in a step thread
        entered.put(1)
        gate.wait(30)
        return 1

    @app.workflow(name="gated")
    async def gated(wf: Workflow) -> int:
        return await wf.step("s", blocked)

    ids: list[str] = []

    async def submit() -> None:
        ids.extend([await app.asubmit(gated, queue="q") for _ in range(2)])

    worker = Worker(app, queues=["q"], concurrency=1, poll_interval=HOUR,
                    maintenance_interval=HOUR)  # fmt: skip
    with _running(worker, submit) as host:
        try:
            entered.get(timeout=30)  # the first run's step is running: the one slot busy
            assert entered.empty()
            with pytest.raises(InvalidArgumentError, match="integer >= 1"):
                worker.resize(0)  # a bad cap still raises in the caller's thread
            assert worker.concurrency == 1
            worker.resize(2)
            assert worker.concurrency == 2
            entered.get(timeout=WITHIN)  # the second run's step started: claimed at once
        finally:
            gate.set()
        eventually_sync(lambda: worker.executed == 2, timeout=30)
        _stop_from_here(host)
    assert len(ids) == 2


def test_a_worker_stopped_from_another_thread_stops_at_once(database_url: str) -> None:
    """An idle worker on a loop in another thread, stopped from the test's thread, ends
    at once. Before, `stop` set the worker's asyncio.Event from that thread (only a
    worker on its App's loop, `_run_at_home`, handed it over), touching its loop off
    the loop's thread (it raised in debug mode)."""
    app = App(database_url, job_visibility=HOUR)

    @app.workflow(name="quick")
    async def quick(wf: Workflow) -> int:
        return await wf.step("s", lambda: 1)

    ids: list[str] = []

    async def submit() -> None:
        ids.append(await app.asubmit(quick, queue="q"))

    worker = Worker(app, queues=["q"], poll_interval=HOUR, maintenance_interval=HOUR)
    with _running(worker, submit) as host:
        eventually_sync(lambda: worker.executed == 1, timeout=30)  # then idle for an hour
        _stop_from_here(host)
    worker.resize(3)  # stopped, its loop closed: the new cap is kept for its next run
    assert worker.concurrency == 3
    assert len(ids) == 1
