"""Mutexes and leases walked with real processes contending, on both databases.

Processes racing for one key take it one at a time (a ledger of side effects
written from inside the blocks, never interleaved). A holder SIGKILLed on
another machine frees the key when its claim lapses, not before (the waiter's
`FakeClock` is moved up to that instant and past it). A live holder whose run
was taken over (its owner claim lapsed) is fenced: its next step is refused and
its release frees nothing of the new holder's. A lease holder whose lease
lapsed and was taken can neither renew nor release it. Keys are exact text:
unicode and long keys work, keys that only look alike are distinct, and empty
or unstorable keys are refused saying why."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tether
from tether import App, FakeClock, Workflow
from tether.store import open_store

from ._env import child_pythonpath

RACER = textwrap.dedent(
    """
    import os, sys, time
    import tether

    url, wid, ledger, gate = sys.argv[1:5]

    def note(what: str) -> None:
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{what} {wid}\\n".encode())
        os.close(fd)

    async def race(wf: tether.Workflow) -> str:
        async with wf.mutex("k", timeout=120, poll=0.01):
            note("enter")
            await wf.step("effect", lambda: note("effect"))
            note("leave")
        return "done"

    app = tether.App(url)
    print("ready", flush=True)
    while not os.path.exists(gate):  # all start at once
        time.sleep(0.001)
    print(app.run(race, workflow_id=wid).value, flush=True)
    app.close()
    """
)


def _child(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env={**os.environ, "PYTHONPATH": child_pythonpath()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_processes_racing_for_one_key_hold_it_one_at_a_time(
    database_url: str, tmp_path: Path
) -> None:
    script, ledger, gate = tmp_path / "racer.py", tmp_path / "ledger", tmp_path / "go"
    script.write_text(RACER)
    store = open_store(database_url)  # migrated before the race, not by the racers
    await store.close()
    names = [f"racer{i}" for i in range(5)]
    procs = [_child(script, database_url, name, str(ledger), str(gate)) for name in names]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        gate.touch()
        for proc in procs:
            out, err = await asyncio.to_thread(proc.communicate, timeout=120)
            assert proc.returncode == 0 and out.strip() == "done", err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    lines = [line.split() for line in ledger.read_text().splitlines()]
    assert len(lines) == 3 * len(names)
    for at in range(0, len(lines), 3):  # each block's three lines together, never interleaved
        (a, who), (b, who2), (c, who3) = lines[at : at + 3]
        assert (a, b, c) == ("enter", "effect", "leave") and who == who2 == who3, lines
    assert sorted(who for what, who in lines if what == "enter") == names
    store = open_store(database_url)
    try:
        row = await store.get_lock("mutex", "k")
    finally:
        await store.close()
    assert row is not None and row.released_at is not None  # the last one let go


ELSEWHERE = textwrap.dedent(
    """
    import sys, threading
    import tether
    import tether._owners

    tether._owners._HOST = "another-machine"  # never judged dead from the test's machine
    never = threading.Event()

    async def hold(wf: tether.Workflow) -> None:
        async with wf.mutex("k", stale_after=10):
            print("holding", flush=True)
            await wf.step("hang", lambda: never.wait())

    tether.App(sys.argv[1], clock=tether.FakeClock()).run(hold, workflow_id="holder")
    """
)


async def test_a_holder_killed_on_another_machine_frees_the_key_when_its_claim_lapses(
    database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "elsewhere.py"
    script.write_text(ELSEWHERE)
    with _child(script, database_url) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        finally:
            proc.kill()
            proc.communicate()
    # the holder's claim runs to 10 s after its fake clock's start, as the waiter's does
    clock = FakeClock()
    waiter = App(database_url, clock=clock)

    async def take(wf: Workflow) -> str:
        async with wf.mutex("k", timeout=0.2):
            return "taken"

    try:
        for n, ahead in enumerate([0.0, 9.9]):
            clock.advance(ahead)
            with pytest.raises(tether.MutexTimeoutError) as caught:
                await waiter.arun(take, workflow_id=f"early{n}")
            assert caught.value.run_id == "holder" and caught.value.parked is False
            assert str(caught.value).startswith("mutex 'k' was not acquired within 0.2s (held by")
            assert "of run 'holder'); raise `timeout=`" in str(caught.value)
        clock.advance(0.2)  # past the claim's expiry: the key is free
        assert (await waiter.arun(take, workflow_id="late")).value == "taken"
    finally:
        await waiter.aclose()


TAKEN_OVER = textwrap.dedent(
    """
    import asyncio, os, sys
    import tether

    def note(what: str) -> None:
        fd = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{what} {os.getpid()}\\n".encode())
        os.close(fd)

    async def hold(wf: tether.Workflow) -> str:
        async with wf.mutex("k", stale_after=10):
            if os.getpid() == int(os.environ["FIRST"]):
                print("holding", flush=True)  # then stalls: its claims are not renewed
                await asyncio.to_thread(sys.stdin.readline)
            await wf.step("after", lambda: note("after"))
        return "done"
    """
)


async def test_a_live_holder_whose_run_was_taken_over_is_fenced(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "taken_over.py").write_text(TAKEN_OVER)
    ledger, script = tmp_path / "ledger", tmp_path / "first.py"
    script.write_text(
        "import os, sys\nos.environ['FIRST'] = str(os.getpid())\n"
        "import tether, taken_over\ntry:\n    tether.App(sys.argv[1], clock=tether.FakeClock())"
        ".run(taken_over.hold, workflow_id='h')\nexcept tether.StaleOwnerError as exc:\n"
        "    print('refused', exc, flush=True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "taken_over", raising=False)
    monkeypatch.setenv("LEDGER", str(ledger))
    monkeypatch.setenv("FIRST", "-1")  # (this process is the second owner)
    import taken_over  # type: ignore[import-not-found]

    clock = FakeClock()
    second = App(database_url, clock=clock)
    second.workflow(taken_over.hold)
    try:
        with subprocess.Popen(
            [sys.executable, str(script), database_url],
            env={**os.environ, "PYTHONPATH": child_pythonpath(tmp_path)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stdout.readline().strip() == "holding"
            with pytest.raises(tether.RunAlreadyRunningError):
                await second.aresume("h")  # its owner's claim has not lapsed
            clock.advance(31)  # it has: the run is taken over, the key with it
            assert (await second.aresume("h")).value == "done"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert out.startswith("refused run 'h': this process no longer owns the run"), err
        # the step after the stall ran once, in this process: the fenced holder's was refused
        assert ledger.read_text().split() == ["after", str(os.getpid())]
        row = await second.store.get_lock("mutex", "k")
        assert row is not None and row.holder.split(":")[1] == str(os.getpid())
        assert row.released_at is not None  # released by its new holder, nothing left behind
    finally:
        await second.aclose()


async def test_a_lease_taken_after_it_lapsed_cannot_be_renewed_or_released_by_its_old_holder(
    database_url: str,
) -> None:
    clock = FakeClock()
    old, new = App(database_url, clock=clock), App(database_url, clock=clock)
    taken, lapsed = asyncio.Event(), asyncio.Event()
    said: list[str] = []

    async def first(wf: Workflow) -> list[str]:
        await wf.touch_lease("L", holder="old", ttl=10)
        taken.set()
        await lapsed.wait()
        refused = []
        for attempt in (
            wf.touch_lease("L", holder="old", ttl=10),
            wf.release_lease("L", holder="old"),
        ):
            with pytest.raises(tether.LeaseConflictError) as caught:
                await attempt
            refused.append(caught.value.current_holder)
            said.append(str(caught.value))
        return refused

    async def second(wf: Workflow) -> str:
        with pytest.raises(tether.LeaseConflictError):
            await wf.touch_lease("L", holder="new", ttl=10)
        clock.advance(10)
        return (await wf.touch_lease("L", holder="new", ttl=10)).holder

    try:
        holding = asyncio.ensure_future(old.arun(first, workflow_id="old"))
        await taken.wait()
        assert (await new.arun(second, workflow_id="new")).value == "new"
        lapsed.set()
        assert (await holding).value == ["new", "new"]
        assert "'old' cannot take it" in said[0]  # a renewal is a take
        assert "'old' cannot release it: it is no longer theirs" in said[1]  # not "take"
        record = await new.aget_record("new")
        assert record.leases["L"].holder == "new"
    finally:
        await old.aclose()
        await new.aclose()


LOOK_ALIKE = [("Straße", "strasse"), ("k", "k "), ("A\u0301", "\u00c1"), ("a", "A"), ("ｋ", "k")]


@pytest.mark.parametrize(("held", "other"), LOOK_ALIKE)
async def test_keys_that_only_look_alike_are_distinct_mutexes(
    app: App, held: str, other: str
) -> None:
    inside, leave = asyncio.Event(), asyncio.Event()

    async def hold(wf: Workflow) -> None:
        async with wf.mutex(held):
            inside.set()
            await leave.wait()

    async def take(wf: Workflow) -> str:
        async with wf.mutex(other, timeout=0):
            return "free"

    async def take_held(wf: Workflow) -> None:
        async with wf.mutex(held, timeout=0):
            pass

    holding = asyncio.ensure_future(app.arun(hold, workflow_id="holder"))
    await inside.wait()
    try:
        assert (await app.arun(take, workflow_id="other")).value == "free"
        with pytest.raises(tether.MutexTimeoutError):  # (the same key is held)
            await app.arun(take_held, workflow_id="same")
    finally:
        leave.set()
        await holding


@pytest.mark.parametrize("key", ["ключ-🔑", "a" * 1000, "é" * 500, "🔑" * 250])
async def test_unicode_and_long_keys_are_held_and_let_go_as_given(app: App, key: str) -> None:
    async def hold(wf: Workflow) -> str:
        async with wf.mutex(key, timeout=0):
            await wf.step("inside", lambda: None)
        return "left"

    assert (await app.arun(hold, workflow_id="w")).value == "left"
    row = await app.store.get_lock("mutex", key)
    assert row is not None and row.key == key and row.released_at is not None


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "mutex key must be a non-empty string, got ''"),
        ("   ", "mutex key must be a non-empty string"),
        ("k\x00", "contains a NUL character or a lone surrogate"),
        ("\ud800", "contains a NUL character or a lone surrogate"),
        ("a" * 1001, "is 1001 bytes long; keep it within 1000 bytes"),
        ("é" * 501, "is 1002 bytes long; keep it within 1000 bytes"),
    ],
)
async def test_an_empty_or_unstorable_key_is_refused_saying_why(
    app: App, key: str, says: str
) -> None:
    async def hold(wf: Workflow) -> None:
        async with wf.mutex(key):
            pass

    with pytest.raises(tether.InvalidArgumentError, match=says.replace("(", r"\(")):
        await app.arun(hold, workflow_id="w")
    assert await app.store.get_lock("mutex", key.replace("\x00", "").replace("\ud800", "")) is None
