"""The sync facade and the App's lifecycle as agent harnesses use them: inside a
running event loop, from a web server's thread pool, after a close, after a fork,
and as a context manager left on an exception (`tether._loop`, `App.close`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tether import App, RunStatus, TetherError, Workflow

from ._env import child_pythonpath


def _in_a_process(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a process of its own with `args`; what it printed and said."""
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": child_pythonpath()},
    )  # fmt: skip


def _doubling(app: App) -> object:
    @app.workflow()
    async def double(wf: Workflow, n: int) -> int:
        first = await wf.step("first", lambda: n)
        return await wf.step("second", lambda: first * 2)

    return double


def test_the_sync_api_in_a_running_loop_names_the_async_method(database_url: str) -> None:
    """In an async function (a notebook, an async web handler) each sync call is
    refused at once naming the method to await; `close` failed with asyncio's own
    error (and a never-awaited coroutine warning)."""
    app = App(database_url)
    double = _doubling(app)

    async def handler() -> dict[str, str]:
        said = {}
        for name, call in (
            ("start", lambda: app.start(double, 1)),
            ("signal", lambda: app.signal("w", "go", 1)),
            ("result", lambda: app.result("w")),
            ("close", app.close),
        ):
            with pytest.raises(TetherError) as caught:
                call()
            said[name] = str(caught.value)
        return said

    try:
        said = asyncio.run(handler())
        assert "`await app.astart(...)`" in said["start"]
        assert "`await app.asignal(...)`" in said["signal"]
        assert "`await app.aresult(...)`" in said["result"]
        assert "`await app.aclose()`" in said["close"]
        assert app.run(double, 4).value == 8  # the App is none the worse
    finally:
        app.close()


def test_threads_of_a_pool_share_one_app_and_are_refused_once_it_closed(
    database_url: str,
) -> None:
    """A web server's thread pool runs through one App at once, each its own run; after
    `close` a call made a run left pending that nothing drove (and reopened the store),
    where it now says the App is closed."""
    app = App(database_url)
    double = _doubling(app)
    with ThreadPoolExecutor(8) as pool:
        ran = list(pool.map(lambda i: app.run(double, i, workflow_id=f"t{i}").value, range(32)))
    assert ran == [i * 2 for i in range(32)]
    app.close()
    app.close()  # twice: nothing more to do
    said: list[BaseException] = []

    def late() -> None:
        try:
            app.start(double, 1, workflow_id="late")
        except TetherError as exc:
            said.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert len(said) == 1 and "after the App was closed" in str(said[0])
    with pytest.raises(TetherError, match=r"app\.resume\(\) / app\.aresume\(\)"):
        app.resume("t1")
    with App(database_url) as other:
        assert "late" not in [r.workflow_id for r in other.list_runs(limit=100)]
        assert other.get_record("t5").status is RunStatus.COMPLETED


async def test_the_async_api_after_aclose_is_refused(database_url: str) -> None:
    app = App(database_url)
    double = _doubling(app)
    assert (await app.arun(double, 2)).value == 4
    await app.aclose()
    await app.aclose()  # twice: nothing more to do
    with pytest.raises(TetherError, match=r"app\.run\(\) / app\.arun\(\) was called after"):
        await app.arun(double, 3)


_FORKED = """
import asyncio, multiprocessing, sys
from tether import App, Workflow

app = App(sys.argv[1])

@app.workflow()
async def double(wf: Workflow, n: int) -> int:
    return await wf.step("s", lambda: n * 2)

def in_child(how):
    try:
        if how == "sync":
            return str(app.run(double, 2, workflow_id="child-sync").value)
        if how == "aclose":
            asyncio.run(app.aclose())  # a no-op too, as close()
            return "closed nothing"
        return str(asyncio.run(app.arun(double, 3, workflow_id="child-async")).value)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        app.close()  # a no-op here: what it would close is the parent's

async def parent():
    print((await app.arun(double, 1, workflow_id="parent")).value, flush=True)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        print(pool.apply(in_child, ("sync",)), flush=True)
        print(pool.apply(in_child, ("async",)), flush=True)
        print(pool.apply(in_child, ("aclose",)), flush=True)
    print((await app.arun(double, 4, workflow_id="parent-again")).value, flush=True)
    await app.aclose()

asyncio.run(parent())
"""


def test_a_child_forked_after_the_async_api_was_used_is_told_to_make_its_own(
    database_url: str, tmp_path: Path
) -> None:
    """The parent used only the async API (no loop thread of the App's): the forked
    child took its SQLite connection (whose thread is not in the child) or its
    PostgreSQL pool, and waited for good, sync or async."""
    done = _in_a_process(tmp_path, _FORKED, database_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "2" and lines[3] == "closed nothing" and lines[4] == "8", lines
    for said in lines[1:3]:
        assert said.startswith("TetherError: this App was opened in process"), said
        assert "app.with_database(app.database_url)" in said


_WITH_RAISING = """
import asyncio, sys, threading
from tether import App, Workflow
from tether.testing import eventually_sync

url, how = sys.argv[1], sys.argv[2]
entered, gate = threading.Event(), threading.Event()

def first() -> int:
    entered.set()
    gate.wait(60)  # in flight when the block raises; ends once the App drains
    return 1

def register(app):
    @app.workflow(name="two")
    async def two(wf: Workflow) -> int:
        return await wf.step("first", first) + await wf.step("second", lambda: 2)
    return two

def release(app):
    eventually_sync(lambda: app.draining, timeout=60)
    gate.set()

class Boom(Exception):
    pass

def sync_block():
    with App(url) as app:
        app.start(register(app), workflow_id="w")
        entered.wait(60)
        threading.Thread(target=release, args=(app,)).start()
        raise Boom("as raised")

async def async_block():
    async with App(url) as app:
        await app.astart(register(app), workflow_id="w")
        await asyncio.to_thread(entered.wait, 60)
        threading.Thread(target=release, args=(app,)).start()
        raise Boom("as raised")

def in_loop_block():  # a sync `with` in an async function: close is refused there
    async def handler():
        with App(url) as app:
            raise Boom("as raised")
    asyncio.run(handler())

try:
    {"sync": sync_block, "async": lambda: asyncio.run(async_block()),
     "in_loop": in_loop_block}[how]()
except Boom as exc:
    print("propagated", repr(exc), exc.__context__ is None)
"""


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_with_block_that_raises_hands_its_runs_back(
    database_url: str, tmp_path: Path, how: str
) -> None:
    """The block's exception goes on unchanged, once the step in flight finished and
    was recorded and the run was handed back (README "Clean exits")."""
    done = _in_a_process(tmp_path, _WITH_RAISING, database_url, how)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["propagated Boom('as raised') True"], done.stdout
    with App(database_url) as app:
        record = app.get_record("w")
    assert record.status is RunStatus.PENDING and record.owner_expires_at is None
    assert [s.name for s in record.steps.values()] == ["first"]
    assert [e.type for e in record.events][-1] == "workflow.handed_back"


def test_a_sync_with_block_raising_in_an_async_function_keeps_its_exception(
    database_url: str, tmp_path: Path
) -> None:
    """`close` refused in a running loop replaced the block's own exception."""
    done = _in_a_process(tmp_path, _WITH_RAISING, database_url, "in_loop")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["propagated Boom('as raised') True"], done.stdout
    assert "`await app.aclose()`" in done.stderr  # the close that failed, logged
