"""The invariants the chaos harness checks once the workers idle (`check_invariants`),
against tether's records, read through the public API, and the side-effect ledger
the steps wrote outside the database."""

from __future__ import annotations

import itertools
import re
import signal
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import tether
from tether import RunStatus

from ._canceller import Cancel
from ._cancels import Cancels, check_cancelled_step
from ._flows import Execution, step_names


@dataclass(frozen=True)
class Stop:
    """A signal the harness sent to a worker."""

    pid: int
    signal: int
    at: float  # wall clock just before it was sent
    # SIGKILL: wall clock once the process was seen dead. The kill lands somewhere in
    # [at, dead]: the process may still write a ledger line in between
    dead: float | None = None


def open_jobs(app: tether.App) -> list[Any]:
    """The jobs still queued or claimed."""
    jobs = []
    for status in ("queued", "claimed"):
        jobs += app._loop.run(app.store.list_jobs(status=status, limit=100_000))
    return jobs


def check_invariants(
    app: tether.App,
    specs: dict[str, dict[str, Any]],
    executions: list[Execution],
    stops: list[Stop],
    *,
    graceful: bool,
    cancels: Cancels | None = None,
) -> list[str]:
    """Every broken invariant, one line each (empty: all held).

    1. no run lost: every submitted run exists and completed (cancel mode: a
       run cancelled ended cancelled; one that had ended first, with the status
       the cancel was told);
    2. no step runs again once its completion is recorded; a step runs more
       than once only when each earlier execution's process was SIGKILLed
       while it was in flight, before the next execution began;
    3. nothing stuck once the workers idle: no run pending/running, no job
       queued/claimed (so no worker stays on a cancelled run);
    4. graceful mode: every step ran exactly once;
    5, 6. cancel mode: what a cancel promises (`_cancels.check_cancelled_step`).
    """
    rows = {r.workflow_id: r for r in app.list_runs(limit=len(specs) + 100)}
    out = _check_runs(app, specs, rows, cancels)
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for e in executions:
        by_step[(e.run, e.step)].append(e)
    killed = {s.pid: s.at for s in stops if s.signal == signal.SIGKILL}
    for wid, spec in specs.items():
        if wid not in rows:
            continue
        record = app.get_record(wid)
        recorded = {_plain_name(key): s for key, s in record.steps.items()}
        cancel = None if cancels is None else cancels.cancelled(wid)
        found = len(out)
        for name in step_names(spec):
            runs = sorted(by_step.pop((wid, name), []), key=lambda e: e.started)
            step = recorded.get(name)
            out += _check_step(wid, name, step, runs, stops, graceful=graceful, cancelled=cancel)
            if cancels is not None and cancel is not None:
                out += check_cancelled_step(
                    wid, name, step, runs, cancels.marks, killed, cancel, cancels.reach
                )
        if len(out) > found:
            made = "" if cancels is None or wid not in cancels.made else f" | {cancels.made[wid]}"
            out.append(f"[history] {wid}: {_history(record)}{made}")
    for (wid, name), runs in by_step.items():
        out.append(f"[2 unknown step] {len(runs)} execution(s) of {wid}/{name}, not a step it has")
    return out


def _check_runs(
    app: tether.App,
    specs: dict[str, dict[str, Any]],
    rows: dict[str, Any],
    cancels: Cancels | None,
) -> list[str]:
    """Invariants 1 and 3: each run's end, and nothing left running or queued."""
    out: list[str] = []
    made = {} if cancels is None else cancels.made
    for p in [] if cancels is None else cancels.plan:
        if p.run not in made:
            out.append(f"[1 cancel not made] the canceller did not cancel {p.run} ({p})")
    for wid in specs:
        row, cancel = rows.get(wid), made.get(wid)
        want = RunStatus.COMPLETED if cancel is None else RunStatus(cancel.outcome)
        if row is None:
            out.append(f"[1 lost] run {wid} was submitted but does not exist")
        elif row.status is not want:
            said = "" if cancel is None else f" ({cancel})"
            out.append(f"[1 not {want.value}] run {wid} is {row.status.value}: {row.error}{said}")
    for row in rows.values():
        if row.status in (RunStatus.RUNNING, RunStatus.PENDING):
            out.append(f"[3 stuck run] run {row.workflow_id} is still {row.status.value}")
    for job in open_jobs(app):
        out.append(
            f"[3 stuck job] job {job.id} of run {job.workflow_id} is still {job.status.value} "
            f"(worker {job.worker}, attempt {job.attempt})"
        )
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
    cancelled: Cancel | None = None,
) -> list[str]:
    """Invariants 1, 2 and 4 for one step; a step of a run `cancelled` need not have
    completed (nor run at all)."""
    where = f"{wid}/{name}"
    completed = step is not None and step.completed_at is not None
    completed = completed and step.status.value == "completed"
    if not completed and cancelled is None:
        state = "missing" if step is None else step.status.value
        return [f"[1 step not completed] {where} is {state}; executions: {_describe(runs, stops)}"]
    out: list[str] = []
    winners = [i for i, e in enumerate(runs) if completed and e.id == step.result]
    if completed:
        done_at = step.completed_at.timestamp()
        if not winners:
            out.append(
                f"[2 unwitnessed result] {where} recorded result {step.result!r} which no "
                f"ledger execution produced; executions: {_describe(runs, stops)}"
            )
        for e in runs:
            if e.started > done_at:
                out.append(
                    f"[2 ran after completion] {where} completed at {done_at:.6f} but pid "
                    f"{e.pid} started it again at {e.started:.6f}; executions: "
                    f"{_describe(runs, stops)}"
                )
    if len({e.pid for e in runs}) < len(runs):
        out.append(f"[2 same process twice] {where}: {_describe(runs, stops)}")
    if graceful:
        if len(runs) != 1:
            out.append(
                f"[4 graceful repeat] {where} ran {len(runs)} times: {_describe(runs, stops)}"
            )
        return out
    if winners and winners[0] != len(runs) - 1:
        out.append(
            f"[2 two owners] {where}: an execution began after the one whose result was "
            f"recorded: {_describe(runs, stops)}"
        )
    return out + _check_repeats(where, runs, stops)


def _check_repeats(where: str, runs: list[Execution], stops: list[Stop]) -> list[str]:
    """Each execution but the last ended by a SIGKILL of its process, before the next."""
    killed = {s.pid: s for s in stops if s.signal == signal.SIGKILL}
    out: list[str] = []
    for e, after in itertools.pairwise(runs):
        k = killed.get(e.pid)
        if k is None:
            out.append(
                f"[2 repeat without a crash] {where}: pid {e.pid} was never SIGKILLed, yet the "
                f"step ran again at {after.started:.6f} (pid {after.pid}): "
                f"{_describe(runs, stops)}"
            )
        elif not (e.started <= (k.dead or k.at) and k.at <= after.started):
            out.append(
                f"[2 repeat not after the crash] {where}: pid {e.pid} was SIGKILLed at "
                f"{k.at:.6f}, not between its execution ({e.started:.6f}) and the next one "
                f"({after.started:.6f}, pid {after.pid}): {_describe(runs, stops)}"
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
