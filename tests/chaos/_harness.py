"""The chaos harness shared by tests/chaos and bench/chaos.py.

`run_chaos(config)` submits runs of the chaos workflow (`_flows.py`) to a
queue, starts worker processes, and until every run has ended keeps stopping
a random worker (SIGKILL in ``kill`` mode, SIGTERM in ``graceful`` mode) and
starting it again; on PostgreSQL it also terminates every backend of the
database now and then. Then it lets the workers idle and checks the
invariants (`check_invariants`) against tether's records, read through the
public API, and the side-effect ledger the steps wrote outside the database.

Every random choice comes from one `random.Random(seed)`; the seed is part
of the result and of the first progress line, so a failure can be replayed
(the schedule is replayed, the OS's interleaving is not).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
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

from ._flows import WORKFLOW, Execution, build_app, read_ledger, step_names

REPO = Path(__file__).resolve().parents[2]
MODES = ("kill", "graceful", "drops")


@dataclass
class ChaosConfig:
    """What to run and how hard to shake it. Times are seconds of real time."""

    url: str
    folder: Path  # ledger files and worker logs go here
    # "kill": workers SIGKILLed; "graceful": SIGTERM only; "drops": no worker is stopped,
    # only connections are dropped (PostgreSQL), so no step may run twice either
    mode: str = "kill"
    runs: int = 200
    workers: int = 3
    concurrency: int = 4  # jobs at once per worker
    seed: int | None = None
    stop_every: tuple[float, float] = (0.4, 1.5)  # between two stops of a worker
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

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith(("postgresql:", "postgres:")) else "sqlite"


@dataclass(frozen=True)
class Stop:
    """A signal the harness sent to a worker."""

    pid: int
    signal: int
    at: float  # wall clock just before it was sent
    # SIGKILL: wall clock once the process was seen dead. The kill lands somewhere in
    # [at, dead]: the process may still write a ledger line in between
    dead: float | None = None


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
        return (
            f"chaos {c.backend}/{c.mode} seed={self.seed}: runs={len(self.ids)} "
            f"completed={self.statuses.get('completed', 0)} steps-executed={self.executions} "
            f"repeated={self.repeats} "
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
            "CHAOS_QUEUE": "chaos",
            "CHAOS_CONCURRENCY": str(c.concurrency),
            "CHAOS_MAINTENANCE": str(c.maintenance),
            "CHAOS_GRACE": str(c.grace),
            "CHAOS_STUCK_AFTER": str(c.stuck_after),
        }

    def spawn(self, slot: int) -> None:
        self._started += 1
        log = self.config.folder / f"worker-{slot}-{self._started}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos._flows"],
                env=self.env(),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = log
        self.procs[slot] = proc

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
    return ended >= len(ids) and not _open_jobs(app)


def _open_jobs(app: tether.App) -> list[Any]:
    jobs = []
    for status in ("queued", "claimed"):
        jobs += app._loop.run(app.store.list_jobs(status=status, limit=100_000))
    return jobs


def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Submit, shake until every run has ended, let the workers idle, check."""
    c = config
    if c.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {c.mode!r}")
    if c.mode == "drops" and c.backend != "postgresql":
        raise ValueError("mode 'drops' drops PostgreSQL connections: it needs a PostgreSQL URL")
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
    dropped = 0
    graceful = c.mode == "graceful"
    sig = {"kill": signal.SIGKILL, "graceful": signal.SIGTERM}.get(c.mode)
    pg = c.backend == "postgresql"
    try:
        app.list_runs(limit=1)  # creates the schema before the workers race to
        specs = {
            f"c{i:05d}": {
                "fan": rng.choice((2, 3, 4)) if rng.random() < c.fan_share else 0,
                "pause": round(rng.uniform(*c.pause), 4),
            }
            for i in range(c.runs)
        }
        for slot in range(c.workers):
            fleet.spawn(slot)
        flow = app.get_workflow(WORKFLOW).fn
        ids = [
            app.submit(flow, spec, workflow_id=wid, queue="chaos") for wid, spec in specs.items()
        ]
        say(f"submitted {len(ids)} runs in {time.monotonic() - started:.1f}s")

        chaos_start = time.monotonic()
        now = chaos_start
        next_stop = now + rng.uniform(0.2, 0.6)
        next_drop = now + rng.uniform(*c.terminate_every)
        next_look, next_report = now + 0.5, now + c.progress_every
        back_at: dict[int, float] = {}  # slot -> when to start it again
        done = False
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
                next_stop = now + rng.uniform(*c.stop_every)
            if pg and now >= next_drop:
                try:
                    dropped += terminate_backends(c.url)
                except Exception as exc:  # the harness's own connection: try again later
                    say(f"pg_terminate_backend failed: {exc!r}")
                next_drop = now + rng.uniform(*c.terminate_every)
            if now >= next_look:
                next_look = now + 0.5
                try:
                    counts = _statuses(app, c.runs + 100)
                except tether.StoreError as exc:
                    say(f"progress read failed (dropped connection?): {exc}")
                    counts = {}
                ended = sum(n for s, n in counts.items() if RunStatus(s).terminal)
                done = bool(counts) and ended >= c.runs
                if counts and (done or now >= next_report):
                    next_report = now + c.progress_every
                    say(
                        f"[{now - chaos_start:6.1f}s] ended {ended}/{c.runs} {counts} "
                        f"kills={sum(1 for s in fleet.stops if s.signal == signal.SIGKILL)} "
                        f"sigterms={sum(1 for s in fleet.stops if s.signal == signal.SIGTERM)} "
                        f"restarts={fleet.restarts} dropped={dropped}"
                    )
            time.sleep(0.02)
            now = time.monotonic()
        chaos_elapsed = time.monotonic() - chaos_start
        say(
            f"chaos stopped after {chaos_elapsed:.1f}s "
            f"({'every run ended' if done else 'time limit reached'}); workers idle"
        )

        # no more signals: wait for the stopped workers to exit, fill every slot, and
        # let the workers idle until runs and jobs settle
        for p in fleet.procs:
            if p is not None and p.pid in fleet.signalled:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    fleet.surprises.append(f"worker pid {p.pid} ignored its signal for 60s")
                    p.kill()
                    p.wait()
        fleet.reap(graceful)
        for slot, p in enumerate(fleet.procs):
            if p is None:
                fleet.spawn(slot)
                fleet.restarts += 1
        deadline = time.monotonic() + c.settle_for
        while time.monotonic() < deadline and not _settled(app, ids):
            time.sleep(0.25)
        if not _settled(app, ids):
            say("runs or jobs did not settle: asking the workers for their task stacks (SIGUSR1)")
            fleet.dump_tasks()
        executions, torn = read_ledger(c.folder)
        violations = check_invariants(app, specs, executions, fleet.stops, graceful=graceful)
        statuses = _statuses(app, c.runs + 100)
    finally:
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
        dropped=dropped,
        statuses=statuses,
        executions=len(executions),
        repeats=len(executions) - len({(e.run, e.step) for e in executions}),
        violations=violations,
        elapsed=time.monotonic() - started,
        chaos_elapsed=chaos_elapsed,
    )


# -- invariants -----------------------------------------------------------------------------


def check_invariants(
    app: tether.App,
    specs: dict[str, dict[str, Any]],
    executions: list[Execution],
    stops: list[Stop],
    *,
    graceful: bool,
) -> list[str]:
    """Every broken invariant, one line each (empty: all held).

    1. no run lost: every submitted run exists and completed;
    2. no step runs again once its completion is recorded; a step runs more
       than once only when each earlier execution's process was SIGKILLed
       while it was in flight, before the next execution began;
    3. nothing stuck once the workers idle: no run pending/running, no job
       queued/claimed;
    4. graceful mode: every step ran exactly once.
    """
    out: list[str] = []
    rows = {r.workflow_id: r for r in app.list_runs(limit=len(specs) + 100)}
    for wid in specs:
        row = rows.get(wid)
        if row is None:
            out.append(f"[1 lost] run {wid} was submitted but does not exist")
        elif row.status is not RunStatus.COMPLETED:
            out.append(f"[1 not completed] run {wid} is {row.status.value}: {row.error}")
    for row in rows.values():
        if row.status in (RunStatus.RUNNING, RunStatus.PENDING):
            out.append(f"[3 stuck run] run {row.workflow_id} is still {row.status.value}")
    for job in _open_jobs(app):
        out.append(
            f"[3 stuck job] job {job.id} of run {job.workflow_id} is still {job.status.value} "
            f"(worker {job.worker}, attempt {job.attempt})"
        )

    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for e in executions:
        by_step[(e.run, e.step)].append(e)
    for wid, spec in specs.items():
        if wid not in rows:
            continue
        record = app.get_record(wid)
        recorded = {_plain_name(key): s for key, s in record.steps.items()}
        expected = step_names(spec)
        found = len(out)
        for name in expected:
            runs = sorted(by_step.pop((wid, name), []), key=lambda e: e.started)
            step = recorded.get(name)
            out += _check_step(wid, name, step, runs, stops, graceful=graceful)
        if len(out) > found:
            out.append(f"[history] {wid}: {_history(record)}")
    for (wid, name), runs in by_step.items():
        out.append(f"[2 unknown step] {len(runs)} execution(s) of {wid}/{name}, not a step it has")
    return out


def _history(record: Any) -> str:
    """A run's events and steps, to tell how a violation came about."""
    events = "; ".join(
        f"{e.seq} {e.at.timestamp():.6f} {e.type} {e.message or ''}".rstrip() for e in record.events
    )
    steps = "; ".join(
        f"{k}={s.status.value} attempts={s.attempts}" for k, s in record.steps.items()
    )
    return f"events: {events} | steps: {steps} | generation {record.generation}"


def _plain_name(key: str) -> str:
    """The name the workflow gave a step, from its record key.

    Newer tethers decorate the key with the step's identity (``name[i]`` for
    item i of a for_each, ``name#2`` for a repeated name); the chaos workflow
    gives every step a distinct name, so the plain name identifies it.
    """
    return re.sub(r"(\[\d+\]|#\d+)$", "", key)


def _check_step(
    wid: str,
    name: str,
    step: Any,
    runs: list[Execution],
    stops: list[Stop],
    *,
    graceful: bool,
) -> list[str]:
    where = f"{wid}/{name}"
    killed = {s.pid: s for s in stops if s.signal == signal.SIGKILL}

    def _show(runs: list[Execution]) -> str:
        return _describe(runs, stops)

    if step is None or step.completed_at is None or step.status.value != "completed":
        state = "missing" if step is None else step.status.value
        return [f"[1 step not completed] {where} is {state}; executions: {_show(runs)}"]
    done_at = step.completed_at.timestamp()
    out: list[str] = []
    winners = [i for i, e in enumerate(runs) if e.id == step.result]
    if not winners:
        out.append(
            f"[2 unwitnessed result] {where} recorded result {step.result!r} which no ledger "
            f"execution produced; executions: {_show(runs)}"
        )
    for e in runs:
        if e.started > done_at:
            out.append(
                f"[2 ran after completion] {where} completed at {done_at:.6f} but pid {e.pid} "
                f"started it again at {e.started:.6f}; executions: {_show(runs)}"
            )
    if len({e.pid for e in runs}) < len(runs):
        out.append(f"[2 same process twice] {where}: {_show(runs)}")
    if graceful:
        if len(runs) != 1:
            out.append(f"[4 graceful repeat] {where} ran {len(runs)} times: {_show(runs)}")
        return out
    if winners and winners[0] != len(runs) - 1:
        out.append(
            f"[2 two owners] {where}: an execution began after the one whose result was "
            f"recorded: {_show(runs)}"
        )
    for e, after in itertools.pairwise(runs):
        k = killed.get(e.pid)
        if k is None:
            out.append(
                f"[2 repeat without a crash] {where}: pid {e.pid} was never SIGKILLed, yet the "
                f"step ran again at {after.started:.6f} (pid {after.pid}): {_show(runs)}"
            )
        elif not (e.started <= (k.dead or k.at) and k.at <= after.started):
            out.append(
                f"[2 repeat not after the crash] {where}: pid {e.pid} was SIGKILLed at {k.at:.6f}, "
                f"not between its execution ({e.started:.6f}) and the next one "
                f"({after.started:.6f}, pid {after.pid}): {_show(runs)}"
            )
    return out


def _describe(runs: list[Execution], stops: list[Stop]) -> str:
    """Each execution: pid, start, uuid prefix, and the signal its process got, if any."""
    sent = {s.pid: s for s in stops}
    parts = []
    for e in runs:
        stop = sent.get(e.pid)
        fate = ""
        if stop is not None:
            fate = f", {signal.Signals(stop.signal).name} at {stop.at:.6f}"
            fate += "" if stop.dead is None else f", dead by {stop.dead:.6f}"
        parts.append(f"pid {e.pid} at {e.started:.6f} ({e.id[:8]}{fate})")
    return "; ".join(parts) or "none"
