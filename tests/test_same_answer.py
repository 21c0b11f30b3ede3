"""Same code, same answer: a finished run is an answer, one owner per run,
mutexes that belong to the run, leases exclusive across runs, undo and retry."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import tether
from tether import App, ErrorRecord, FakeClock, RetryPolicy, RunStatus, StepContext, Workflow
from tether.testing import eventually_sync

from ._sql import execute


async def test_a_failed_run_answers_with_its_error_again(app: App) -> None:
    class LocalError(Exception):  # defined here: its class cannot be found by name later
        pass

    calls: list[str] = []

    async def builtin_error(wf: Workflow) -> None:
        calls.append("ran")
        raise KeyError("missing")

    async def local_error(wf: Workflow) -> None:
        raise LocalError("gone")

    with pytest.raises(KeyError):
        await app.arun(builtin_error, workflow_id="f1")
    with pytest.raises(KeyError, match="missing"):  # the same type, not run again
        await app.arun(builtin_error, workflow_id="f1")
    assert calls == ["ran"]

    with pytest.raises(LocalError):
        await app.arun(local_error, workflow_id="f2")
    with pytest.raises(tether.RunFailedError, match="LocalError: gone") as info:
        await app.arun(local_error, workflow_id="f2")
    assert info.value.error_type == "LocalError"


async def test_if_running_wait_awaits_the_live_owner(database_url: str, clock: FakeClock) -> None:
    first = App(database_url, clock=clock)
    second = App(database_url, clock=clock)
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def flow(wf: Workflow) -> str:
        async def slow() -> str:
            entered.set()
            await gate.wait()
            return "from the first"

        return await wf.step("slow", slow)

    try:
        driving = asyncio.ensure_future(first.arun(flow, workflow_id="shared"))
        await entered.wait()
        with pytest.raises(tether.RunAlreadyRunningError):
            await second.arun(flow, workflow_id="shared")
        waiting = asyncio.ensure_future(second.arun(flow, workflow_id="shared", if_running="wait"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.set()
        assert (await driving).value == "from the first"
        assert (await waiting).value == "from the first"
        with pytest.raises(tether.InvalidArgumentError, match="if_running"):
            await second.arun(flow, workflow_id="shared", if_running="steal")
    finally:
        await first.aclose()
        await second.aclose()


async def test_running_a_function_registers_it_so_a_signal_resumes_it(app: App) -> None:
    async def plain(wf: Workflow) -> str:  # never decorated with @app.workflow
        who = await wf.wait_for_signal("go")
        return f"hi {who}"

    assert (await app.arun(plain, workflow_id="p1")).status is RunStatus.WAITING
    assert await app.asignal("p1", "go", "ada") is True
    assert (await app.aresult("p1", timeout=10)).value == "hi ada"


async def test_leases_are_exclusive_across_runs_unless_scoped_to_the_run(app: App) -> None:
    async def take(wf: Workflow, args: dict[str, str]) -> str:
        await wf.touch_lease("batch-slot", holder=args["holder"], ttl=60, scope=args["scope"])
        return args["holder"]

    await app.arun(take, {"holder": "bot-a", "scope": "global"}, workflow_id="l1")
    with pytest.raises(tether.LeaseConflictError, match="bot-a"):
        await app.arun(take, {"holder": "bot-b", "scope": "global"}, workflow_id="l2")
    # kept inside one run: another run may hold its own
    await app.arun(take, {"holder": "bot-a", "scope": "run"}, workflow_id="l3")
    assert (await app.arun(take, {"holder": "bot-b", "scope": "run"}, workflow_id="l4")).value == (
        "bot-b"
    )
    assert set((await app.aget_record("l1")).leases) == {"batch-slot"}
    assert (await app.aget_record("l4")).leases["batch-slot"].holder == "bot-b"
    with pytest.raises(tether.InvalidArgumentError, match="lease scope"):
        await app.arun(take, {"holder": "x", "scope": "galaxy"}, workflow_id="l5")


async def test_compensations_take_what_they_declare(app: App) -> None:
    undone: list[Any] = []

    def nothing() -> None:
        undone.append("nothing")

    def result_only(value: int) -> None:
        undone.append(("result", value))

    async def with_context(ctx: StepContext, value: int) -> None:
        undone.append((ctx.name, value))

    async def flow(wf: Workflow) -> None:
        await wf.step("a", lambda: 1, compensate=nothing)
        await wf.step("b", lambda: 2, compensate=result_only)
        await wf.step("c", lambda: 3, compensate=with_context)
        raise RuntimeError("later failure")

    with pytest.raises(RuntimeError):
        await app.arun(flow, workflow_id="comp")
    assert undone == [("compensate:c", 3), ("result", 2), "nothing"]
    assert (await app.aget_run("comp")).status is RunStatus.COMPENSATED


async def test_cancel_with_compensation_and_nothing_to_undo_stays_cancelled(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.wait_for_signal("never")

    await app.arun(flow, workflow_id="c1")
    await app.acancel("c1", "not needed", compensate=True)
    for _ in range(200):
        if (await app.aget_run("c1")).cancel_requested is None:
            break
        await asyncio.sleep(0.01)
    run = await app.aget_run("c1")
    assert run.status is RunStatus.CANCELLED and run.cancel_requested is None


async def test_rerun_from_retries_a_finished_run_after_a_fix(app: App) -> None:
    calls: list[str] = []
    broken = True

    async def flow(wf: Workflow) -> str:
        await wf.step("fetch", lambda: calls.append("fetch"))

        def parse() -> str:
            calls.append("parse")
            if broken:
                raise ValueError("bad parser")
            return "parsed"

        out = await wf.step("parse", parse)
        await wf.step("save", lambda: calls.append("save"))
        return out

    with pytest.raises(ValueError):
        await app.arun(flow, workflow_id="rr")
    broken = False  # the fix
    result = await app.arerun_from("rr", "parse")
    assert result.value == "parsed"
    assert calls == ["fetch", "parse", "parse", "save"]  # fetch kept from the record
    again = await app.arerun_from("rr", "save")
    assert again.value == "parsed" and calls[-1] == "save" and calls.count("parse") == 2
    with pytest.raises(tether.InvalidArgumentError, match="no step"):
        await app.arerun_from("rr", "nope")

    async def parked(wf: Workflow) -> None:
        await wf.wait_for_signal("go")

    await app.arun(parked, workflow_id="still-waiting")
    with pytest.raises(tether.InvalidArgumentError, match="has ended"):
        await app.arerun_from("still-waiting", "x")


async def test_non_retryable_errors_fail_the_step_at_once(app: App) -> None:
    attempts: list[int] = []

    async def flow(wf: Workflow) -> None:
        def bad(ctx: StepContext) -> None:
            attempts.append(ctx.attempt)
            raise ValueError("a bad request")

        policy = RetryPolicy(attempts=5, backoff=0, non_retryable=(ValueError,))
        await wf.step("call", bad, retry=policy)

    with pytest.raises(ValueError):
        await app.arun(flow, workflow_id="nr")
    assert attempts == [1]
    with pytest.raises(tether.InvalidArgumentError, match="non_retryable"):
        RetryPolicy(non_retryable=("ValueError",))  # type: ignore[arg-type]


class LookupFailed(Exception):
    """Found by name when the step's failure is replayed (a module-level class)."""


@pytest.mark.parametrize(
    "policy",
    [RetryPolicy(attempts=5, backoff=0, non_retryable=(LookupFailed,)), RetryPolicy(attempts=2)],
    ids=["not-retryable", "attempts-used-up"],
)
async def test_a_failed_step_caught_by_type_replays_as_that_type_and_never_runs_again(
    app: App, policy: RetryPolicy
) -> None:
    calls: list[int] = []

    async def flow(wf: Workflow) -> str:
        def lookup(ctx: StepContext) -> str:
            calls.append(ctx.attempt)
            raise LookupFailed("no such user")

        try:
            who = await wf.step("lookup", lookup, retry=policy)
        except LookupFailed as exc:
            who = f"fallback after {exc}"
        await wf.wait_for_signal("go")
        return who

    assert (await app.arun(flow, workflow_id="fb")).status is RunStatus.WAITING
    ran = list(calls)
    await app.asignal("fb", "go")
    # before: a non-retryable failure ran the step again on replay (its side effect
    # twice), and a used-up one raised StepFailedError, which the except did not catch
    done = await app.arun(flow, workflow_id="fb")
    assert done.value == "fallback after no such user" and calls == ran


async def test_a_replayed_failure_whose_class_is_gone_is_a_step_failed_error(app: App) -> None:
    class Local(Exception):  # defined here: its class cannot be found by name later
        pass

    async def flow(wf: Workflow) -> str:
        def lookup() -> str:
            raise Local("gone")

        try:
            await wf.step("lookup", lookup)
        except Local:
            pass
        except tether.StepFailedError as exc:
            return f"step failed: {exc.error_type}"
        await wf.wait_for_signal("go")
        return "first"

    await app.arun(flow, workflow_id="lc")
    await app.asignal("lc", "go")
    assert (await app.arun(flow, workflow_id="lc")).value == "step failed: Local"


class OutOfStock(Exception):
    def __init__(self, sku: str, left: int) -> None:
        super().__init__(sku, left)
        self.sku = sku


async def test_a_replayed_error_has_the_first_runs_args(app: App) -> None:
    seen: list[object] = []

    async def flow(wf: Workflow) -> None:
        def missing() -> None:
            raise KeyError("sku-1")

        def empty() -> None:
            raise OutOfStock("sku-2", 0)

        for name, fn in (("missing", missing), ("empty", empty)):
            try:
                await wf.step(name, fn)
            except (KeyError, OutOfStock) as exc:
                seen.append((exc.args, str(exc)))
        await wf.wait_for_signal("go")

    await app.arun(flow, workflow_id="args")
    await app.asignal("args", "go")
    await app.arun(flow, workflow_id="args")
    # before: the replay's KeyError held "'sku-1'" (its str, quoted again)
    first, replayed = seen[:2], seen[2:]
    assert replayed == first == [(("sku-1",), "'sku-1'"), (("sku-2", 0), "('sku-2', 0)")]


async def test_a_step_answered_by_its_idempotency_key_is_undone_once(app: App) -> None:
    undone: list[str] = []

    async def flow(wf: Workflow) -> None:
        for _ in range(2):  # the job listed twice: applied once
            await wf.step(
                "apply", lambda: "acme:sre", idempotency_key="acme:sre", compensate=undone.append
            )
        raise RuntimeError("later failure")

    with pytest.raises(RuntimeError):
        await app.arun(flow, workflow_id="idem-undo")
    assert undone == ["acme:sre"]  # before: withdrawn twice


async def test_a_recorded_result_the_changed_code_cannot_read_names_step_and_way_out(
    database_url: str,
) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("fetch", lambda: {"id": 1})
        await wf.wait_for_signal("go")

    async with App(database_url) as old:
        await old.arun(flow, workflow_id="edited")

    async def edited(wf: Workflow) -> int:
        def fetch() -> int:
            return 1

        return await wf.step("fetch", fetch)  # the same name, now declared an int

    async with App(database_url) as new:
        new.workflow(name=(await new.aget_run("edited")).workflow_name)(edited)
        await new.asignal("edited", "go")
        expected = (r"step 'fetch' of run 'edited' recorded a result that does not fit its "
                    r"declared type now: .*app\.rerun_from\('edited', 'fetch'\)")  # fmt: skip
        with pytest.raises(tether.TetherError, match=expected):  # before: a ValidationError
            await new.aresume("edited")


async def test_wait_for_token_takes_a_timeout(app: App, clock: FakeClock) -> None:
    async def flow(wf: Workflow) -> str:
        token = await wf.create_token()
        return str(await wf.wait_for_token(token, timeout=60, default="timed out"))

    assert (await app.arun(flow, workflow_id="tok")).status is RunStatus.WAITING
    clock.advance(30)
    assert await app.afire_due_timers() == []
    clock.advance(31)
    assert await app.afire_due_timers() == ["tok"]
    assert (await app.aresult("tok", timeout=10)).value == "timed out"


MUTEX_CRASH = """
import os, sys, time
import tether

app = tether.App(sys.argv[1])

async def flow(wf: tether.Workflow) -> str:
    async with wf.mutex("company:role"):
        def work() -> str:
            if os.environ.get("CRASH"):
                open(sys.argv[2], "w").close()
                time.sleep(600)  # killed here, holding the mutex
            return "applied"
        return await wf.step("apply", work)

print(app.run(flow, workflow_id="bot-1").value)
"""


def test_a_resumed_run_takes_back_the_mutex_its_dead_incarnation_held(
    tmp_path: Any, database_url: str
) -> None:
    import os
    import signal
    import subprocess
    import sys

    script, marker = tmp_path / "bot.py", tmp_path / "in-step"
    script.write_text(MUTEX_CRASH)
    args = [sys.executable, str(script), database_url, str(marker)]
    proc = subprocess.Popen(args, env={**os.environ, "CRASH": "1"})
    try:
        eventually_sync(_reached(marker, proc), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "applied"
    app = App(database_url)
    try:
        events = [e.type for e in app.get_record("bot-1").events]
    finally:
        app.close()
    # taken back at once (not after its 30 s claim lapsed)
    assert "mutex.taken_back" in events


async def test_steps_inside_for_each_are_named_by_item_index(app: App) -> None:
    calls: list[int] = []

    async def flow(wf: Workflow) -> list[str]:
        async def item(n: int) -> str:
            async def work() -> str:
                calls.append(n)
                await asyncio.sleep(0.001 * (5 - n))  # later items finish first
                return f"item {n}"

            return await wf.step("work", work)

        summary = await wf.for_each(range(5), item, max_parallel=5)
        await wf.wait_for_signal("again")
        return [r.value for r in summary.results]  # type: ignore[misc]

    await app.arun(flow, workflow_id="fe")
    await app.asignal("fe", "again")
    result = await app.arun(flow, workflow_id="fe")
    assert result.value == [f"item {n}" for n in range(5)]
    assert sorted(calls) == [0, 1, 2, 3, 4]  # the replay ran nothing again
    steps = {k: v.result for k, v in result.record.steps.items()}
    assert steps.pop("for_each.items#1")["items"] == 5  # the items' fingerprint, kept
    assert steps == {f"work[{n}]": f"item {n}" for n in range(5)}


async def test_runs_recorded_before_the_rule_keep_their_rule(app: App, clock: FakeClock) -> None:
    """A history written the old way (steps by name alone) replays the old way."""
    from tether.store import NewRun

    await app.store.create_run(
        NewRun(workflow_id="legacy", workflow_name="agent", state="null", step_rule=1),
        clock.now(),
    )
    calls: list[int] = []

    @app.workflow(name="agent")
    async def agent(wf: Workflow) -> list[str]:
        def llm(i: int) -> str:
            calls.append(i)
            return f"answer {i}"

        return [await wf.step("call-llm", lambda i=i: llm(i)) for i in range(3)]

    legacy = await app.arun(agent, workflow_id="legacy")
    assert legacy.value == ["answer 0"] * 3 and calls == [0]  # as it was recorded then
    assert list(legacy.record.steps) == ["call-llm"]
    fresh = await app.arun(agent, workflow_id="fresh")
    assert fresh.value == ["answer 0", "answer 1", "answer 2"]
    assert (await app.aget_run("fresh")).step_rule == 5


async def test_a_step_timeout_ends_the_attempt_and_the_policy_retries(app: App) -> None:
    import threading

    attempts: list[int] = []
    release = threading.Event()

    async def flow(wf: Workflow) -> str:
        async def hung(ctx: StepContext) -> str:
            attempts.append(ctx.attempt)
            if ctx.attempt == 1:
                await asyncio.Event().wait()  # a model call that never answers
            return "answered"

        first = await wf.step("llm", hung, timeout=0.05, retry=RetryPolicy(attempts=2, backoff=0))

        def stuck_browser() -> str:
            release.wait(10)
            return "late"

        try:
            await wf.step("browser", stuck_browser, timeout=0.05)
        except tether.StepTimeoutError as exc:
            return f"{first}; browser gave up after {exc.timeout}s"
        return "unreachable"

    try:
        result = await app.arun(flow, workflow_id="st")
    finally:
        release.set()
    assert result.value == "answered; browser gave up after 0.05s"
    assert attempts == [1, 2]
    steps = result.record.steps
    assert steps["llm"].attempts == 2 and steps["browser"].status.value == "failed"
    assert (steps["browser"].error or ErrorRecord("", "")).type == "StepTimeoutError"
    with pytest.raises(tether.InvalidArgumentError, match="timeout"):
        await app.arun(_bad_timeout, workflow_id="st-bad")


async def _bad_timeout(wf: Workflow) -> None:
    await wf.step("x", lambda: 1, timeout=-1)


CHARGE = """
import os, sys, time
import tether

app = tether.App(sys.argv[1])

async def checkout(wf: tether.Workflow) -> str:
    def charge() -> str:
        with open(sys.argv[2], "a") as f:
            f.write(f"charged by {os.getpid()}\\n")
        open(sys.argv[3], "w").close()
        for _ in range(3000):  # the card network is slow: until the test says so
            if os.path.exists(sys.argv[3] + ".go"):
                break
            time.sleep(0.01)
        return "ok"
    return await wf.step("charge", charge)

try:
    print(app.run(checkout, workflow_id="order-1").value)
except tether.RunAlreadyRunningError as exc:
    print(f"busy: {exc.owner}")
"""


def test_two_processes_starting_one_id_charge_once(tmp_path: Any, database_url: str) -> None:
    import subprocess
    import sys

    script, ledger, marker = tmp_path / "pay.py", tmp_path / "ledger", tmp_path / "in-charge"
    script.write_text(CHARGE)
    args = [sys.executable, str(script), database_url, str(ledger), str(marker)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        eventually_sync(_reached(marker, first), timeout=60)
        second = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        (tmp_path / "in-charge.go").touch()
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert out.strip() == "ok"
    assert second.returncode == 0 and second.stdout.startswith("busy: "), second.stderr
    assert len(ledger.read_text().splitlines()) == 1  # the card was charged once


def _reached(marker: Any, proc: Any) -> Any:
    """A condition: the child process got to `marker` (an error if it exited first)."""

    def reached() -> bool:
        if proc.poll() is not None:
            raise ChildProcessError(f"the child exited early ({proc.returncode})")
        return bool(marker.exists())

    return reached


async def test_rerun_from_says_why_a_run_cannot_go_round_again_and_what_to_do(app: App) -> None:
    """Before, every refusal said "wait for it, or cancel it first", advice that a
    cancelled or compensated run cannot follow; a missing step named no recorded one."""

    async def waits(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)
        await wf.wait_for_signal("go")

    async def declines(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=lambda r: None)
        raise RuntimeError("declined")

    async def keyed(wf: Workflow) -> None:
        for who in ("acme", "initech"):
            await wf.step("apply", lambda: 1, idempotency_key=who)

    await app.arun(waits, workflow_id="w1")
    with pytest.raises(tether.InvalidArgumentError, match=r"is waiting.*wait for it to end"):
        await app.arerun_from("w1", "reserve")
    await app.acancel("w1", "not needed")
    with pytest.raises(tether.InvalidArgumentError, match=r"was cancelled.*start a new run"):
        await app.arerun_from("w1", "reserve")
    with pytest.raises(RuntimeError):
        await app.arun(declines, workflow_id="d1")
    with pytest.raises(tether.InvalidArgumentError, match="compensated: its compensations undid"):
        await app.arerun_from("d1", "reserve")
    await app.arun(keyed, workflow_id="k1")
    with pytest.raises(tether.InvalidArgumentError) as caught:
        await app.arerun_from("k1", "apply")
    assert "recorded under that name: 'apply@acme', 'apply@initech'" in str(caught.value)


async def test_code_reading_the_state_before_updating_it_sees_on_a_resume_what_it_saw(
    app: App,
) -> None:
    """A resume replays the run's code from its first line: `wf.state` there is the
    state the run started with, not the latest, or the code takes another branch."""
    seen: list[Any] = []

    @app.workflow
    async def counter(wf: Workflow) -> list[Any]:
        seen.append(wf.state)
        first = wf.state
        await wf.update_state(lambda s: s + 1)
        await wf.wait_for_signal("go")
        return [first, wf.state]

    parked = await app.arun(counter, workflow_id="c1", initial_state=10)
    assert parked.status is RunStatus.WAITING
    await app.asignal("c1", "go", None)
    done = await app.aresult("c1", timeout=10)
    assert seen == [10, 10] and done.value == [10, 11]


async def test_for_each_items_replaying_their_state_writes_out_of_order_keep_the_last(
    app: App,
) -> None:
    """Items wrote the state in the order 2, 1, 0 (each waited in a step for the one
    before); a resume replays them 0, 1, 2 (their steps answer at once): the state
    after the fan-out is still the last written, and an update after it builds on
    that, losing no increment."""
    gates = [asyncio.Event() for _ in range(3)]

    @app.workflow
    async def tally(wf: Workflow) -> list[Any]:
        async def item(i: int) -> int:
            await wf.step("work", gates[i].wait)  # replayed: answers at once
            written = await wf.update_state(lambda s: [*s, i])
            if i:
                gates[i - 1].set()
            return len(written)

        gates[2].set()
        order = (await wf.for_each([0, 1, 2], item, max_parallel=3)).values
        after = wf.state
        await wf.wait_for_signal("go")
        await wf.update_state(lambda s: [*s, "end"])
        return [order, after, wf.state]

    parked = await app.arun(tally, workflow_id="t1", initial_state=[])
    assert parked.status is RunStatus.WAITING
    await app.asignal("t1", "go", None)
    done = await app.aresult("t1", timeout=10)
    assert done.value == [[3, 2, 1], [2, 1, 0], [2, 1, 0, "end"]]


async def test_a_run_recorded_before_the_state_history_replays_as_it_did(
    app: App, database_url: str
) -> None:
    """No initial state or write order kept (an older tether wrote the run): a resume
    starts from the latest state, as it did then, and still ends where it should."""
    seen: list[Any] = []

    @app.workflow
    async def legacy(wf: Workflow) -> Any:
        seen.append(wf.state)
        await wf.update_state(lambda s: s + 1)
        await wf.wait_for_signal("go")
        return await wf.update_state(lambda s: s * 10)

    await app.arun(legacy, workflow_id="old", initial_state=1)
    execute(database_url, "UPDATE runs SET initial_state = NULL WHERE id = 'old'")
    execute(database_url, "UPDATE steps SET seq = NULL WHERE run_id = 'old'")
    await app.asignal("old", "go", None)
    assert (await app.aresult("old", timeout=10)).value == 20
    assert seen == [1, 2]  # the latest state stood in for the one it started with


async def test_rerun_from_forgets_the_values_recorded_since_and_the_state_they_made(
    app: App,
) -> None:
    """A state update (and a uuid) recorded after the step rerun from is made anew from
    the fixed step's result, not answered with the one the broken result made."""
    version = {"v": 1}
    parses: list[int] = []

    def parse() -> str:
        parses.append(version["v"])
        if version["v"] == 3:
            raise ValueError("broken again")
        return f"v{version['v']}"

    @app.workflow
    async def parsed(wf: Workflow) -> list[Any]:
        out = await wf.step("parse", parse)
        await wf.update_state(lambda s: [*s, out])
        stamp = await wf.uuid()
        await wf.step("save", lambda: None)
        return [wf.state, stamp]

    first = (await app.arun(parsed, workflow_id="rv", initial_state=["kept"])).value
    version["v"] = 2
    again = (await app.arerun_from("rv", "parse")).value
    assert (first[0], again[0]) == (["kept", "v1"], ["kept", "v2"])
    assert again[1] != first[1]  # recorded after the step: drawn anew
    kept = (await app.arerun_from("rv", "save")).value
    assert kept == again  # recorded before the step: kept
    assert parses == [1, 2]  # "save" as rerun last time, not as first recorded
    version["v"] = 3
    with pytest.raises(ValueError):
        await app.arerun_from("rv", "parse")
    stored = (await app.aget_run("rv")).state
    assert stored is not None and json.loads(stored) == ["kept"]  # as of its kept updates
