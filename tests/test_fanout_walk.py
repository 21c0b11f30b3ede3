"""for_each as a new user meets it: mistakes refused up front, big fan-outs, SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import App, StepStatus, Workflow

from .agents._procs import stop
from .test_processes import _wait_for


@pytest.mark.parametrize("items", [{"b", "a", "c"}, frozenset({3, 1, 2})], ids=["set", "frozenset"])
async def test_a_set_of_items_is_refused(app: App, items: Any) -> None:
    """Item i's steps are `name[i]`, and a set of str is ordered by salted hashes: a
    process resuming the run (another PYTHONHASHSEED) handed item "beta" the step
    results "alpha" recorded, silently. Before, a set was taken as is."""
    calls: list[object] = []

    async def flow(wf: Workflow) -> None:
        await wf.for_each(items, calls.append)

    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.arun(flow, workflow_id="fe-set")
    assert "fixed order" in str(caught.value) and "sorted(items)" in str(caught.value)
    assert calls == []


async def test_a_mutex_key_function_that_raises_says_so(app: App) -> None:
    """Before, the run failed with a bare `KeyError: 'company'`, naming neither
    mutex_key nor the item."""

    async def flow(wf: Workflow) -> None:
        await wf.for_each(
            [{"company": "a"}, {"role": "b"}], lambda j: j, mutex_key=lambda j: j["company"]
        )

    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.arun(flow, workflow_id="fe-key-raises")
    text = str(caught.value)
    assert "mutex_key raised KeyError" in text and "item 1" in text and "'role'" in text
    assert isinstance(caught.value.__cause__, KeyError)


class _CountedKey(str):
    """A mutex key that counts how often it is hashed (each set or dict lookup)."""

    hashes = 0

    def __hash__(self) -> int:
        _CountedKey.hashes += 1
        return str.__hash__(self)


async def test_items_waiting_on_a_busy_key_are_not_scanned_at_every_start(app: App) -> None:
    """Each start scanned every waiting item (and looked its key up): quadratic in the
    items, 100,000 items spent 26 s picking the next one instead of 3. Counted here by
    key lookups, which must grow with the items, not with their square."""
    n = 150
    _CountedKey.hashes = 0

    async def flow(wf: Workflow) -> int:
        summary = await wf.for_each(
            range(n), lambda i: i, max_parallel=4, mutex_key=lambda i: _CountedKey("same")
        )
        return summary.fulfilled

    assert (await app.arun(flow, workflow_id="fe-scan")).value == n
    assert _CountedKey.hashes < 20 * n  # before: n * n / 2 and more


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import tether

    url, effects, marker, crash = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    app = tether.App(url)

    @app.workflow(name="fan", version="1")
    async def fan(wf: tether.Workflow) -> int:
        async def item(i: int) -> int:
            def effect() -> int:
                with open(effects, "a") as f:
                    f.write(f"item-{i}\\n")
                    f.flush()
                    os.fsync(f.fileno())
                if i == crash and not os.path.exists(marker):
                    open(marker, "w").close()
                    time.sleep(600)  # the parent kills us here, mid-step
                return i
            return await wf.step("effect", effect)

        summary = await wf.for_each(
            range(120), item, max_parallel=4, mutex_key=lambda i: f"k{i % 3}"
        )
        return sum(summary.values)

    print(app.run(fan, workflow_id="fan-crash").value)
    """
)


def test_a_sigkilled_fan_out_resumes_without_repeating_a_recorded_item(
    tmp_path: Path, database_url: str
) -> None:
    """A for_each of 120 items, four at a time under keyed mutexes, SIGKILLed while item
    70 is in its step: the resumed run (same process script, new process) repeats no
    step whose result was recorded, takes back the dead process's mutex, and sums all."""
    script = tmp_path / "fan.py"
    script.write_text(CRASH_SCRIPT)
    effects, marker = tmp_path / "effects.log", tmp_path / "in-item-70"
    args = [sys.executable, str(script), database_url, str(effects), str(marker), "70"]
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    _kill_when(marker, proc, log)
    recorded = _recorded_items(database_url)
    assert 70 not in recorded and len(recorded) >= 60

    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(sum(range(120)))
    lines = effects.read_text().split()
    assert sorted(set(lines)) == sorted(f"item-{i}" for i in range(120))
    assert all(lines.count(f"item-{i}") == 1 for i in recorded)
    assert lines.count("item-70") == 2


def _kill_when(marker: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGKILL `proc` once it made `marker` (in the middle of a step)."""
    try:
        _wait_for(marker, proc, log, timeout=120)
    finally:
        stop(proc, kill=True)
    assert proc.returncode == -signal.SIGKILL


def _recorded_items(url: str) -> set[int]:
    """The items whose `effect` step the killed process recorded as completed."""
    app = App(url)
    try:
        record = app.get_record("fan-crash")
    finally:
        app.close()
    return {
        int(name[len("effect[") : -1])
        for name, step in record.steps.items()
        if name.startswith("effect[") and step.status is StepStatus.COMPLETED
    }


async def test_items_that_changed_since_the_run_first_came_here_are_refused(app: App) -> None:
    """A resume given ["x", "a", "b", "c"] where the run first had ["a", "b", "c"]
    handed each item the recorded steps of the one that had its place: it returned
    ['x->a', 'a->b', 'b->c', 'c->c'], silently."""
    items = ["a", "b", "c"]

    @app.workflow(name="shifted")
    async def shifted(wf: Workflow) -> list[str]:
        async def one(item: str) -> str:
            return str(await wf.step("tag", lambda: f"{item}->{item}"))

        done = await wf.for_each(list(items), one)
        await wf.wait_for_signal("go")
        return [str(v) for v in done.values]

    assert (await app.arun(shifted, workflow_id="sh")).status is tether.RunStatus.WAITING
    items.insert(0, "x")  # the code (or what it read outside a step) changed meanwhile
    await app.asignal("sh", "go")
    failed = await app.aresult("sh")
    assert failed.status is tether.RunStatus.FAILED and failed.record.last_error is not None
    assert "other items than when the run first came here (3 items then, 4 now)" in (
        failed.record.last_error.message
    )
    items.pop(0)  # the same items again: the run is rerun from its start and completes
    assert (await app.arerun_from("sh", "for_each.items#1")).status is tether.RunStatus.WAITING
    await app.asignal("sh", "go")
    assert (await app.aresult("sh")).value == ["a->a", "b->b", "c->c"]
