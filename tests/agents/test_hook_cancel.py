"""A cancelled `after_create` hook: nothing of its process group outlives the cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from tether.agents import WorkspaceManager
from tether.agents._config import HooksSettings
from tether.testing import eventually

from ._procs import alive

# a child that is slow to die: freeing 256 MB it wrote takes the kernel a while after
# SIGKILL, long after the shell leading its group was reaped
CHILD = (
    "import os, sys, time; held = b'x' * (256 << 20); "
    "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
)


async def test_a_cancelled_after_create_leaves_no_process_of_its_group(tmp_path: Path) -> None:
    """Before: the cancel killed the group but waited only for the hook's shell, so it
    returned while the shell's children (a clone, say) still ran and wrote in the
    workspace; now it returns once no process of the group is left."""
    pid = tmp_path / "child.pid"
    child = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHILD)} {shlex.quote(str(pid))}"
    hooks = HooksSettings(after_create=f"{child} & wait", timeout_ms=600_000)
    manager = WorkspaceManager(tmp_path / "root", hooks)
    making = asyncio.ensure_future(manager.ensure("A-1"))
    try:
        await eventually(lambda: pid.exists() and pid.read_text() != "", timeout=60)
        making.cancel()
        with pytest.raises(asyncio.CancelledError):
            await making
        # no polling: the cancel itself must have waited the group out (a zombie,
        # which this machine's init may never reap, is dead and counts as gone)
        assert not alive(int(pid.read_text()))
    finally:
        if pid.exists() and pid.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGKILL)
