"""SQLite holds a step's completion for the run's next write (one durable commit per
step instead of a completion and a start marker), and never lets that weaken what a
completion promises: it is on disk before the next step runs, before any other task
runs, when the store closes, and it neither fails nor is lost with a transaction it
rode on."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.store import Fence, NewEvent, NewRun, StepStatus, Store, open_store

from .._probes import traced_store

AT = datetime(2026, 12, 1, tzinfo=UTC)


def _status(db: Path, run: str, key: str) -> str | None:
    """The step's status as another connection (another process) sees it."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT status FROM steps WHERE run_id = ? AND step_key = ?", (run, key)
        ).fetchone()
    return None if row is None else str(row[0])


async def test_a_finished_step_is_on_disk_before_the_next_step_runs(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with tether.App(f"sqlite:///{db}") as app:

        @app.workflow
        async def two(wf: tether.Workflow) -> str | None:
            await wf.step("a", lambda: 1)
            # b's side effect may only start once a's completion is durable
            return await wf.step("b", lambda: _status(db, wf.workflow_id, "a"))

        assert (await app.arun(two, workflow_id="r")).value == "completed"


async def test_a_completion_is_written_as_soon_as_the_loop_turns(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with tether.App(f"sqlite:///{db}") as app:

        @app.workflow
        async def yields(wf: tether.Workflow) -> list[str | None]:
            await wf.step("a", lambda: 1)
            before = _status(db, wf.workflow_id, "a")  # no turn of the loop yet: held
            await asyncio.sleep(0)  # another task may run now: it is written first
            await asyncio.sleep(0)
            return [before, _status(db, wf.workflow_id, "a")]

        assert (await app.arun(yields, workflow_id="r")).value == ["running", "completed"]


async def test_a_sequential_step_is_one_commit_under_one_fence_check(tmp_path: Path) -> None:
    store, sent = traced_store(f"sqlite:///{tmp_path}/t.db")
    async with tether.App(store=store) as app:
        steps = _steps(app)
        await app.arun(steps, 1)
        sent.clear()
        assert (await app.arun(steps, 40)).value == 40
    sent[:] = _without_keep_alive(sent)
    commits = [s for s in sent if s == "COMMIT"]
    fence_checks = [s for s in sent if s.startswith("UPDATE runs SET event_seq")]
    # a write's answer (the bump's event number, the marker's attempts) is read by a
    # statement of its own after it: RETURNING costs SQLite more (`_THEN` in _sqlite)
    answers = ("SELECT event_seq FROM runs", "SELECT attempts, result, error FROM steps")
    reads = [s for s in sent if s.startswith("SELECT") and not s.startswith(answers)]
    # 40 steps (each start marker carrying the previous completion), plus the run's
    # creation, claim and end: not 80 and more
    assert len(commits) <= 40 + 6, len(commits)
    # one bump checks the fence and numbers both events of a step, and nothing is
    # read to decide whether to hold a completion
    assert len(fence_checks) <= 40 + 4, len(fence_checks)
    assert len(reads) <= 12, reads  # the run's own reads (its history), none a step
    # BEGIN, bump and its answer, two events, completion, start and its answer,
    # COMMIT: 9 a step (was 12 with a fence read and a bump of its own for the
    # completion)
    assert len(sent) <= 9 * 40 + 40, len(sent)  # 396 here, with the run's own


_KEEP_ALIVE = ("UPDATE runs SET owner_expires_at", "UPDATE locks SET heartbeat_at")


def _without_keep_alive(sent: list[str]) -> list[str]:
    """`sent` without the transactions of the process's keep-alive (its liveness lock
    and run claims renewed on a real-time timer: a slow machine fits one into the run),
    nor the switches of ``PRAGMA synchronous`` made for them."""
    out: list[str] = []
    block: list[str] = []
    switched_back = False  # the next switch of synchronous undoes the keep-alive's
    for s in sent:
        if s.startswith("BEGIN") or block:
            block.append(s)
            if s not in ("COMMIT", "ROLLBACK"):
                continue
            if any(b.startswith(_KEEP_ALIVE) for b in block):
                if out and out[-1].startswith("PRAGMA synchronous"):
                    out.pop()
                    switched_back = True
            else:
                out += block
            block = []
        elif switched_back and s.startswith("PRAGMA synchronous"):
            switched_back = False
        else:
            out.append(s)
    return out + block


def _steps(app: tether.App) -> Any:
    """A workflow of `n` trivial steps, registered on `app`."""

    @app.workflow
    async def steps(wf: tether.Workflow, n: int) -> int:
        for i in range(n):
            await wf.step(f"s{i}", lambda i=i: i)
        return n

    return steps


async def _run(store: Store, wid: str) -> Fence:
    await store.create_run(NewRun(wid, "w"), AT)
    row = await store.claim_run(wid, "me", AT, NewEvent("workflow.running"))
    return Fence(wid, row.generation)


async def test_a_completion_its_run_would_refuse_is_refused_as_the_step_ends(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    try:
        old = await _run(store, "a")
        await store.start_step(old, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        await store.claim_run("a", "thief", AT, NewEvent("workflow.running"), force=True)
        with pytest.raises(tether.StaleOwnerError):  # not held: refused now, as ever
            await store.complete_step(old, "x", result="1", at=AT, event=NewEvent("c"))
    finally:
        await store.close()


@pytest.mark.parametrize("carrier", ["another run's write", "the run's next start"])
async def test_a_completion_refused_after_it_was_held_is_dropped_where_it_rides(
    tmp_path: Path, carrier: str
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    store, thief = open_store(url), open_store(url)  # two connections: two processes
    try:
        old = await _run(store, "a")
        other = await _run(store, "b")
        await thief.list_runs()  # connected: its claim below runs without a turn of the loop
        await store.start_step(old, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        await store.complete_step(old, "x", result="1", at=AT, event=NewEvent("c"))  # held
        # another process takes the run over before this one writes again
        await thief.claim_run("a", "thief", AT, NewEvent("workflow.running"), force=True)
        if carrier == "another run's write":
            await store.append_events(other, [NewEvent("b.did")], AT)  # carries it: not failed
            assert [e.type for e in await store.list_events("b")][-1] == "b.did"
        else:  # the same fence refuses both: the next step does not start
            with pytest.raises(tether.StaleOwnerError):
                await store.start_step(old, "y", idempotency_key=None, at=AT, event=NewEvent("s"))
        steps = {s.key: s.status for s in await store.load_steps("a")}
        assert steps == {"x": StepStatus.RUNNING}  # the refused completion was dropped
        assert not store.deferred  # and is not held to fail a later write
    finally:
        await store.close()
        await thief.close()


async def test_a_held_completion_and_its_attached_rows_keep_their_order_and_times(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    done_at, next_at = AT + timedelta(seconds=1), AT + timedelta(seconds=2)
    try:
        f = await _run(store, "a")
        await store.start_step(f, "x", idempotency_key=None, at=AT, event=NewEvent("s", "x"))
        await store.complete_step(
            f, "x", result="1", at=done_at, event=NewEvent("c", "x"), rows=[NewEvent("att", "x")]
        )
        row = await store.start_step(
            f, "y", idempotency_key=None, at=next_at, event=NewEvent("s", "y")
        )
        assert row.attempts == 1 and row.status is StepStatus.RUNNING
        events = [(e.seq, e.type, e.message, e.at) for e in await store.list_events("a")]
        assert events[-4:] == [
            (2, "s", "x", AT),
            (3, "c", "x", done_at),
            (4, "att", "x", done_at),
            (5, "s", "y", next_at),
        ]
        steps = {s.key: (s.status, s.result) for s in await store.load_steps("a")}
        assert steps == {"x": (StepStatus.COMPLETED, "1"), "y": (StepStatus.RUNNING, None)}
    finally:
        await store.close()


async def test_held_completions_outlive_a_transaction_that_rolled_back(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    try:
        a = await _run(store, "a")
        await store.start_step(a, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
        await store.complete_step(a, "x", result="1", at=AT, event=NewEvent("c"))
        # a write that fails (a run that does not exist) rolls back what it carried
        with pytest.raises(tether.RunNotFoundError):
            await store.append_events(Fence("nope", 1), [NewEvent("e")], AT)
        [step] = await store.load_steps("a")  # the next transaction writes it
        assert step.status is StepStatus.COMPLETED and step.result == "1"
    finally:
        await store.close()


async def test_closing_the_store_writes_what_it_holds(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = open_store(f"sqlite:///{db}")
    a = await _run(store, "a")
    await store.start_step(a, "x", idempotency_key=None, at=AT, event=NewEvent("s"))
    await store.complete_step(a, "x", result="1", at=AT, event=NewEvent("c"))
    await store.close()  # in the same turn of the loop: nothing else wrote it
    assert _status(db, "a", "x") == "completed"
