"""The sync facade under a threaded program's close: calls from other threads racing
`App.close` (a web server's handlers, its shutdown hook, the interpreter's exit), on
both backends (`tether._loop.LoopThread.end_calls`, `App.aclose`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether import App, RunNotFoundError, RunStatus, StoreError, TetherError, Workflow
from tether.testing import eventually_sync

from ._env import child_pythonpath


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[object]]:
    """`call` run in a thread of its own; what it returned or raised, once it ended."""
    said: list[object] = []

    def body() -> None:
        try:
            said.append(call())
        except BaseException as exc:  # the test looks at what was raised
            said.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, said


def _gated_step_app(database_url: str) -> tuple[App, Any, threading.Event, threading.Event]:
    """An App whose workflow's first step waits for a gate: (app, workflow, inside, go)."""
    app = App(database_url)
    inside, go = threading.Event(), threading.Event()

    def first() -> int:
        inside.set()
        assert go.wait(30), "the test never opened the gate"
        return 1

    @app.workflow()
    async def gated(wf: Workflow) -> int:
        await wf.step("first", first)
        return await wf.step("second", lambda: 2)

    return app, gated, inside, go


def test_a_read_in_flight_as_the_store_closes_is_cut_short_before_it(database_url: str) -> None:
    """A read still running when `close` reached the store went on once it was closed:
    it opened the store anew (PostgreSQL: a pool whose workers `close` then waited on
    for 30 s, or for good) and answered from it. It is now cut short first, saying so."""
    app = App(database_url, inline_wait=0)

    @app.workflow()
    async def parked(wf: Workflow) -> None:
        await wf.wait_for_signal("go")

    app.run(parked, workflow_id="p")
    entered, store_closed, reached = threading.Event(), threading.Event(), threading.Event()
    real_get_run, real_close = app.store.get_run, app.store.close

    async def gated_get_run(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        try:  # held until the store closed (where the race put it)
            await asyncio.to_thread(store_closed.wait, 30)
        finally:
            reached.set()
        return await real_get_run(*args, **kwargs)

    async def close_then_let_it_on() -> None:
        await real_close()
        store_closed.set()
        await asyncio.to_thread(reached.wait, 30)

    app.store.get_run = gated_get_run  # type: ignore[method-assign]
    app.store.close = close_then_let_it_on  # type: ignore[method-assign]
    reader, said = _in_thread(lambda: app.get_run("p"))
    assert entered.wait(30)
    app.close()
    reader.join(30)
    assert len(said) == 1 and isinstance(said[0], TetherError), said
    assert not isinstance(said[0], StoreError) and "cut short" in str(said[0])


def test_a_run_asked_for_as_the_app_closes_is_refused(database_url: str) -> None:
    """A handler's thread whose run was just handed back by a close asks for the next
    run: it was let in while the store closed (a StoreError, a stray pending run, or
    a call cut short), where it is now refused as the App closes, making nothing."""
    app, gated, inside, go = _gated_step_app(database_url)
    store_may_close = threading.Event()
    real_close = app.store.close

    async def held_close() -> None:
        await asyncio.to_thread(store_may_close.wait, 30)
        await real_close()

    app.store.close = held_close  # type: ignore[method-assign]

    def handler() -> list[object]:
        first = app.run(gated, workflow_id="w0")
        try:
            return [first.status, app.run(gated, workflow_id="w1")]
        except TetherError as exc:
            return [first.status, exc]
        finally:
            store_may_close.set()

    worker, said = _in_thread(handler)
    assert inside.wait(30)
    closer, closed = _in_thread(app.close)
    eventually_sync(lambda: app.draining)
    go.set()
    worker.join(30)
    closer.join(30)
    assert closed == [None]
    [(status, second)] = said  # type: ignore[misc]
    assert status is RunStatus.PENDING  # handed back, its step recorded
    assert isinstance(second, TetherError) and not isinstance(second, StoreError), second
    assert "as it closes" in str(second)
    other = App(database_url)
    try:
        assert other.get_record("w0").steps["first"].result == 1
        with pytest.raises(RunNotFoundError):
            other.get_run("w1")
    finally:
        other.close()


def test_threads_closing_one_app_at_once_each_return_once_it_closed(database_url: str) -> None:
    """Two threads closing one App (a web server's shutdown hook and its atexit, say):
    the second returned at once and stopped the loop under the first, whose grace
    period was cut short (its step abandoned, its close raising). Now the second
    waits for the first close, and the step in flight finishes and is recorded."""
    app, gated, inside, go = _gated_step_app(database_url)
    app.start(gated, workflow_id="w")
    assert inside.wait(30)
    real_aclose = app.aclose
    entered: list[str] = []
    shut_when_returned: list[bool] = []

    async def noted_aclose() -> None:
        entered.append(threading.current_thread().name)  # on the App's loop, at once
        await real_aclose()
        shut_when_returned.append(app._shut)

    app.aclose = noted_aclose  # type: ignore[method-assign]
    first, said_first = _in_thread(app.close)
    eventually_sync(lambda: app.draining)
    second, said_second = _in_thread(app.close)
    eventually_sync(lambda: len(entered) == 2)  # both on the loop, the first one waiting
    go.set()
    first.join(30)
    second.join(30)
    assert said_first == [None] and said_second == [None]
    assert shut_when_returned == [True, True]
    other = App(database_url)
    try:
        record = other.get_record("w")
        assert record.status is RunStatus.PENDING and record.steps["first"].result == 1
    finally:
        other.close()


EXITING = textwrap.dedent(
    """
    import os, sys, threading, time
    import tether

    LEDGER = os.environ["LEDGER"]
    app = tether.App(os.environ["DB"])
    inside = threading.Event()

    def effect(line: str) -> str:
        with open(LEDGER, "a") as f:  # the side effect first, then the step takes a while
            f.write(line + "\\n")
        if line == "w0:s1":
            inside.set()
            time.sleep(0.3)
        return line

    @app.workflow()
    async def three(wf: tether.Workflow) -> int:
        for i in range(3):
            await wf.step(f"s{i}", lambda i=i: effect(f"{wf.workflow_id}:s{i}"))
        return 3

    def handler() -> None:  # a non-daemon thread running one run after another
        for n in range(3):
            try:
                print(n, app.run(three, workflow_id=f"w{n}").status.value, flush=True)
            except tether.TetherError as exc:
                print(n, type(exc).__name__, str(exc)[:60], flush=True)
                return

    if sys.argv[1] == "again":
        for n in range(3):
            try:
                app.get_run(f"w{n}")
            except tether.RunNotFoundError:
                continue
            print(n, app.run(three, workflow_id=f"w{n}").status.value)
    else:
        threading.Thread(target=handler).start()
        inside.wait(30)  # the main thread ends with the handler inside app.run
    """
)


def test_exit_with_a_thread_running_runs_one_after_another(
    tmp_path: Path, database_url: str
) -> None:
    """The interpreter exits while a non-daemon thread is inside `app.run` and goes on
    to its next run: its step in flight finishes, its run is handed back, the next
    run is refused as the App closes, and the process exits at once and quietly (on
    PostgreSQL the next run met the store closing: tracebacks and a 30 s wait)."""
    (tmp_path / "m.py").write_text(EXITING)
    env = {
        **os.environ,
        "DB": database_url,
        "LEDGER": str(tmp_path / "ledger"),
        "PYTHONPATH": child_pythonpath(),
    }

    def py(arg: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(tmp_path / "m.py"), arg],
            env=env, capture_output=True, text=True, timeout=25, check=False,
        )  # fmt: skip

    done = py("exit")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines()[0] == "0 pending"
    assert done.stdout.splitlines()[1].startswith("1 TetherError app.run() / app.arun() was ca")
    again = py("again")
    assert again.returncode == 0 and again.stdout.split() == ["0", "completed"], again.stderr
    lines = (tmp_path / "ledger").read_text().split()
    assert lines == ["w0:s0", "w0:s1", "w0:s2"]  # none twice, none of a second run
