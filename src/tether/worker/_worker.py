"""The long-running worker host: claims jobs, drives their runs, does maintenance.

Shutdown is graceful: on SIGTERM/SIGINT (or `stop()`) the worker stops
claiming and starting steps; the steps in flight finish and are recorded
within `grace` seconds, and each run is handed back with its job, so another
worker picks it up at once. What is still running after `grace` is
cancelled, recorded as interrupted and handed back the same way.

Maintenance also adopts orphans: runs of the workflows registered here that
were driven in-process (`app.run`, `app.start`) by a process that died are
queued on this worker's first queue once their owner's claim has lapsed.

A worker claims only jobs of the workflows registered here (at versions they
resume); jobs of others stay queued for a worker that has them, and the worker
logs a warning of them (`ForeignJobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._durations import MAX_SECONDS, check_seconds
from .._floors import worker_timing
from .._loop import await_on, home_loop
from .._owners import forget_owner, new_owner
from ..errors import (
    IncompatibleStoreError,
    InvalidArgumentError,
    StoreError,
    StoreUnavailableError,
)
from ..kernel import JobExecuted, TimersFire
from ..store import JobRow, RunStatus
from ._claim import ForeignJobs, claim_jobs, host_id, queue_names, split_names
from ._maintenance import (
    FORGET_PROCESSES_AFTER,
    hold_worker_id,
    maintenance_tick,
    release_chores,
    release_worker_id,
    worker_id_taken,
)

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Worker"]

log = logging.getLogger("tether.worker")

# seconds between two fires of timers between ticks while one stays due (the database's
# clock behind this machine's: it is not due there yet)
TIMER_GAP = 0.25

STOPPING_APP = (
    "stopping: this worker's App is stopping (app.drain(), app.close(), or an earlier "
    "worker of it stopped), so each run it claimed would only hand itself back; "
    "start the worker with a new App"
)


class Worker:
    """Runs queued jobs of `queues` (a name, names separated by commas as with
    ``tether worker -q a,b``, or a list of names) with at most `concurrency` at once.

    Its maintenance also deletes the rows of processes that drive runs once they
    have been silent (stopped or killed) for `forget_processes_after` seconds, a day
    by default: each worker start is a new process, and their rows piled up.

    `worker_id` (default: one of this process) names the worker on the jobs it
    claims and the chores it holds: give each live worker its own. Two at once
    under one id are one worker to the database: each may renew or release the
    other's jobs, and both do the chores meant for one worker at a time. A
    restart may take the id of a worker that stopped.

    `poll_interval` (seconds between claims of an idle worker that hears no news of
    work) is at least 0.01, `maintenance_interval` at least 0.1 and `stuck_after` at
    least 1: below these a worker keeps a CPU and the database busy for nothing."""

    def __init__(
        self,
        app: App,
        *,
        queues: str | Sequence[str] = ("default",),
        concurrency: int = 4,
        worker_id: str | None = None,
        poll_interval: float = 0.5,
        maintenance_interval: float = 5.0,
        grace: float = 30.0,
        stuck_after: float = 300.0,
        forget_processes_after: float = FORGET_PROCESSES_AFTER,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        # as seconds, to a century: NaN (which passed `<= 0`) spun an idle worker's CPU,
        # and a NaN grace cut steps off at once. Kept as the seconds checked: a timedelta
        # (which the check takes) was kept as given, and every maintenance tick, and the
        # stop, then failed adding it to a float
        self.app = app
        self.queues = queue_names(split_names(queues))
        self.concurrency = concurrency
        self.worker_id = host_id(worker_id)
        # a given id is held by one live worker at a time: `_instance`, this start of it
        self._named = worker_id is not None
        self._instance: str | None = None
        # each at least its floor (`FLOORS`): 1e-9, above 0, spun a CPU on the database
        self.poll_interval = _timing("poll_interval", poll_interval)
        self.maintenance_interval = _timing("maintenance_interval", maintenance_interval)
        self.grace = check_seconds("grace", grace)
        self.stuck_after = _timing("stuck_after", stuck_after)
        self.forget_processes_after = check_seconds(
            "forget_processes_after", forget_processes_after, positive=True
        )
        self._running: dict[asyncio.Task[JobExecuted], JobRow] = {}
        self._stopping: asyncio.Event | None = None
        self._live = False  # inside `run`: a `stop()` is for this run
        self._stop_first = False  # `stop()` asked while no run went on: the next one does nothing
        # set once a newer tether migrated the database: `run` stops and raises it
        self.outdated: IncompatibleStoreError | None = None
        self._hurry: asyncio.Event | None = None  # asked twice: cut the grace period short
        self._kick: asyncio.Event | None = None
        self._parked: asyncio.Event | None = None  # a run this worker drove parked
        self._full = False  # whether the last claim filled every free slot, work left
        self.executed = 0
        self.abandoned = 0  # jobs cancelled at shutdown and handed back
        self._home: asyncio.AbstractEventLoop | None = None  # the App's loop, run there
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `run` works on, if it does
        self.foreign = ForeignJobs(app, self.worker_id, self.queues)

    # -- lifecycle ----------------------------------------------------------------------

    def serve(self) -> None:
        """Run as this process's main loop until SIGTERM/SIGINT, then exit.

        A step running in a worker thread cannot be interrupted; if shutdown
        had to abandon such steps (their jobs are already handed back and
        their runs fenced), the process exits without waiting for them.
        """
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.run())
        finally:
            if self.abandoned:
                logging.shutdown()
                os._exit(0)
            if home_loop(self.app) is not None:
                self.app.close()  # it lives on its sync facade's loop thread: closed there
            else:
                loop.run_until_complete(self.app.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Ask the worker to shut down gracefully (safe from a signal handler); asked
        again while it drains (a second Ctrl-C), it hands its runs back at once; from
        another thread too (a supervisor's)."""
        if self._handed_to_its_loop(self.stop):
            return
        if not self._live or self._stopping is None:  # not running yet (a supervisor, a signal
            self._stop_first = True  # handler): the next `run` returns at once, claiming nothing
            return
        if self._stopping.is_set() and self._hurry is not None:
            if not self._hurry.is_set():
                log.warning("asked again: handing the runs in flight back now",
                            extra={"worker": self.worker_id})  # fmt: skip
            self._hurry.set()
        self._stopping.set()
        if self._kick is not None:
            self._kick.set()

    async def run(self, *, install_signals: bool = True) -> None:
        """Work until `stop()` (or SIGTERM/SIGINT when `install_signals`)."""
        home = home_loop(self.app)
        if home is not None and home is not asyncio.get_running_loop():
            return await self._run_at_home(home, install_signals)
        self._loop = asyncio.get_running_loop()  # before `_live`: a `stop()` seen live goes there
        self._live = True
        try:
            self._stopping = asyncio.Event()
            self._hurry = asyncio.Event()
            self._kick = asyncio.Event()
            self._parked = asyncio.Event()
            if self._stop_first:  # stopped before it ran: it opens, claims and holds nothing
                self._stop_first = False
                log.info("worker stopped before it started", extra={"worker": self.worker_id})
                return
            await self._work(install_signals)
        finally:
            self._live = False
            self._loop = None

    async def _work(self, install_signals: bool) -> None:
        """`run`'s work, once its events are made: claim until stopped, then drain."""
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if not await self._open_store():
            return
        self._instance = new_owner() if self._named else None
        if (holder := await self._hold_id()) is not None:
            forget_owner(self._instance or "")
            for sig in (signal.SIGTERM, signal.SIGINT) if install_signals else ():
                loop.remove_signal_handler(sig)
            raise worker_id_taken(self.worker_id, holder)
        await self.app.aannounce(self.queues)
        if not self.app.workflows:
            log.warning("no workflows are registered in this worker's App: it claims no job",
                        extra={"worker": self.worker_id})  # fmt: skip
        log.info(
            "worker started",
            extra={
                "worker": self.worker_id,
                "queues": list(self.queues),
                "concurrency": self.concurrency,
                # what it was told: `tether worker --poll-interval` and the others
                "poll_interval": self.poll_interval,
                "maintenance_interval": self.maintenance_interval,
                "stuck_after": self.stuck_after,
            },
        )
        chores = asyncio.ensure_future(self._maintenance())
        try:
            await self._claim_loop()
        finally:
            chores.cancel()
            await asyncio.gather(chores, return_exceptions=True)
            await release_chores(self.app, self.worker_id)  # another worker takes them now
            await self._drain()
            if self._instance is not None:  # its jobs handed back: the id is free
                await release_worker_id(self.app, self.worker_id, self._instance)
                forget_owner(self._instance)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker stopped", extra={"worker": self.worker_id, "executed": self.executed})
        if self.outdated is not None:
            raise self.outdated

    async def _run_at_home(self, home: asyncio.AbstractEventLoop, install_signals: bool) -> None:
        """`run` on the loop thread of an App whose sync facade was used (`app.run`):
        its store and runs live there, and a worker on this loop beside it took the
        store from them (a run it drove failed at exit with a traceback). Signals
        are caught here and the handlers they replaced put back after."""
        here = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if install_signals else ()
        before = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            here.add_signal_handler(sig, self.stop)
        self._home = home
        try:
            await await_on(home, self.run(install_signals=False), self.stop)
        finally:
            self._home = None
            for sig, handler in before.items():
                here.remove_signal_handler(sig)
                if handler is not None:
                    signal.signal(sig, handler)

    async def _open_store(self) -> bool:
        """Open the store, waiting out a database that is down or restarting (a worker
        started during an outage serves once it is back); False if stopped first."""
        assert self._stopping is not None
        delay = self.poll_interval
        while True:
            try:
                await self.app.store.open()
                return True
            except IncompatibleStoreError:
                raise  # not a tether database (or a newer one): waiting will not help
            except StoreError as exc:
                if isinstance(exc, StoreUnavailableError) and exc.lasting:
                    raise  # no such database, role or password: waiting will not help
                log.warning(
                    "cannot open the store yet (%s); retrying in %.1fs",
                    exc,
                    delay,
                    extra={"worker": self.worker_id},
                )
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return False
            except TimeoutError:
                delay = min(delay * 2, 10.0)

    def resize(self, concurrency: int) -> None:
        """Run at most `concurrency` jobs at once from now on (a lower cap lets the jobs
        in flight finish; a higher one claims at once), from any thread."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        if not self._handed_to_its_loop(self._wake):
            self._wake()

    def _wake(self) -> None:
        """Make the claim loop look at its free slots again (on the worker's loop)."""
        if self._kick is not None:
            self._kick.set()

    def _handed_to_its_loop(self, callback: Callable[[], None]) -> bool:
        """Whether `callback` was called off the loop the worker runs on (from another
        thread: an autoscaler's, an admin endpoint's) and so handed to that loop. An
        asyncio.Event set from another thread does not wake its loop: a resize or stop
        waited for the poll (or for a lease renewal) to be seen."""
        loop = self._loop or self._home
        if loop is None or _running_loop() is loop:
            return False
        with contextlib.suppress(RuntimeError):  # its loop closed: the worker has stopped
            loop.call_soon_threadsafe(callback)
        return True

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._stopping is not None and self._kick is not None
        app = self.app
        # listen for news of work before the first claim: a job announced between that
        # claim and the first wait would be heard only at the poll (once a claim takes
        # the last job, no claim follows when it ends: news starts the next one)
        with contextlib.suppress(StoreError):
            await app.store.wait_for_change("jobs", 0)
        while not self._stopping.is_set():
            if app.draining:  # each run claimed would hand itself back: claimed in a loop
                log.warning(STOPPING_APP, extra={"worker": self.worker_id})
                self.stop()
                break
            free = self.concurrency - len(self._running)
            # cleared before the claim, not after: a job of a concurrency key (or capped
            # queue) that ends while the claim is in flight, after it found the key held,
            # kicks a claim again (cleared after, it was lost: the job it had to leave
            # waited for the poll, as nothing announces a key freed)
            self._kick.clear()
            if free > 0:
                try:
                    jobs = await claim_jobs(app, self.worker_id, self.queues, free, with_runs=True)
                except StoreError as exc:  # the database blinked: keep going, a bit later
                    log.warning("claim failed: %s", exc, extra={"worker": self.worker_id})
                    await asyncio.sleep(self.poll_interval)
                    continue
                except Exception:  # a row it cannot read: say so, and keep serving the rest
                    log.exception("claim failed", extra={"worker": self.worker_id})
                    await asyncio.sleep(max(self.poll_interval, 1.0))
                    continue
                for job in jobs:
                    self._start(job)
                # every slot filled and ready jobs left: claim again once one frees; if it
                # took the last ready job, a claim then would come back empty (news of
                # work, or the poll, starts the next one)
                self._full = len(jobs) == free and jobs.more
                if self._full:
                    continue  # every free slot filled: more may be ready, claim again
            # fewer than asked (or none): nothing more was ready; claiming again at once
            # would come back empty, so wait for a free slot, news of a job, or the poll
            await self._idle(self._next_claim_within())
            if len(self._running) >= self.concurrency:
                self._full = True  # news (or the poll) while every slot is busy: claim
                # as soon as one frees, or the job announced meanwhile waits for the poll

    async def _idle(self, timeout: float) -> None:
        """Sleep until a job slot frees, new work is announced, the worker is asked to
        stop (even while it claimed, which cleared the kick), or `timeout` passes."""
        assert self._kick is not None and self._stopping is not None
        waits: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._kick.wait()),
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._news(timeout)),
        }
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _next_claim_within(self) -> float:
        """How long an idle worker waits before it claims again without news: its poll,
        or sooner, the rate window of a rate-capped queue it serves. A job the rate held
        back becomes claimable when the window moves on, which nothing announces: with a
        poll longer than the window, a queue capped at 4/s started 4 jobs per poll."""
        windows = [
            math.ceil(cap.rate_per_second) / cap.rate_per_second  # at least a second
            for queue in self.queues
            if (cap := self.app.queue_limits.get(queue)) is not None and cap.rate_per_second
        ]
        return min([self.poll_interval, *windows])

    async def _news(self, timeout: float) -> None:
        """Until the store announces work, or `timeout`. A wait may end early with
        nothing (SQLite's returns within 50 ms): wait again rather than claim."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (left := end - loop.time()) > 0:
            if await self.app.store.wait_for_change("jobs", left):
                return

    def _start(self, job: JobRow) -> None:
        log.info(
            "claimed",
            extra={
                "worker": self.worker_id,
                "job": job.id,
                "run": job.workflow_id,
                "queue": job.queue,
                "attempt": job.attempt,
            },
        )
        task = asyncio.ensure_future(self._execute(job))
        self._running[task] = job
        task.add_done_callback(self._finished)

    async def _execute(self, job: JobRow) -> JobExecuted:
        return await self.app.kernel.execute_job(job, self.worker_id)

    def _held_back(self, job: JobRow | None) -> bool:
        """Whether closing `job` may free a job the last claim had to leave: one of its
        concurrency key, or of its queue's caps."""
        return job is not None and (
            job.concurrency_key is not None or job.queue in self.app.queue_limits
        )

    def _finished(self, task: asyncio.Task[JobExecuted]) -> None:
        job = self._running.pop(task, None)
        if self._kick is not None and (self._full or self._held_back(job)):
            # a slot freed while more work may wait: claim at once; when the last claim
            # left slots free, new work is announced (or polled) instead, and claiming
            # now would come back empty
            self._kick.set()
        if job is None or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "job failed",
                extra={
                    "worker": self.worker_id,
                    "job": job.id,
                    "run": job.workflow_id,
                    "error": repr(exc),
                },
            )
            return
        self.executed += 1
        result = task.result()
        if result.status == RunStatus.WAITING.value and self._parked is not None:
            self._parked.set()  # on a timer, perhaps: its due time is looked at again
        log.info(
            # at a stop, a run that ended its step hands itself back: it was logged as
            # "finished" with status=pending, unlike those handed back after the grace
            "handed back" if self._handing_back(result.status) else "finished",
            extra={
                "worker": self.worker_id,
                "job": job.id,
                "run": job.workflow_id,
                "status": result.status,
                "ghost": result.ghost,
            },
        )

    def _handing_back(self, status: str) -> bool:
        """Whether a job that ended with its run at `status` handed the run back to the
        queue because this worker is stopping."""
        stopping = self._stopping is not None and self._stopping.is_set()
        return stopping and status == RunStatus.PENDING.value

    # -- maintenance and shutdown ---------------------------------------------------------

    async def _hold_id(self) -> str | None:
        """Take (or renew) this worker's id; the live worker holding it instead, if one
        does. A generated id is this process's own: nobody else holds it."""
        if self._instance is None:
            return None
        ttl = min(self.maintenance_interval * 3, MAX_SECONDS)
        try:
            return await hold_worker_id(self.app, self.worker_id, self._instance, ttl)
        except StoreError as exc:  # the database blinked: the next tick tries again
            log.warning("holding worker id failed: %s", exc, extra={"worker": self.worker_id})
            return None

    async def _maintenance(self) -> None:
        while True:
            if await self._outdated():
                return
            if (holder := await self._hold_id()) is not None:  # we stalled past its lease
                log.error("stopping: %s", worker_id_taken(self.worker_id, holder),
                          extra={"worker": self.worker_id})  # fmt: skip
                self.stop()
                return
            fired = self.app.clock.now()  # a tick due while this one runs: at once after
            try:
                report = await maintenance_tick(
                    self.app,
                    self.worker_id,
                    chore_ttl=min(self.maintenance_interval * 3, MAX_SECONDS),
                    stuck_after=self.stuck_after,
                    orphan_queue=self.queues[0],
                    outbox_budget=self.maintenance_interval,
                    forget_processes_after=self.forget_processes_after,
                )
                if (
                    report.timers_woken
                    or report.scheduled
                    or report.leases_reaped
                    or report.stuck_requeued
                    or report.orphans_adopted
                    or report.processes_forgotten
                ):
                    log.info(
                        "maintenance",
                        extra={
                            "worker": self.worker_id,
                            "timers_woken": len(report.timers_woken),
                            "scheduled": len(report.scheduled),
                            "leases_reaped": report.leases_reaped,
                            "stuck_requeued": len(report.stuck_requeued),
                            "orphans_adopted": len(report.orphans_adopted),
                            "processes_forgotten": report.processes_forgotten,
                        },
                    )
            except Exception:
                log.exception("maintenance tick failed")
            with contextlib.suppress(StoreError):  # the database blinked: next tick
                await self.foreign.check()
                await self.foreign.unserved_schedules()
            await self._until_next_tick(fired)

    async def _until_next_tick(self, fired: datetime) -> None:
        """Wait for the next maintenance tick, firing timers as they come due meanwhile:
        a run parked on a timer (or a wait's timeout) resumed only at a tick, up to
        `maintenance_interval` late, as no one announces a timer that comes due. The
        next due time is read again whenever a run this worker drove parks."""
        assert self._parked is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + self._next_tick_within(fired)
        gap = 0.0  # after a fire: a timer still due (clocks apart) is not fired in a loop
        while (left := end - loop.time()) > 0:
            self._parked.clear()  # a run parking from here on is seen by the next look
            due = await self._timer_due_in()
            wait = left if due is None else min(left, max(due, gap))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._parked.wait(), wait)
            if self._parked.is_set() or due is None or due > wait:
                continue  # a run parked (look again), or the tick is due
            try:
                await self.app.kernel.adispatch(TimersFire())
            except StoreError as exc:  # the database blinked: the tick tries again
                log.warning("firing timers failed: %s", exc, extra={"worker": self.worker_id})
            except Exception:  # as a tick's failure: logged, the maintenance goes on
                log.exception("firing timers failed", extra={"worker": self.worker_id})
            gap = TIMER_GAP

    async def _timer_due_in(self) -> float | None:
        """Seconds until the earliest pending timer or wait timeout (None: none, or the
        database blinked), on the App's clock."""
        try:
            due = await self.app.store.next_due()
        except StoreError:
            return None
        if due is None:
            return None
        return (due - self.app.clock.now()).total_seconds()

    def _next_tick_within(self, fired: datetime) -> float:
        """How long to wait for the next maintenance tick: its interval, or less, until
        the first schedule tick after `fired` (when the last tick began) is due. Ticks
        fired only each interval started up to an interval late, and with
        missed="skip" one found over a minute late is dropped: an interval of 60 s or
        more lost ticks without a word."""
        ticks = [sched.next_tick(fired) for sched in self.app.schedules.values()]
        now = self.app.clock.now()
        until = min([(tick - now).total_seconds() for tick in ticks], default=MAX_SECONDS)
        return min(self.maintenance_interval, max(until, 0.01))

    async def _outdated(self) -> bool:
        """True (and the worker stopping) once a newer tether has migrated the database:
        runs it started may mean what this release cannot read; its workers take over."""
        try:
            await self.app.store.check_schema()
        except IncompatibleStoreError as exc:
            log.error("stopping: %s", exc, extra={"worker": self.worker_id})
            self.outdated = exc
            self.stop()
            return True
        except StoreError:  # the database blinked: the tick says so
            pass
        return False

    async def _finish_within(
        self, tasks: set[asyncio.Task[JobExecuted]], deadline: float
    ) -> set[asyncio.Task[JobExecuted]]:
        """Wait for `tasks` until `deadline`, or until asked to stop again; those left."""
        assert self._hurry is not None
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while tasks and not self._hurry.is_set() and (left := deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait(
                    {*tasks, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                tasks -= done
        finally:
            hurry.cancel()
        return tasks

    async def _drain(self) -> None:
        """Start no more steps; let the steps in flight finish and their runs hand
        themselves back (their jobs go back to the queue) within the grace period;
        cancel what is left and hand those jobs back."""
        self.app.drain()
        if not self._running:
            return
        # said at once: with runs in flight the stop takes up to `grace`, and the worker
        # said nothing from the SIGTERM (or Ctrl-C) until its runs were back
        log.info(
            "stopping: the runs in flight finish their current step, then are handed "
            "back; stop again (Ctrl-C) to hand them back now",
            extra={"worker": self.worker_id, "in_flight": len(self._running), "grace": self.grace},
        )
        pending = await self._finish_within(set(self._running), time.monotonic() + self.grace)
        left = [(t, self._running.get(t)) for t in pending]
        self.abandoned = len(left)
        for t, _ in left:
            t.cancel()
        await asyncio.gather(*(t for t, _ in left), return_exceptions=True)
        for _, job in left:
            if job is None:
                continue
            with contextlib.suppress(Exception):
                await self.app.store.release_job(job.id, self.worker_id, at=self.app.clock.now())
            log.info(
                "handed back",
                extra={"worker": self.worker_id, "job": job.id, "run": job.workflow_id},
            )


def _timing(setting: str, value: object) -> float:
    """`value` as seconds, not below `setting`'s floor."""
    return worker_timing(setting, check_seconds(setting, value, positive=True))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
