"""A mutex whose holder's process ends (real OS processes).

Ended normally while a sync step its block gave up on (a step timeout) still
runs: the step's thread cannot be stopped, so the key stays held while the
process lives, after its App closed too (it was released when the App's loop
ended, beside the side effect still under way). The thread dies with the
process, so the key is released as the process exits, and a waiter takes it
at once instead of `stale_after` later.

Killed (SIGKILL) on this machine: a waiter that finds the holder's process gone
takes the key at once, as a run's dead owner on this machine is taken over."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import App, FakeClock, Workflow
from tether.store import open_store

HOLDER = textwrap.dedent(
    """
    import asyncio, sys, threading
    import tether

    url, how = sys.argv[1], sys.argv[2]
    never = threading.Event()

    async def hold(wf: tether.Workflow) -> str:
        async with wf.mutex("k", stale_after=600):
            try:  # a sync step that never returns, given up on inside the block
                await wf.step("hang", lambda: never.wait(), timeout=0.05)
            except tether.StepTimeoutError:
                pass
        return "left the block"

    if how == "close":  # the sync facade, closed
        app = tether.App(url)
        print(app.run(hold, workflow_id="holder").value, flush=True)
        app.close()
    else:  # async, the App never closed: asyncio.run ends its loop
        async def main() -> None:
            print((await tether.App(url).arun(hold, workflow_id="holder")).value, flush=True)
        asyncio.run(main())
    print("closed", flush=True)
    sys.stdin.readline()  # live on (the step still running) until told to exit
    """
)


async def _held_by(url: str, pid: int) -> bool:
    store = open_store(url)
    try:
        row = await store.get_lock("mutex", "k")
    finally:
        await store.close()
    assert row is not None and row.holder.split(":")[1] == str(pid)
    return row.released_at is None


async def take(wf: Workflow) -> None:
    async with wf.mutex("k", timeout=20.0, stale_after=600):
        pass


@pytest.mark.parametrize("how", ["close", "unclosed"])
async def test_a_key_kept_for_a_running_step_is_held_while_its_process_lives_and_released_at_exit(
    database_url: str, tmp_path: Path, how: str
) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    # another process waits for the key; its fake clock is months before the holder's
    # expiry: only a release lets it in
    waiter = App(database_url, clock=FakeClock())
    try:
        with subprocess.Popen(
            [sys.executable, str(script), database_url, how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stdin is not None
                assert proc.stdout.readline().strip() == "left the block"
                assert proc.stdout.readline().strip() == "closed"
                # its App's loop is gone; the process and its hung step live on: held
                assert await _held_by(database_url, proc.pid)
                waiting = asyncio.ensure_future(waiter.arun(take, workflow_id="waiter"))
                proc.stdin.write("exit\n")
                proc.stdin.flush()
                _, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, err
        await waiting  # released as the holder exited (MutexTimeoutError had it stayed held)
        record = await waiter.aget_record("waiter")
        taken = [e.type for e in record.events if e.type.startswith("mutex.")]
        assert taken == ["mutex.acquired", "mutex.released"]
    finally:
        await waiter.aclose()


KILLED = textwrap.dedent(
    """
    import sys, threading
    import tether

    never = threading.Event()

    async def hold(wf: tether.Workflow) -> None:
        async with wf.mutex("k", stale_after=600):
            print("holding", flush=True)
            await wf.step("hang", lambda: never.wait())

    tether.App(sys.argv[1]).run(hold, workflow_id="holder")
    """
)


async def test_a_key_whose_holders_process_was_killed_on_this_machine_is_taken_at_once(
    database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    with subprocess.Popen(
        [sys.executable, str(script), database_url], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "holding"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert await _held_by(database_url, proc.pid)  # nobody released it: it died
    # the waiter's fake clock is months before the claim's expiry (stale_after=600 after
    # the holder's last renewal): only knowing the holder's process is gone lets it in
    waiter = App(database_url, clock=FakeClock())
    try:
        await waiter.arun(take, workflow_id="waiter")  # MutexTimeoutError when it waited
        record = await waiter.aget_record("waiter")
        taken = [e.type for e in record.events if e.type.startswith("mutex.")]
        assert taken == ["mutex.acquired", "mutex.released"]
    finally:
        await waiter.aclose()
