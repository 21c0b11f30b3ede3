"""Waitpoint verbs under real contention: processes resolving and registering waits at once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

import tether
from tether import App, FakeClock, RunStatus, WaitStatus, Workflow
from tether.store import NewRun

# one process: `send` sends the event, `resume` drives the run `late` to its wait
ACTOR = textwrap.dedent(
    """
    import os, sys, time
    import tether

    url, what, go = sys.argv[1:4]
    app = tether.App(url)

    @app.workflow(name="hook")
    async def hook(wf: tether.Workflow) -> object:
        return await wf.wait_for_event("paid")

    app.list_runs(limit=1)  # connected and migrated before the race
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    if what == "send":
        print(sorted(app.send_event("paid", {"n": 1})), flush=True)
    else:
        print(app.resume("late").status.value, flush=True)
    app.close()
    """
)


@contextmanager
def _row_locked(url: str, workflow_id: str) -> Iterator[object]:
    """Hold the run's row (PostgreSQL) or the write lock (SQLite) until the block ends:
    a verb that gets to that run waits there, half done, its transaction open."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(urlsplit(url).path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield None
        finally:
            conn.execute("COMMIT")
            conn.close()
        return
    import psycopg

    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    with psycopg.connect(urlunsplit((*parts[:3], "", ""))) as conn:
        conn.execute(f'SELECT 1 FROM "{schema}".runs WHERE id = %s FOR UPDATE', (workflow_id,))
        yield conn
        conn.commit()


def _lock_waiters(url: str) -> int:
    """How many sessions wait for a lock (PostgreSQL); SQLite writers cannot be seen."""
    if url.startswith("sqlite"):
        return 0
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit((*parts[:3], "", "")), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def _start(script: Path, url: str, what: str) -> subprocess.Popen[str]:
    """The actor `what`, connected; it acts once the file `<script>.<what>` exists."""
    proc = subprocess.Popen(
        [sys.executable, str(script), url, what, f"{script}.{what}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _blocked(url: str, waiters: int, proc: subprocess.Popen[str]) -> None:
    """Until `waiters` sessions wait for a lock or `proc` ended (a few seconds at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if url.startswith("sqlite") or _lock_waiters(url) >= waiters:
            return
        time.sleep(0.01)


async def test_an_event_sent_while_a_wait_for_it_registers_reaches_it(
    database_url: str, tmp_path: Path
) -> None:
    """One process sends an event while another drives a run (created before it) to a
    wait for it. The send is held half done (it woke an earlier waiter and waits for
    that run's row) while the wait registers. Before, on PostgreSQL each missed the
    other's uncommitted row: the event sat in the inbox, the run waited for ever."""
    app = App(database_url, clock=FakeClock())

    @app.workflow(name="hook")
    async def hook(wf: Workflow) -> object:
        return await wf.wait_for_event("paid")

    await app.arun(hook, workflow_id="first")  # waits: the event wakes it, and the send
    # stops there while its row is held; `late` exists but has not reached its wait
    await app.store.create_run(NewRun("late", "hook", state="null"), app.clock.now())
    await app.aclose()
    script = tmp_path / "actor.py"
    script.write_text(ACTOR)
    procs: list[subprocess.Popen[str]] = []
    try:
        procs = [_start(script, database_url, what) for what in ("send", "resume")]
        with _row_locked(database_url, "first"):
            Path(f"{script}.send").touch()
            _blocked(database_url, 1, procs[0])
            Path(f"{script}.resume").touch()
            _blocked(database_url, 2, procs[1])
        outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    check = App(database_url, clock=FakeClock())
    try:
        [wait] = await check.alist_waits("late")
        assert wait.status is WaitStatus.RESOLVED and wait.payload is not None
        [first] = await check.alist_waits("first")
        assert first.status is WaitStatus.RESOLVED
    finally:
        await check.aclose()


async def test_a_wait_for_a_token_another_run_made_is_refused_saying_whose_it_is(
    database_url: str,
) -> None:
    """Before, the insert of the second waitpoint under the token's id failed with the
    database's unique-key violation (a `StoreError` naming `waitpoints.id`)."""
    app = App(database_url, clock=FakeClock())
    made: list[str] = []

    @app.workflow(name="maker")
    async def maker(wf: Workflow) -> object:
        token = await wf.create_token()
        made.append(token)
        return await wf.wait_for_token(token)

    @app.workflow(name="other")
    async def other(wf: Workflow, token: str) -> object:
        await wf.step("before", lambda: "kept")
        return await wf.wait_for_token(token)

    try:
        await app.arun(maker, workflow_id="maker")
        with pytest.raises(tether.InvalidArgumentError, match="was not made by run 'other'"):
            await app.arun(other, made[0], workflow_id="other")
        assert (await app.aget_record("other")).steps["before"].status.value == "completed"
        assert await app.acomplete_token(made[0], "yes") == "maker"
        assert (await app.aresult("maker", timeout=10)).value == "yes"
    finally:
        await app.aclose()


async def test_a_rerun_before_an_event_wait_waits_for_a_new_event(app: App) -> None:
    """The event a forgotten wait took stays taken by its run: the rerun asks again.
    Before, `rerun_from` deleted the wait that took it, so the replay's wait found it
    in the inbox as if untaken and the run ended at once on the old answer."""
    seen: list[str] = []

    @app.workflow(name="hook")
    async def hook(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        got = await wf.wait_for_event("paid", result_type=str)
        seen.append(got)
        return await wf.step("after", lambda: f"done {got}")

    await app.arun(hook, workflow_id="h")
    await app.asend_event("paid", "first")
    assert (await app.aresult("h", timeout=10)).value == "done first"
    for step, answer in (("before", "second"), ("event:paid#1", "third")):
        parked = await app.arerun_from("h", step)
        assert parked.status is RunStatus.WAITING, step
        assert [w.status for w in await app.alist_waits("h")] == [WaitStatus.PENDING]
        await app.asend_event("paid", answer)
        assert (await app.aresult("h", timeout=10)).value == f"done {answer}"
    assert seen == ["first", "second", "third"]


async def test_a_rerun_wait_takes_an_event_no_wait_took_and_skips_the_taken_one(
    app: App,
) -> None:
    """Events sent since the run began that no wait of it took stay its to take (the
    README: not only events sent after the wait), the one its forgotten wait took
    does not; a rerun from a step after the wait keeps its answer."""

    @app.workflow(name="hook")
    async def hook(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        got = await wf.wait_for_event("paid", result_type=str)
        return await wf.step("after", lambda: f"done {got}")

    await app.arun(hook, workflow_id="h")
    await app.asend_event("paid", "first")
    await app.asend_event("paid", "unclaimed")
    assert (await app.aresult("h", timeout=10)).value == "done first"
    assert (await app.arerun_from("h", "after")).value == "done first"
    assert (await app.arerun_from("h", "before")).value == "done unclaimed"
    assert (await app.arerun_from("h", "before")).status is RunStatus.WAITING


async def test_a_rerun_before_a_signal_wait_does_not_take_its_kept_signal_again(
    app: App,
) -> None:
    """A signal kept in the inbox and consumed by the wait a rerun forgot is spent:
    the replay waits for a new one (as for one sent to the waiting run)."""

    @app.workflow(name="gate")
    async def gate(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        return str(await wf.wait_for_signal("go"))

    await app.store.create_run(NewRun("g", "gate", state="null"), app.clock.now())
    await app.asignal("g", "go", "early")  # kept: the run has not reached its wait
    assert (await app.aresume("g")).value == "early"
    assert (await app.arerun_from("g", "before")).status is RunStatus.WAITING
    await app.asignal("g", "go", "again")
    assert (await app.aresult("g", timeout=10)).value == "again"
