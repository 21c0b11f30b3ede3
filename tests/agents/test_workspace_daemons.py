"""A daemon a succeeding hook left (a dev server, a watcher) ends with its workspace.

Before: removing the workspace (retention, a terminal issue) left it running in a
deleted folder, holding its ports and files, for good. Real processes throughout;
each hook writes its background child's pid to a file outside the workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.agents import WorkspaceManager
from tether.agents._config import HooksSettings
from tether.testing import eventually

from ._procs import alive

pytestmark = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads /proc")


def _pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


def _kill(pidfile: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(_pid(pidfile), signal.SIGKILL)


@contextlib.contextmanager
def _bystander(where: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `sleep` of the test's own, outside any workspace: never to be touched."""
    proc = subprocess.Popen(["sleep", "300"], cwd=where, start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def _gone(pid: int) -> None:
    await eventually(lambda: not alive(pid), timeout=15)


@pytest.mark.parametrize(
    "spawn",
    ["sleep 300 &", "setsid sleep 300 &", "(cd / && exec sleep 300) &"],
    ids=["background", "setsid", "left-its-folder"],
)
async def test_removing_a_workspace_stops_the_daemon_its_after_create_left(
    tmp_path: Path, spawn: str
) -> None:
    """Removed by a dispatcher started since (a new manager: what it knows is on disk):
    the child in the hook's group, one detached with setsid (working in the folder),
    and one of its group that left the folder all end; the test's own sleep does not."""
    pidfile = tmp_path / "bg.pid"
    hooks = HooksSettings(after_create=f"{spawn} echo $! > {pidfile}", timeout_ms=60_000)
    root = tmp_path / "root"
    try:
        ws = await asyncio.wait_for(WorkspaceManager(root, hooks).ensure("A-1"), 60)
        daemon = _pid(pidfile)
        assert alive(daemon)  # a succeeding hook's daemon is left running meanwhile
        with _bystander(tmp_path) as other:
            assert await asyncio.wait_for(WorkspaceManager(root, hooks).discard(ws.path), 60)
            assert not ws.path.exists()
            await _gone(daemon)
            assert other.poll() is None and alive(other.pid)
        assert not list(root.iterdir())  # the record of the daemon went with it
    finally:
        _kill(pidfile)


async def test_the_retention_sweep_stops_a_before_run_daemon_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    """The cleanup chore's path (sweep, then discard): a daemon deaf to SIGTERM is
    killed once the grace is over."""
    pidfile = tmp_path / "bg.pid"
    script = f"sh -c 'trap \"\" TERM; exec sleep 300' & echo $! > {pidfile}"
    m = WorkspaceManager(
        tmp_path / "root", HooksSettings(before_run=script, timeout_ms=60_000), stop_grace=0.2
    )
    try:
        ws = await m.ensure("A-1")
        await asyncio.wait_for(m.before_run(ws.path), 60)
        daemon = _pid(pidfile)
        os.kill(daemon, signal.SIGTERM)  # deaf to it indeed
        assert alive(daemon)
        with _bystander(tmp_path) as other:
            doomed = m.sweep(remove_keys={"A-1"}, busy=set(), max_age_days=None, max_total_mb=None)
            assert doomed == [ws.path]
            assert await asyncio.wait_for(m.discard(ws.path), 60)
            await _gone(daemon)
            assert alive(other.pid)
    finally:
        _kill(pidfile)


async def test_a_workspace_deleted_by_hand_still_has_its_daemons_stopped(
    tmp_path: Path,
) -> None:
    """Nothing is left to remove, but the daemon recorded for the folder still runs."""
    import shutil

    pidfile = tmp_path / "bg.pid"
    hooks = HooksSettings(after_create=f"(cd / && exec sleep 300) & echo $! > {pidfile}")
    m = WorkspaceManager(tmp_path / "root", hooks)
    try:
        ws = await m.ensure("A-1")
        shutil.rmtree(ws.path)
        assert not await asyncio.wait_for(m.discard(ws.path), 60)
        await _gone(_pid(pidfile))
    finally:
        _kill(pidfile)


async def test_a_failing_after_create_stops_the_child_it_detached(tmp_path: Path) -> None:
    """Its group is killed at the failure; a child it moved to a session of its own
    (setsid) is not in it, and would work on in the folder about to be removed."""
    from tether.agents import WorkspaceError

    pidfile = tmp_path / "bg.pid"
    # the hook fails only once its child is out of its group (the pid written after setsid)
    detach = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' &"
    wait = f"until [ -s {pidfile} ]; do sleep 0.01; done; exit 3"
    hooks = HooksSettings(after_create=f"{detach} {wait}")
    m = WorkspaceManager(tmp_path / "root", hooks)
    try:
        with _bystander(tmp_path) as other:
            with pytest.raises(WorkspaceError):
                await asyncio.wait_for(m.ensure("A-1"), 60)
            await _gone(_pid(pidfile))
            assert alive(other.pid)
    finally:
        _kill(pidfile)


async def test_a_shell_with_a_terminal_looking_into_the_workspace_is_spared(
    tmp_path: Path,
) -> None:
    """A person's shell (a process with a controlling terminal) whose cwd is inside
    the workspace is no daemon: the removal leaves it running, as it does the test's
    own sleep, while a detached daemon beside it ends."""
    import pty

    pidfile = tmp_path / "bg.pid"
    hooks = HooksSettings(after_create=f"setsid sleep 300 & echo $! > {pidfile}")
    m = WorkspaceManager(tmp_path / "root", hooks)
    ws = await m.ensure("A-1")
    pid, fd = pty.fork()  # a session of its own, the pty its controlling terminal
    if pid == 0:  # the child: a "shell" in the workspace
        os.chdir(ws.path)
        os.execvp("sleep", ["sleep", "300"])
    try:
        assert await asyncio.wait_for(m.discard(ws.path), 60)
        await _gone(_pid(pidfile))
        assert alive(pid)
    finally:
        _kill(pidfile)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
