"""The canceller of the chaos cancel mode: a process of its own, as a user's or an
operator's `tether runs cancel` would be, so a cancel reaches the worker driving the
run only through the database (at that worker's next claim renewal).

It follows a plan the harness drew from its seeded random source: each planned run
is cancelled a delay after the canceller starts, or a delay after the ledger shows
that one of the run's steps started (the long step: to land while it awaits). A
planned run seen ended first is cancelled at once, to be told it ended. Each cancel
is written to ``cancels.jsonl`` in the ledger folder: when it was asked, when it was
answered, and the answer (``cancelled``, or the status the run had already ended
with). A call cut by a dropped connection or a busy database is asked again.

Run: ``python -m tests.chaos._canceller`` with CHAOS_DB_URL and CHAOS_LEDGER in the
environment, the plan in ``cancel-plan.json`` of the ledger folder (`write_plan`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tether
from tether.errors import RunFinishedError

CANCELS = "cancels.jsonl"
PLAN = "cancel-plan.json"
ASK_FOR = 60.0  # seconds of failed attempts after which a cancel is given up


@dataclass(frozen=True)
class Planned:
    """A cancel to make: of `run`, `after` seconds past the start of step `on` (as the
    ledger shows it), or past the canceller's start when `on` is empty."""

    run: str
    on: str
    after: float


@dataclass(frozen=True)
class Cancel:
    """A cancel made, as the canceller wrote it down."""

    run: str
    on: str
    asked: float  # wall clock of the first attempt
    acked: float  # wall clock of the answer
    outcome: str  # "cancelled", or the status the run had ended with (RunFinishedError)
    attempts: int


def write_plan(folder: Path, plan: list[Planned]) -> None:
    (folder / PLAN).write_text(json.dumps([asdict(p) for p in plan]))


def read_cancels(folder: Path) -> dict[str, Cancel]:
    """The cancels the canceller made, by run id (empty if it made none)."""
    path = folder / CANCELS
    if not path.exists():
        return {}
    found = (Cancel(**json.loads(line)) for line in path.read_text().splitlines())
    return {c.run: c for c in found}


class _LedgerTail:
    """The complete ledger lines written since the last look, from every process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.read: dict[Path, int] = {}  # file -> bytes consumed

    def new(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted(self.folder.glob("ledger-*.jsonl")):
            with path.open("rb") as f:
                f.seek(self.read.get(path, 0))
                chunk = f.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            self.read[path] = self.read.get(path, 0) + len(whole)
            lines += [json.loads(line) for line in whole.splitlines()]
        return lines


def _cancel(app: tether.App, planned: Planned) -> Cancel:
    asked = time.time()
    attempts = 0
    while True:
        attempts += 1
        try:
            app.cancel(planned.run, "chaos")
            outcome = "cancelled"
        except RunFinishedError as exc:  # ended first (or our cut attempt went through)
            outcome = exc.status
        except tether.StoreError:
            if time.time() - asked > ASK_FOR:
                raise
            time.sleep(0.05)
            continue
        return Cancel(planned.run, planned.on, asked, time.time(), outcome, attempts)


def _ended(app: tether.App, runs: set[str]) -> set[str]:
    """Those of `runs` that have ended (none if the database cannot say now)."""
    try:
        rows = app.list_runs(limit=100_000)
    except tether.StoreError:
        return set()
    return {r.workflow_id for r in rows if r.workflow_id in runs and r.status.terminal}


def canceller_main() -> None:
    """Cancel the planned runs at their moments; exit once every one was cancelled."""
    env = os.environ
    folder = Path(env["CHAOS_LEDGER"])
    plan = {p.run: p for p in (Planned(**d) for d in json.loads((folder / PLAN).read_text()))}
    start = time.time()
    due = {p.run: start + p.after for p in plan.values() if not p.on}
    tail, next_look = _LedgerTail(folder), 0.0
    with tether.App(env["CHAOS_DB_URL"]) as app, (folder / CANCELS).open("a") as out:
        while plan:
            now = time.time()
            for line in tail.new():
                p = plan.get(line["run"])
                if p is not None and p.on == line["step"] and p.run not in due:
                    due[p.run] = now + p.after
            if now >= next_look:  # a run that ended before its moment came
                next_look = now + 0.5
                due.update(dict.fromkeys(_ended(app, set(plan) - set(due)), now))
            for run in [r for r, at in due.items() if now >= at]:
                out.write(json.dumps(asdict(_cancel(app, plan.pop(run)))) + "\n")
                out.flush()
                del due[run]
            time.sleep(0.01)


if __name__ == "__main__":
    canceller_main()
