"""The sync facade's loop thread and the async API awaited on another loop, in one
program: the App's work stays on one loop (`tether._loop.homed`)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tether import App, InvalidArgumentError, RunStatus, Workflow


def test_the_async_api_on_another_loop_leaves_a_background_run_its_store(
    database_url: str,
) -> None:
    """`app.start` drives a run in the background on the App's loop thread; the
    program then `asyncio.run`s the async API. Opened anew on the second loop, the
    store took the connections from under the background run: on PostgreSQL it
    stopped for good, and `aresult` waited out its timeout."""
    app = App(database_url)
    gate = threading.Event()

    @app.workflow()
    async def gated(wf: Workflow) -> int:
        first = await wf.step("first", lambda: 1)
        await wf.step("gate", lambda: gate.wait(30))  # in flight while the other loop works
        return first + await wf.step("last", lambda: 2)

    @app.workflow()
    async def quick(wf: Workflow) -> int:
        return await wf.step("one", lambda: 7)

    async def elsewhere(wid: str) -> tuple[int, int, list[str]]:
        ran = (await app.arun(quick)).value
        gate.set()
        done = (await app.aresult(wid, timeout=20)).value
        return ran, done, [r.workflow_id for r in await app.alist_runs()]

    try:
        wid = app.start(gated)
        ran, done, listed = asyncio.run(elsewhere(wid))
        assert (ran, done) == (7, 3)
        assert wid in listed
        record = app.get_record(wid)  # the sync facade still works after
        assert record.status is RunStatus.COMPLETED
        assert [s.name for s in record.steps.values()] == ["first", "gate", "last"]
    finally:
        gate.set()
        app.close()


def test_a_call_cancelled_on_the_other_loop_is_cancelled_on_the_apps(database_url: str) -> None:
    """A call cancelled here (a timeout, Ctrl-C) is cancelled where it runs, not left
    running there."""
    app = App(database_url)
    gate = threading.Event()

    @app.workflow()
    async def parked(wf: Workflow) -> str:
        # (300 s: on a loaded 2-core machine 30 ran out before the gate was set)
        return str(await wf.step("gate", lambda: gate.wait(300)))

    async def hopped() -> list[str]:  # calls run here for another loop (`homed`)
        names = (getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks())
        return [n for n in names if n.startswith("homed.")]

    async def elsewhere(wid: str) -> None:
        call = asyncio.ensure_future(app.aresult(wid))
        while not asyncio.run_coroutine_threadsafe(hopped(), home).result(5):
            await asyncio.sleep(0)  # until the call runs there
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert asyncio.run_coroutine_threadsafe(hopped(), home).result(5) == []

    try:
        wid = app.start(parked)
        home = app._loop.loop
        assert home is not None
        asyncio.run(elsewhere(wid))
        gate.set()
        assert app.result(wid, timeout=20).value == "True"
    finally:
        gate.set()
        app.close()


def test_a_context_opened_on_another_loop_is_refused_saying_why(database_url: str) -> None:
    """`aopen` hands back a context whose calls run where it is awaited: on a second
    loop they would take the store from the App's loop thread."""
    app = App(database_url)

    @app.workflow()
    async def quick(wf: Workflow) -> int:
        return await wf.step("one", lambda: 7)

    async def elsewhere() -> None:
        with pytest.raises(InvalidArgumentError, match="own loop thread"):
            await app.aopen("opened")

    try:
        assert app.run(quick).value == 7  # the sync facade starts the App's loop thread
        asyncio.run(elsewhere())
        assert "opened" not in [r.workflow_id for r in app.list_runs()]  # nothing created
    finally:
        app.close()


_FORKED = """
import asyncio, multiprocessing, sys
from tether import App, Workflow

app = App(sys.argv[1])

@app.workflow()
async def double(wf: Workflow, n: int) -> int:
    return await wf.step("s", lambda: n * 2)

def sync_in_child(n):
    try:
        return app.run(double, n, workflow_id=f"child-{n}").value
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        app.close()  # a no-op here: what it would close is the parent's

def fresh_in_child(n):
    fresh = app.with_database(app.database_url)  # as the error advises
    try:
        return fresh.run(double, n, workflow_id=f"fresh-{n}").value
    finally:
        fresh.close()

def async_in_child(n):
    try:
        return asyncio.run(app.arun(double, n, workflow_id=f"achild-{n}")).value
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

if __name__ == "__main__":
    print(app.run(double, 1, workflow_id="parent").value)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        print(pool.apply(sync_in_child, (2,)))
        print(pool.apply(async_in_child, (3,)))
        print(pool.apply(fresh_in_child, (5,)))
    print(app.run(double, 4, workflow_id="parent-again").value)  # the parent's still works
    app.close()
"""


def test_an_app_used_in_a_forked_child_says_how_to_do_it(database_url: str, tmp_path: Path) -> None:
    """A Pool child forked after the App started its loop thread handed its call to a
    loop no thread runs there, and waited for good."""
    import subprocess
    import sys

    script = tmp_path / "forked.py"
    script.write_text(_FORKED)
    done = subprocess.run(
        [sys.executable, str(script), database_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "2" and lines[3] == "10" and lines[4] == "8", lines
    for said in lines[1:3]:
        assert said.startswith("TetherError: this App was opened in process"), said
        assert "app.with_database(app.database_url)" in said
