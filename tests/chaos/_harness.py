"""The chaos harness shared by tests/chaos and bench/chaos.py.

`run_chaos(config)` submits runs of the chaos workflow (`_flows.py`) to a
queue, starts worker processes, and until every run has ended keeps stopping
a random worker (SIGKILL in ``kill`` and ``cancel`` modes, SIGTERM in
``graceful`` mode) and starting it again; on PostgreSQL it also terminates every
backend of the database now and then. In ``cancel`` mode a canceller process
cancels a share of the runs meanwhile (`_cancels.py`). Then it lets the workers
idle and checks the invariants (`_invariants.check_invariants`) against tether's
records, read through the public API, and the side-effect ledger the steps wrote
outside the database.

Every random choice comes from one `random.Random(seed)`; the seed is part
of the result and of the first progress line, so a failure can be replayed
(the schedule is replayed, the OS's interleaving is not).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tether
from tether import RunStatus

from ._canceller import Cancel, Planned, read_cancels, write_plan
from ._cancels import HOLD_AFTER, Cancels, plan_cancels
from ._flows import WORKFLOW, Execution, Mark, build_app, read_ledger
from ._invariants import Stop, check_invariants, open_jobs

REPO = Path(__file__).resolve().parents[2]
MODES = ("kill", "graceful", "drops", "cancel")


@dataclass
class ChaosConfig:
    """What to run and how hard to shake it. Times are seconds of real time."""

    url: str
    folder: Path  # ledger files and worker logs go here
    # "kill": workers SIGKILLed; "graceful": SIGTERM only; "drops": no worker is stopped,
    # only connections are dropped (PostgreSQL), so no step may run twice either;
    # "cancel": as "kill", and a canceller process cancels a share of the runs
    mode: str = "kill"
    runs: int = 200
    workers: int = 3
    concurrency: int = 4  # jobs at once per worker
    seed: int | None = None
    # between two stops of a worker (None: 0.4-1.5 s; 1-3 s in cancel mode, whose long
    # steps each kill cuts short)
    stop_every: tuple[float, float] | None = None
    restart_after: tuple[float, float] = (0.0, 0.5)  # a stopped worker comes back after
    terminate_every: tuple[float, float] = (0.5, 3.0)  # pg_terminate_backend (PostgreSQL)
    fan_share: float = 0.3  # share of runs whose third step fans out
    pause: tuple[float, float] = (0.0, 0.02)  # each step's duration after its effect
    job_visibility: float = 3.0
    grace: float = 10.0  # a worker's grace period on SIGTERM: steps in flight finish within it
    maintenance: float = 0.25
    stuck_after: float = 5.0
    chaos_for: float = 900.0  # give up shaking after this long, even if runs remain
    settle_for: float = 120.0  # then wait this long at most for runs and jobs to settle
    progress: Callable[[str], None] | None = None
    progress_every: float = 2.0
    # cancel mode: the share of runs cancelled; of the others, the share with a long
    # async step, lasting `long` (longer than `cancel_reach`, so a step the cancel did
    # not stop is seen to run on); the workers' owner lease (None: 30 s, 1.5 s in
    # cancel mode, so a cancel reaches a worker's step within half a second or so)
    cancel_share: float = 0.2
    long_share: float = 0.1
    long: tuple[float, float] = (4.5, 6.0)
    owner_lease: float | None = None

    @property
    def stop_gap(self) -> tuple[float, float]:
        return self.stop_every or ((1.0, 3.0) if self.mode == "cancel" else (0.4, 1.5))

    @property
    def job_attempts(self) -> int:
        """A run's job attempts: a kill during a long step costs one, and the cancel mode
        has long steps."""
        return 100 if self.mode == "cancel" else 10

    @property
    def lease(self) -> float:
        return self.owner_lease or (1.5 if self.mode == "cancel" else 30.0)

    @property
    def cancel_reach(self) -> float:
        """How long after its acknowledgement a cancel has surely reached the worker
        driving its run: two claim renewals (one may be lost to a dropped connection)
        and three seconds for a busy machine (a step was reached 1.96 s after its
        cancel at a load of 15, with renewals every half second)."""
        return 2 * self.lease / 3 + 3.0

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith(("postgresql:", "postgres:")) else "sqlite"


@dataclass
class ChaosResult:
    config: ChaosConfig
    seed: int
    ids: list[str]
    stops: list[Stop]
    restarts: int
    dropped: int  # PostgreSQL connections terminated
    statuses: dict[str, int]
    executions: int  # ledger lines: step functions that ran
    repeats: int  # executions beyond the first of their step
    violations: list[str]
    elapsed: float
    chaos_elapsed: float
    cancels: list[Cancel]
    stopped: int  # executions of steps of cancelled runs stopped (ledger "stopped" marks)

    @property
    def kills(self) -> int:
        return sum(1 for s in self.stops if s.signal == signal.SIGKILL)

    @property
    def terms(self) -> int:
        return sum(1 for s in self.stops if s.signal == signal.SIGTERM)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        c = self.config
        verdict = "all invariants held" if self.ok else f"{len(self.violations)} VIOLATIONS"
        ended_first = sum(1 for x in self.cancels if x.outcome != "cancelled")
        cancels = (
            f"cancels={len(self.cancels)} (run ended first: {ended_first}) "
            f"steps-stopped={self.stopped} "
            if c.mode == "cancel"
            else ""
        )
        return (
            f"chaos {c.backend}/{c.mode} seed={self.seed}: runs={len(self.ids)} "
            f"completed={self.statuses.get('completed', 0)} steps-executed={self.executions} "
            f"repeated={self.repeats} {cancels}"
            f"kills={self.kills} sigterms={self.terms} restarts={self.restarts} "
            f"dropped-connections={self.dropped} chaos={self.chaos_elapsed:.1f}s "
            f"total={self.elapsed:.1f}s: {verdict}"
        )


# -- worker processes ------------------------------------------------------------------


class Fleet:
    """Worker processes in numbered slots; remembers every signal it sent."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * config.workers
        self.logs: dict[int, Path] = {}  # pid -> its log file
        self.stops: list[Stop] = []
        self.signalled: set[int] = set()  # pids we stopped on purpose
        self.restarts = 0
        self.surprises: list[str] = []  # workers that died without being told to
        self._started = 0

    def env(self) -> dict[str, str]:
        c = self.config
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "CHAOS_DB_URL": c.url,
            "CHAOS_LEDGER": str(c.folder),
            "CHAOS_VISIBILITY": str(c.job_visibility),
            "CHAOS_OWNER_LEASE": str(c.lease),
            "CHAOS_QUEUE": "chaos",
            "CHAOS_CONCURRENCY": str(c.concurrency),
            "CHAOS_MAINTENANCE": str(c.maintenance),
            "CHAOS_GRACE": str(c.grace),
            "CHAOS_STUCK_AFTER": str(c.stuck_after),
        }

    def spawn(self, slot: int) -> None:
        self._started += 1
        self.procs[slot] = self._start("_flows", f"worker-{slot}-{self._started}.log")

    def spawn_canceller(self) -> subprocess.Popen[bytes]:
        """The canceller process of the cancel mode (`_canceller.py`); never signalled."""
        return self._start("_canceller", "canceller.log")

    def _start(self, module: str, log_name: str) -> subprocess.Popen[bytes]:
        log = self.config.folder / log_name
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"tests.chaos.{module}"],
                env=self.env(),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = log
        return proc

    def live(self) -> list[int]:
        """Slots whose process runs and was not told to stop."""
        return [
            i
            for i, p in enumerate(self.procs)
            if p is not None and p.poll() is None and p.pid not in self.signalled
        ]

    def send(self, slot: int, sig: int) -> Stop:
        proc = self.procs[slot]
        assert proc is not None
        at = time.time()
        self.signalled.add(proc.pid)
        os.kill(proc.pid, sig)
        dead = None
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            dead = time.time()
        stop = Stop(proc.pid, sig, at, dead)
        self.stops.append(stop)
        return stop

    def reap(self, graceful: bool) -> list[int]:
        """Slots whose process has exited (now empty); note exits nobody asked for."""
        ended = []
        for i, p in enumerate(self.procs):
            if p is None or p.poll() is None:
                continue
            ended.append(i)
            self.procs[i] = None
            asked = p.pid in self.signalled
            # -SIGTERM: stopped before it installed its handlers, so before it claimed work
            if not asked or (graceful and p.returncode not in (0, -signal.SIGTERM)):
                why = "on its own" if not asked else "on SIGTERM"
                self.surprises.append(
                    f"worker pid {p.pid} exited {why} with code {p.returncode}: {self.tail(p.pid)}"
                )
        return ended

    def tail(self, pid: int, lines: int = 15) -> str:
        path = self.logs.get(pid)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def dump_tasks(self) -> None:
        """Ask every live worker to log the stacks of its asyncio tasks."""
        for p in self.procs:
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGUSR1)
        time.sleep(1.0)
        self.surprises.append(
            "runs or jobs did not settle; task stacks are in the worker logs: "
            + ", ".join(str(self.logs[p.pid]) for p in self.procs if p is not None)
        )

    def stop_all(self, timeout: float = 60.0) -> None:
        for i in self.live():
            self.send(i, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.surprises.append(f"worker pid {p.pid} ignored SIGTERM for {timeout:g}s")
                p.kill()
                p.wait()
        self.reap(graceful=True)


# -- PostgreSQL connection drops ----------------------------------------------------------


def plain_dsn(url: str) -> str:
    """A tether PostgreSQL URL without tether's own options (schema=, pool_size=, ...)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def terminate_backends(url: str) -> int:
    """Terminate every other connection to the database; how many were terminated."""
    import psycopg

    with psycopg.connect(plain_dsn(url), autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


# -- the run --------------------------------------------------------------------------------


def _statuses(app: tether.App, limit: int) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in app.list_runs(limit=limit):
        counts[row.status.value] += 1
    return dict(counts)


def _settled(app: tether.App, ids: list[str]) -> bool:
    counts = _statuses(app, len(ids) + 100)
    ended = sum(n for s, n in counts.items() if RunStatus(s).terminal)
    return ended >= len(ids) and not open_jobs(app)


def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Submit, shake until every run has ended, let the workers idle, check."""
    c = config
    _check_config(c)
    seed = c.seed if c.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    say = c.progress or (lambda _line: None)
    say(
        f"chaos {c.backend}/{c.mode}: seed={seed} runs={c.runs} workers={c.workers}x{c.concurrency} "
        f"folder={c.folder}"
    )
    c.folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    app = build_app(c.url)
    fleet = Fleet(c)
    canceller = None
    try:
        app.list_runs(limit=1)  # creates the schema before the workers race to
        specs, plan = _draw_runs(rng, c)
        for slot in range(c.workers):
            fleet.spawn(slot)
        flow = app.get_workflow(WORKFLOW).fn
        ids = [
            app.submit(flow, spec, workflow_id=wid, queue="chaos", max_attempts=c.job_attempts)
            for wid, spec in specs.items()
        ]
        say(f"submitted {len(ids)} runs in {time.monotonic() - started:.1f}s")
        canceller = fleet.spawn_canceller() if plan else None
        shaken = _shake(c, rng, app, fleet, canceller)
        _settle(c, app, fleet, ids)
        executions, marks, torn = read_ledger(c.folder)
        cancels = read_cancels(c.folder)
        violations = check_invariants(
            app,
            specs,
            executions,
            fleet.stops,
            graceful=c.mode == "graceful",
            cancels=Cancels(plan, cancels, marks, c.cancel_reach),
        )
        statuses = _statuses(app, c.runs + 100)
    finally:
        if canceller is not None and canceller.poll() is None:  # the harness failed
            canceller.kill()
            canceller.wait()
        fleet.stop_all()
        app.close()
    violations += fleet.surprises
    if torn:
        say(f"{torn} ledger line(s) torn by SIGKILL (ignored)")
    return ChaosResult(
        config=c,
        seed=seed,
        ids=ids,
        stops=fleet.stops,
        restarts=fleet.restarts,
        dropped=shaken.dropped,
        statuses=statuses,
        executions=len(executions),
        repeats=len(executions) - len({(e.run, e.step) for e in executions}),
        violations=violations,
        elapsed=time.monotonic() - started,
        chaos_elapsed=shaken.elapsed,
        cancels=list(cancels.values()),
        stopped=_stopped(executions, marks, cancels),
    )


def _stopped(
    executions: list[Execution], marks: dict[str, Mark], cancels: dict[str, Cancel]
) -> int:
    """How many executions of steps of cancelled runs were stopped."""
    gone = {c.run for c in cancels.values() if c.outcome == "cancelled"}
    stopped = {m.id for m in marks.values() if m.mark == "stopped"}
    return sum(1 for e in executions if e.run in gone and e.id in stopped)


def _check_config(c: ChaosConfig) -> None:
    if c.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {c.mode!r}")
    if c.mode == "drops" and c.backend != "postgresql":
        raise ValueError("mode 'drops' drops PostgreSQL connections: it needs a PostgreSQL URL")
    if c.mode == "cancel" and c.long[0] < c.cancel_reach + HOLD_AFTER + 0.2:
        raise ValueError(
            f"long steps of {c.long[0]:g}s end before a cancel surely reaches them "
            f"({c.cancel_reach:g}s after it, with an owner lease of {c.lease:g}s): a step the "
            f"cancel failed to stop would pass; make them last at least "
            f"{c.cancel_reach + HOLD_AFTER + 0.2:g}s or lower the owner lease"
        )


def _draw_runs(
    rng: random.Random, c: ChaosConfig
) -> tuple[dict[str, dict[str, Any]], list[Planned]]:
    """The input of every run, and in cancel mode the cancels to make (written down
    for the canceller process)."""
    specs = {
        f"c{i:05d}": {
            "fan": rng.choice((2, 3, 4)) if rng.random() < c.fan_share else 0,
            "pause": round(rng.uniform(*c.pause), 4),
        }
        for i in range(c.runs)
    }
    if c.mode != "cancel":
        return specs, []
    plan = plan_cancels(rng, specs, c.cancel_share, c.long_share, c.long)
    write_plan(c.folder, plan)
    return specs, plan


@dataclass(frozen=True)
class _Shaken:
    elapsed: float
    dropped: int  # PostgreSQL connections terminated


def _shake(
    c: ChaosConfig,
    rng: random.Random,
    app: tether.App,
    fleet: Fleet,
    canceller: subprocess.Popen[bytes] | None,
) -> _Shaken:
    """Stop and restart workers, drop connections, until every run has ended and the
    canceller (if any) has made all its cancels."""
    say = c.progress or (lambda _line: None)
    graceful = c.mode == "graceful"
    sig = {"kill": signal.SIGKILL, "cancel": signal.SIGKILL, "graceful": signal.SIGTERM}.get(c.mode)
    chaos_start = now = time.monotonic()
    next_stop = now + rng.uniform(0.2, 0.6)
    next_drop = now + rng.uniform(*c.terminate_every)
    next_look, next_report = now + 0.5, now + c.progress_every
    back_at: dict[int, float] = {}  # slot -> when to start it again
    dropped, done = 0, False
    while not done and now - chaos_start < c.chaos_for:
        for slot in fleet.reap(graceful):
            back_at[slot] = now + rng.uniform(*c.restart_after)
        for slot, at in list(back_at.items()):
            if now >= at:
                del back_at[slot]
                fleet.spawn(slot)
                fleet.restarts += 1
        if sig is not None and now >= next_stop:
            live = fleet.live()
            if live:
                fleet.send(rng.choice(live), sig)
            next_stop = now + rng.uniform(*c.stop_gap)
        if c.backend == "postgresql" and now >= next_drop:
            dropped += _drop(c, say)
            next_drop = now + rng.uniform(*c.terminate_every)
        if now >= next_look:
            next_look = now + 0.5
            ended = _report(c, app, fleet, dropped, now - chaos_start, now >= next_report)
            if ended is not None and now >= next_report:
                next_report = now + c.progress_every
            done = ended == c.runs and (canceller is None or canceller.poll() is not None)
        time.sleep(0.02)
        now = time.monotonic()
    elapsed = time.monotonic() - chaos_start
    say(
        f"chaos stopped after {elapsed:.1f}s ({'every run ended' if done else 'time limit reached'})"
    )
    if canceller is not None:
        _end_canceller(fleet, canceller)
    return _Shaken(elapsed, dropped)


def _drop(c: ChaosConfig, say: Callable[[str], None]) -> int:
    try:
        return terminate_backends(c.url)
    except Exception as exc:  # the harness's own connection: try again later
        say(f"pg_terminate_backend failed: {exc!r}")
        return 0


def _report(
    c: ChaosConfig, app: tether.App, fleet: Fleet, dropped: int, at: float, due: bool
) -> int | None:
    """How many runs have ended (None if the database cannot say now); said if `due`
    or all have."""
    say = c.progress or (lambda _line: None)
    try:
        counts = _statuses(app, c.runs + 100)
    except tether.StoreError as exc:
        say(f"progress read failed (dropped connection?): {exc}")
        return None
    ended = min(c.runs, sum(n for s, n in counts.items() if RunStatus(s).terminal))
    if due or ended == c.runs:
        say(
            f"[{at:6.1f}s] ended {ended}/{c.runs} {counts} "
            f"kills={sum(1 for s in fleet.stops if s.signal == signal.SIGKILL)} "
            f"sigterms={sum(1 for s in fleet.stops if s.signal == signal.SIGTERM)} "
            f"restarts={fleet.restarts} dropped={dropped}"
        )
    return ended


def _end_canceller(fleet: Fleet, canceller: subprocess.Popen[bytes]) -> None:
    """The canceller has exited by itself, with 0; else that is a violation."""
    if canceller.poll() is None:
        canceller.kill()
        canceller.wait()
        fleet.surprises.append("the canceller had not made all its cancels: killed")
    elif canceller.returncode != 0:
        fleet.surprises.append(
            f"the canceller exited with code {canceller.returncode}: {fleet.tail(canceller.pid)}"
        )


def _settle(c: ChaosConfig, app: tether.App, fleet: Fleet, ids: list[str]) -> None:
    """No more signals: wait for the stopped workers to exit, fill every slot, and let
    the workers idle until runs and jobs settle."""
    say = c.progress or (lambda _line: None)
    for p in fleet.procs:
        if p is not None and p.pid in fleet.signalled:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                fleet.surprises.append(f"worker pid {p.pid} ignored its signal for 60s")
                p.kill()
                p.wait()
    fleet.reap(c.mode == "graceful")
    for slot, p in enumerate(fleet.procs):
        if p is None:
            fleet.spawn(slot)
            fleet.restarts += 1
    say("workers idle")
    deadline = time.monotonic() + c.settle_for
    while time.monotonic() < deadline and not _settled(app, ids):
        time.sleep(0.25)
    if not _settled(app, ids):
        say("runs or jobs did not settle: asking the workers for their task stacks (SIGUSR1)")
        fleet.dump_tasks()
