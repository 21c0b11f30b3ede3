"""The chaos workflow, its side-effect ledger, and the worker process entry point.

Every step appends one line to a ledger file of its process *before* it
returns, flushed and fsynced, so a SIGKILL that lands after the effect still
leaves the line. The ledger lives outside tether's database: it is the
witness of how often each step really ran.

A step returns the uuid of its own execution, so the recorded result of a
step names the one execution whose completion tether kept. In the cancel mode
(a spec with ``"marks"``) an async step also writes how its function ended, a
`Mark` naming the execution: ``done`` as it returns, ``stopped`` when it is
cancelled; and a run may have a long async step (``"long"`` seconds) for a
cancel to land in.

Run as a worker: ``python -m tests.chaos._flows`` with the configuration in
the environment (see `worker_main`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tether
from tether.worker import Worker

WORKFLOW = "chaos"

_ledger_fd: int | None = None
_ledger_lock = threading.Lock()


def ledger_path(folder: Path, pid: int) -> Path:
    return folder / f"ledger-{pid}.jsonl"


def _ledger(folder: str) -> int:
    global _ledger_fd
    with _ledger_lock:
        if _ledger_fd is None:
            path = ledger_path(Path(folder), os.getpid())
            _ledger_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return _ledger_fd


def _write(folder: str, fields: dict[str, Any]) -> None:
    line = json.dumps({"t": time.time(), **fields, "pid": os.getpid()})
    fd = _ledger(folder)
    os.write(fd, (line + "\n").encode())
    os.fsync(fd)


def record_effect(folder: str, run: str, step: str) -> str:
    """The side effect: one fsynced ledger line; returns this execution's uuid."""
    call = uuid.uuid4().hex
    _write(folder, {"run": run, "step": step, "id": call})
    return call


def record_mark(folder: str, run: str, step: str, call: str, mark: str) -> None:
    """How execution `call` of an async step ended: "done" (it returns) or "stopped"."""
    _write(folder, {"run": run, "step": step, "id": call, "mark": mark})


@dataclass(frozen=True)
class Execution:
    """One ledger line: a step function that ran (at least up to its effect)."""

    started: float  # wall clock, seconds since the epoch
    run: str
    step: str
    pid: int
    id: str


@dataclass(frozen=True)
class Mark:
    """One ledger line saying how an execution of an async step ended."""

    at: float  # wall clock
    id: str  # the execution's uuid
    mark: str  # "done" (the function returns) or "stopped" (it was cancelled)
    pid: int


def read_ledger(folder: Path) -> tuple[list[Execution], dict[str, Mark], int]:
    """Every execution in the ledger files of `folder`, the mark of each execution
    that wrote one (by its uuid), and the count of torn lines."""
    executions: list[Execution] = []
    marks: dict[str, Mark] = {}
    torn = 0
    for path in sorted(folder.glob("ledger-*.jsonl")):
        for line in path.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                torn += 1  # a write cut short by SIGKILL: the effect did not complete
                continue
            d = json.loads(line)
            if "mark" in d:
                marks[d["id"]] = Mark(d["t"], d["id"], d["mark"], d["pid"])
            else:
                executions.append(Execution(d["t"], d["run"], d["step"], d["pid"], d["id"]))
    return executions, marks, torn


def step_names(spec: dict[str, Any]) -> list[str]:
    """The steps a run with this input records, in order."""
    middle = [f"s3:{i}" for i in range(spec["fan"])] if spec["fan"] else ["s3"]
    long = ["long"] if spec.get("long") else []
    return ["s1", "s2", *long, *middle, "s4", "s5"]


def is_async(step: str) -> bool:
    """Whether the chaos workflow's step of this name runs an async function (a cancel
    can stop it; a sync step's thread runs on)."""
    if step.startswith("s3:"):
        return int(step[3:]) % 2 == 0
    return step in ("s2", "long", "s4")


def _sync_step(ledger: str, run: str, name: str, pause: float) -> Any:
    def fn() -> str:
        call = record_effect(ledger, run, name)
        time.sleep(pause)  # the window in which a kill leaves the effect unrecorded
        return call

    return fn


def _async_step(ledger: str, run: str, name: str, pause: float, marks: bool) -> Any:
    async def fn() -> str:
        call = record_effect(ledger, run, name)
        try:
            await asyncio.sleep(pause)
        except asyncio.CancelledError:
            if marks:
                record_mark(ledger, run, name, call, "stopped")
            raise
        if marks:
            record_mark(ledger, run, name, call, "done")
        return call

    return fn


def build_app(
    url: str, *, ledger: str = "", job_visibility: float = 30.0, owner_lease: float = 30.0
) -> tether.App:
    """An App with the chaos workflow registered; steps write to `ledger` (a folder)."""
    app = tether.App(url, job_visibility=job_visibility, owner_lease=owner_lease)

    @app.workflow(name=WORKFLOW, version="1")
    async def chaos(wf: tether.Workflow, spec: dict[str, Any]) -> list[str]:
        """Five steps (sync and async); the third fans out when `spec["fan"]` > 0; a
        long async step after the second when `spec["long"]` > 0 (seconds)."""
        run, marks = wf.workflow_id, bool(spec.get("marks"))

        def fn(name: str, pause: float = spec["pause"]) -> Any:
            if is_async(name):
                return _async_step(ledger, run, name, pause, marks)
            return _sync_step(ledger, run, name, pause)

        done = [await wf.step("s1", fn("s1"))]
        done.append(await wf.step("s2", fn("s2")))
        if spec.get("long"):
            # a long call is cut by many kills; a cancel's stop must not be retried
            again = tether.RetryPolicy(attempts=3, backoff=0.05, interrupted_reruns=50)
            done.append(await wf.step("long", fn("long", spec["long"]), retry=again))
        if spec["fan"]:

            async def item(i: int) -> str:
                result: str = await wf.step(f"s3:{i}", fn(f"s3:{i}"))
                return result

            summary = await wf.for_each(list(range(spec["fan"])), item, max_parallel=2)
            done.extend(str(r.value) for r in summary.results)
        else:
            done.append(await wf.step("s3", fn("s3")))
        done.append(await wf.step("s4", fn("s4")))
        done.append(await wf.step("s5", fn("s5")))
        return done

    return app


class _Fields(logging.Formatter):
    """The message followed by the structured fields tether logs (job=, run=, ...)."""

    _plain = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in self._plain}
        return super().format(record) + "".join(f" {k}={v}" for k, v in extra.items())


def _dump_tasks(signum: int, frame: object) -> None:
    """SIGUSR1: write the stack of every asyncio task to stderr (the harness asks for it
    when runs or jobs fail to settle, to show where a worker hangs)."""
    loop = asyncio._get_running_loop()
    tasks = asyncio.all_tasks(loop) if loop is not None else set()
    print(f"--- {len(tasks)} asyncio tasks of pid {os.getpid()} ---", file=sys.stderr)
    for task in tasks:
        print(f"{task!r}", file=sys.stderr)
        awaited: Any = task.get_coro()
        while awaited is not None:  # down the chain of awaits, where the task waits
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                print(f"    waiting on {awaited!r}", file=sys.stderr)
                break
            code = frame.f_code
            print(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}", file=sys.stderr)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    sys.stderr.flush()


def worker_main() -> None:
    """A worker process configured by CHAOS_* environment variables; logs to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Fields("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    signal.signal(signal.SIGUSR1, _dump_tasks)
    env = os.environ
    app = build_app(
        env["CHAOS_DB_URL"],
        ledger=env["CHAOS_LEDGER"],
        job_visibility=float(env["CHAOS_VISIBILITY"]),
        owner_lease=float(env["CHAOS_OWNER_LEASE"]),
    )
    worker = Worker(
        app,
        queues=[env["CHAOS_QUEUE"]],
        concurrency=int(env["CHAOS_CONCURRENCY"]),
        poll_interval=0.05,
        maintenance_interval=float(env["CHAOS_MAINTENANCE"]),
        grace=float(env["CHAOS_GRACE"]),
        stuck_after=float(env["CHAOS_STUCK_AFTER"]),
    )
    worker.serve()


if __name__ == "__main__":
    worker_main()
