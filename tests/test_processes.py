"""Real OS processes: crash recovery after SIGKILL, and mutexes across processes.

Each test writes a small script, runs it with this interpreter against the
same database (SQLite file or PostgreSQL), and checks what the processes left
behind: side-effect logs and enter/exit timestamps.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tether.testing import eventually_sync

from ._env import child_pythonpath

CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import tether

    url, effects, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    crash = os.environ.get("CRASH_AT")

    async def flow(wf: tether.Workflow) -> int:
        total = 0
        for i in range(1, 11):
            def effect(i: int = i) -> int:
                with open(effects, "a") as f:
                    f.write(f"step-{i}\\n")
                    f.flush()
                    os.fsync(f.fileno())
                if crash == str(i):
                    open(marker, "w").close()
                    time.sleep(600)  # the parent kills us here, mid-step
                return i
            total += await wf.step(f"step-{i}", effect)
        return total

    app = tether.App(url)
    print(app.run(flow, workflow_id="crash-me").value)
    """
)


def _wait_for(
    path: Path, proc: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 60
) -> None:

    def appeared() -> bool:
        if proc.poll() is not None:
            out = log.read_text() if log else ""
            raise ChildProcessError(f"child exited early ({proc.returncode}): {out}")
        return path.exists()

    eventually_sync(appeared, timeout=timeout)


def test_sigkill_mid_step_resumes_without_repeating(tmp_path: Path, database_url: str) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    effects, marker = tmp_path / "effects.log", tmp_path / "in-step-5"
    args = [sys.executable, str(script), database_url, str(effects), str(marker)]

    log = tmp_path / "child.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, env={**os.environ, "CRASH_AT": "5"}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(marker, proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert effects.read_text().split() == [f"step-{i}" for i in range(1, 6)]

    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sum(range(1, 11)))
    lines = effects.read_text().split()
    counts = {f"step-{i}": lines.count(f"step-{i}") for i in range(1, 11)}
    assert counts == {**{f"step-{i}": 1 for i in range(1, 11)}, "step-5": 2}


MUTEX_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import tether

    url, name, log, rounds, hold = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])

    async def main() -> None:
        app = tether.App(url)
        wf = await app.aopen(f"contender-{name}")
        with open(log, "a") as out:
            for _ in range(rounds):
                async with wf.mutex("company:role", timeout=120, poll=0.005):
                    start = time.time()
                    await asyncio.sleep(hold)
                    out.write(f"{name} {start!r} {time.time()!r}\\n")
                    out.flush()
        await app.aclose()

    asyncio.run(main())
    """
)


def test_mutex_excludes_across_processes(tmp_path: Path, database_url: str) -> None:
    script = tmp_path / "mutex.py"
    script.write_text(MUTEX_SCRIPT)
    n_procs, rounds = 4, 6
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                database_url,
                f"p{i}",
                str(tmp_path / f"p{i}.log"),
                str(rounds),
                "0.01",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(n_procs)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()
    intervals = []
    for i in range(n_procs):
        for line in (tmp_path / f"p{i}.log").read_text().splitlines():
            _, start, end = line.split()
            intervals.append((float(start), float(end)))
    assert len(intervals) == n_procs * rounds
    intervals.sort()
    for (_s1, e1), (s2, _e2) in itertools.pairwise(intervals):
        assert s2 >= e1, f"critical sections overlap: one ended at {e1}, next began at {s2}"


HOLDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import tether

    url, marker, hold, stale = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

    async def main() -> None:
        app = tether.App(url)
        wf = await app.aopen("holder")
        async with wf.mutex("entity", stale_after=stale):
            open(marker, "w").close()
            await asyncio.sleep(hold)
        await app.aclose()

    asyncio.run(main())
    """
)


async def _try_mutex(url: str, timeout: float, stale: float) -> float:
    import tether

    app = tether.App(url)
    try:
        wf = await app.aopen("waiter")
        t0 = time.monotonic()
        async with wf.mutex("entity", timeout=timeout, poll=0.02, stale_after=stale):
            return time.monotonic() - t0
    finally:
        await app.aclose()


async def test_live_slow_holder_is_not_evicted(tmp_path: Path, database_url: str) -> None:
    import tether

    script = tmp_path / "holder.py"
    script.write_text(HOLDER_SCRIPT)
    marker = tmp_path / "held"
    # holds for 2.5 s with stale_after=0.6 s: it must keep renewing, and win
    proc = subprocess.Popen([sys.executable, str(script), database_url, str(marker), "2.5", "0.6"])
    try:
        _wait_for(marker, proc)
        with pytest.raises(tether.MutexTimeoutError):
            await _try_mutex(database_url, timeout=1.5, stale=0.6)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_dead_holder_is_evicted_after_stale_after(tmp_path: Path, database_url: str) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER_SCRIPT)
    marker = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, str(script), database_url, str(marker), "600", "1.0"])
    try:
        _wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        waited = await _try_mutex(database_url, timeout=20, stale=1.0)
        assert waited < 5  # evicted once it stopped renewing for ~1 s, not after 30 s
    finally:
        if proc.poll() is None:
            proc.kill()


APPROVAL_MODULE = textwrap.dedent(
    """
    import os
    import tether

    app = tether.App(os.environ["DB_URL"])
    EFFECTS = os.environ["EFFECTS"]

    def effect(name):
        with open(EFFECTS, "a") as f:
            f.write(name + "\\n")
        return name

    @app.workflow(name="publish", version="1")
    async def publish(wf: tether.Workflow, doc: str) -> str:
        await wf.step("draft", lambda: effect("draft"))
        decision = await wf.wait_for_signal("approval")
        await wf.step("publish", lambda: effect("publish:" + decision["by"]))
        return doc + " approved by " + decision["by"]
    """
)


def test_human_approval_across_processes(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "flows.py").write_text(APPROVAL_MODULE)
    env = {
        **os.environ,
        "DB_URL": database_url,
        "EFFECTS": str(tmp_path / "effects.log"),
        "PYTHONPATH": child_pythonpath(tmp_path),
    }
    start = (
        "from flows import app, publish\n"
        "r = app.run(publish, 'q3-report', workflow_id='doc-1')\n"
        "print(r.status.value)\n"
        "app.close()\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", start], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "waiting"  # parked, and the process exited

    approve = (
        "from flows import app\n"
        "app.signal('doc-1', 'approval', {'by': 'ada'})\n"
        "r = app.result('doc-1', timeout=60)\n"
        "print(r.status.value, '|', r.value)\n"
        "app.close()\n"
    )
    second = subprocess.run(
        [sys.executable, "-c", approve], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "completed | q3-report approved by ada"
    assert (tmp_path / "effects.log").read_text().split() == ["draft", "publish:ada"]
