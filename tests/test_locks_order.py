"""Nested mutexes taken in opposite orders by two runs in two OS processes.

Run 1 holds A and asks for B; run 2, in another process, holds B and asks for
A: each waits for the other until one times out. The timeout said only "raise
`timeout=` or check for a holder that never releases", which sent the user
hunting for a stuck holder; it now says the two may be a deadlock and how to
avoid one (one fixed order). The loser's timeout frees A, and the other
process's run takes it and ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether
from tether import App, Workflow

B_THEN_A = textwrap.dedent(
    """
    import sys
    import tether

    async def b_then_a(wf: tether.Workflow) -> str:
        async with wf.mutex("B", stale_after=600):
            print("holding B", flush=True)
            async with wf.mutex("A", timeout=120, stale_after=600):
                return "took A"

    print(tether.App(sys.argv[1]).run(b_then_a, workflow_id="b-then-a").value, flush=True)
    """
)


async def test_a_timeout_inside_another_mutex_says_it_may_be_a_deadlock(
    database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "b_then_a.py"
    script.write_text(B_THEN_A)
    # the real clock, as the other process's: each sees the other's claim live
    app = App(database_url)
    started: list[subprocess.Popen[str]] = []

    async def a_then_b(wf: Workflow) -> None:
        async with wf.mutex("A", stale_after=600):  # A first, then the other process starts
            cmd = [sys.executable, str(script), database_url]
            started.append(proc := subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "holding B"
            async with wf.mutex("B", timeout=0):
                pass

    try:
        with pytest.raises(tether.MutexTimeoutError) as info:
            await app.arun(a_then_b, workflow_id="a-then-b")
        out, _ = started[0].communicate(timeout=60)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        await app.aclose()
    err = info.value
    assert (err.key, err.run_id, err.parked) == ("B", "b-then-a", False)
    message = str(err)
    assert "run 'a-then-b' holds mutex 'A' here while it waits for 'B'" in message
    assert "if run 'b-then-a' waits in turn for 'A'" in message
    assert "a deadlock" in message and "one fixed order" in message
    # the timed-out run left A: the other process's run took it and ended
    assert started[0].returncode == 0
    assert out.strip() == "took A"


async def test_a_timeout_holding_nothing_else_says_nothing_of_a_deadlock(app: App) -> None:
    """The hint is for nested mutexes only: a plain wait names no deadlock."""
    holder = await app.aopen("holder")

    async def waiter(wf: Workflow) -> None:
        async with wf.mutex("B", timeout=0):
            pass

    async with holder.mutex("B"):
        with pytest.raises(tether.MutexTimeoutError) as info:
            await app.arun(waiter, workflow_id="waiter")
    assert "deadlock" not in str(info.value)
    assert str(info.value).endswith("check for a holder that never releases")


async def test_a_for_each_item_holding_its_key_is_told_of_the_order_too(app: App) -> None:
    """An item holds its `mutex_key` as a block does: a nested wait that times out
    names it as the key this code path holds."""
    holder = await app.aopen("holder")

    async def item(wf: Workflow, key: str) -> None:
        async with wf.mutex("B", timeout=0):
            pass

    async def items(wf: Workflow) -> str:
        summary = await wf.for_each(
            ["A"], lambda k: item(wf, k), mutex_key=lambda k: k, stop_on_error=False
        )
        return str(summary.results[0].error)

    async with holder.mutex("B"):
        message = (await app.arun(items, workflow_id="items")).value
    assert "run 'items' holds mutex 'A' here while it waits for 'B'" in message
    assert "run 'holder' waits in turn for 'A'" in message
