"""A run waiting for a mutex, cancelled from another process.

A try that finds the key held writes nothing, so no fenced write told the
waiter its run was cancelled: it went on asking until its `timeout` (an hour,
by default, for a `for_each` item), holding its worker, and only then ended
cancelled. It now looks for a cancel while it waits and stops at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tether import App, RunStatus

WAITER = textwrap.dedent(
    """
    import sys
    import tether

    async def wait_for_key(wf: tether.Workflow) -> str:
        print("asking", flush=True)
        async with wf.mutex("k", timeout=3000, stale_after=600):
            return "took it"

    app = tether.App(sys.argv[1])
    try:
        print(app.run(wait_for_key, workflow_id="waiter").record.status.value, flush=True)
    except BaseException as exc:
        print(type(exc).__name__, flush=True)
    app.close()
    """
)


async def test_a_run_cancelled_while_it_waits_for_a_mutex_stops_waiting(
    database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    app = App(database_url)  # its claim (stale_after=600) is live on the waiter's clock
    try:
        holder = await app.aopen("holder")
        async with holder.mutex("k", stale_after=600):
            with subprocess.Popen(
                [sys.executable, str(script), database_url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc:
                try:
                    assert proc.stdout is not None
                    assert proc.stdout.readline().strip() == "asking"
                    await app.acancel("waiter", "not needed")
                    # before: it asked on for its 3000 s timeout, and this timed out
                    out, err = proc.communicate(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
            assert proc.returncode == 0, err
            assert out.strip() == "cancelled"
            record = await app.aget_record("waiter")
            assert record.status is RunStatus.CANCELLED
            assert not [e for e in record.events if e.type.startswith("mutex.")]
            row = await app.store.get_lock("mutex", "k")
            assert row is not None and row.run_id == "holder"  # still held, by the holder
    finally:
        await app.aclose()
