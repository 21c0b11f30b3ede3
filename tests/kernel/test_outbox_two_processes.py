"""Two OS processes publishing one outbox at once, on a SQLite file and on PostgreSQL:
a publisher holds its batch in flight (its sink waits on a file), and a second
process publishes meanwhile. Each event reaches the sink (a ledger file) once.

Before, the second publisher went ahead and delivered the whole batch again when it
was a dispatched ``outbox.flush`` (it took no lock), or a serverless host named as
the first one (both "renewed" one lock under their shared worker id)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether import App
from tether.store import Fence, NewEvent, NewRun

PUBLISHER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from pathlib import Path
    import tether
    from tether.kernel import CallableSink, OutboxFlush
    from tether.worker import ServerlessHost

    url, ledger, how, hold = sys.argv[1:5]

    def sink(event):
        with open(ledger, "a") as f:
            f.write(f"{event.workflow_id}:{event.seq} {os.getpid()}\\n")
        if hold != "-":  # hold the batch in flight until the test lets go
            Path(hold + ".held").touch()
            while not Path(hold).exists():
                time.sleep(0.01)

    async def main():
        app = tether.App(url, sinks=[CallableSink(sink)])
        if how == "flush":
            print(await app.kernel.adispatch(OutboxFlush()), flush=True)
        else:
            print(await ServerlessHost(app, worker_id="fn").amaintenance_tick(), flush=True)
        await app.aclose()

    asyncio.run(main())
    """
)


async def _seed(url: str, runs: int, per_run: int) -> set[str]:
    app = App(url)
    at = datetime.now(UTC)
    try:
        for r in range(runs):
            wid = f"r{r}"
            await app.store.create_run(NewRun(wid, "wf", state="null"), at)
            gen = (await app.store.claim_run(wid, "o", at, NewEvent("workflow.running"))).generation
            await app.store.append_events(Fence(wid, gen), [NewEvent("tick")] * (per_run - 1), at)
        return {f"r{r}:{s}" for r in range(runs) for s in range(1, per_run + 1)}
    finally:
        await app.aclose()


def _publisher(tmp_path: Path, url: str, how: str, hold: str) -> subprocess.Popen[str]:
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    return subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path / "ledger"), how, hold],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [("serverless", "flush"), ("flush", "serverless"), ("serverless", "serverless")],
)
async def test_a_second_publisher_process_delivers_no_event_the_first_has_in_flight(
    database_url: str, tmp_path: Path, first: str, second: str
) -> None:
    ids = await _seed(database_url, runs=3, per_run=4)
    hold = tmp_path / "release"
    held = tmp_path / "release.held"
    one = _publisher(tmp_path, database_url, first, str(hold))
    try:
        while not held.exists():  # its first delivery is in flight, its lock held
            assert one.poll() is None, one.communicate()
            await asyncio.sleep(0.01)  # a look now and then, not a spin beside it
        two = _publisher(tmp_path, database_url, second, "-")
        _, err = await asyncio.to_thread(two.communicate, timeout=60)
        assert two.returncode == 0, err
        hold.touch()
        _, err = await asyncio.to_thread(one.communicate, timeout=60)
        assert one.returncode == 0, err
    finally:
        hold.touch()
        if one.poll() is None:
            one.kill()
            one.communicate()
    lines = (tmp_path / "ledger").read_text().split()
    delivered = Counter(lines[::2])
    assert set(delivered) == ids
    assert {d: n for d, n in delivered.items() if n > 1} == {}  # none twice
    assert set(lines[1::2]) == {str(one.pid)}  # the second stood aside
