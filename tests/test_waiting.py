"""Runs that park and resume: signals, events, tokens, timers, children, cancel, sagas."""

from __future__ import annotations

import asyncio
import gc
from datetime import datetime, timedelta
from typing import Any

import pytest

import tether
from tether import App, FakeClock, RunStatus, WaitStatus, Workflow
from tether.testing import eventually


async def test_signal_parks_then_resumes(app: App) -> None:
    calls: list[str] = []

    @app.workflow
    async def approve(wf: Workflow, doc: str) -> str:
        await wf.step("draft", lambda: calls.append("draft"))
        decision = await wf.wait_for_signal("approval")
        await wf.step("publish", lambda: calls.append("publish"))
        return f"{doc}:{decision['by']}"

    res = await app.arun(approve, "doc-1", workflow_id="hitl")
    assert res.status is RunStatus.WAITING and res.value is None
    waits = await app.alist_waits("hitl")
    assert [(w.kind.value, w.name, w.status) for w in waits] == [
        ("signal", "approval", WaitStatus.PENDING)
    ]
    assert await app.asignal("hitl", "approval", {"by": "ada"}) is True
    done = await app.aresult("hitl", timeout=10)
    assert done.status is RunStatus.COMPLETED
    assert done.value == "doc-1:ada"
    assert calls == ["draft", "publish"]  # draft was not repeated on resume
    types = [e.type for e in done.record.events]
    assert "workflow.waiting" in types and "wait.resolved" in types


async def test_signal_sent_before_the_wait_is_kept(app: App) -> None:
    gate = asyncio.Event()

    @app.workflow
    async def late(wf: Workflow) -> object:
        await wf.step("slow", gate.wait)
        return await wf.wait_for_signal("go")

    task = asyncio.ensure_future(app.arun(late, workflow_id="early-signal"))
    while True:
        run = await app.store.get_run("early-signal")
        if run is not None and run.status is RunStatus.RUNNING:
            break
        await asyncio.sleep(0.001)
    assert await app.asignal("early-signal", "go", {"n": 1}) is False  # nobody waiting yet: kept
    gate.set()
    res = await task
    assert res.status is RunStatus.COMPLETED and res.value == {"n": 1}


async def test_event_matched_by_payload_filter(app: App) -> None:
    @app.workflow
    async def batch(wf: Workflow) -> object:
        return await wf.wait_for_event("batch.done", match={"batch.id": "b-7"})

    await app.arun(batch, workflow_id="ev")
    assert await app.asend_event("batch.done", {"batch": {"id": "b-1"}}) == []
    assert (await app.aget_run("ev")).status is RunStatus.WAITING
    assert await app.asend_event("batch.done", {"batch": {"id": "b-7"}, "rows": 3}) == ["ev"]
    res = await app.aresult("ev", timeout=10)
    assert res.value == {"batch": {"id": "b-7"}, "rows": 3}


async def test_event_sent_before_wait_but_after_start_is_kept(app: App) -> None:
    @app.workflow
    async def flow(wf: Workflow) -> object:
        await wf.step("kick", lambda: None)
        return await wf.wait_for_event("hook", match={"k": 1})

    # the event arrives after the run exists but before it reaches its wait
    await app.store.create_run(
        tether.store.NewRun("ev-early", flow.__qualname__, state="null"), app.clock.now()
    )
    await app.asend_event("hook", {"k": 1})
    res = await app.arun(flow, workflow_id="ev-early")
    assert res.status is RunStatus.COMPLETED and res.value == {"k": 1}


async def test_token_completed_by_id(app: App) -> None:
    tokens: list[str] = []

    @app.workflow
    async def review(wf: Workflow) -> object:
        token = await wf.create_token()
        await wf.step("notify", lambda: tokens.append(token))
        return await wf.wait_for_token(token)

    res = await app.arun(review, workflow_id="tok")
    assert res.status is RunStatus.WAITING
    assert len(tokens) == 1
    assert await app.acomplete_token(tokens[0], {"ok": True}) == "tok"
    done = await app.aresult("tok", timeout=10)
    assert done.value == {"ok": True}
    assert tokens == [tokens[0]]  # replay reused the recorded token
    with pytest.raises(tether.InvalidArgumentError, match="already resolved"):
        await app.acomplete_token(tokens[0], {})
    with pytest.raises(tether.TokenNotFoundError):
        await app.acomplete_token("no-such-token")


async def test_durable_sleep_on_fake_clock(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def nap(wf: Workflow) -> str:
        await wf.sleep(3600)
        return "rested"

    start = clock.now()
    res = await app.arun(nap, workflow_id="nap")
    assert res.status is RunStatus.WAITING
    assert await app.afire_due_timers() == []  # not due yet
    clock.advance(3599)
    assert await app.afire_due_timers() == []
    clock.advance(2)
    assert await app.afire_due_timers() == ["nap"]
    done = await app.aresult("nap", timeout=10)
    assert done.value == "rested"
    assert clock.now() - start == timedelta(seconds=3601)


async def test_durations_may_be_timedeltas(app: App, clock: FakeClock) -> None:
    # "wait two days for a person" was refused: every duration had to be seconds
    # (inline_wait=0: the driver that parks it on its sleep must not wait out the
    # last second itself, on the fake clock, once the test has moved the clock on)
    @app.workflow(inline_wait=0)
    async def patient(wf: Workflow) -> list[Any]:
        async with wf.mutex("desk", timeout=timedelta(seconds=5), stale_after=timedelta(1)):
            lease = await wf.touch_lease("desk", holder="ada", ttl=timedelta(hours=1))
        got = await wf.step("quick", lambda: "ok", timeout=timedelta(minutes=1))
        ok = await wf.wait_for_signal("approve", timeout=timedelta(days=2), default="no")
        await wf.sleep(timedelta(hours=1))
        summary = await wf.for_each([1], lambda i: i, mutex_timeout=timedelta(minutes=5))
        left = (lease.expires_at - lease.acquired_at).total_seconds()
        return [got, ok, left, summary.values]

    assert (await app.arun(patient, workflow_id="td")).status is RunStatus.WAITING
    clock.advance(2 * 86400 - 1)
    assert await app.afire_due_timers() == []  # two days, not two seconds
    assert (await app.aget_run("td")).status is RunStatus.WAITING
    clock.advance(2)
    await app.afire_due_timers()  # (or this App's own wake-up for its wait, first)

    async def on_its_sleep() -> bool:
        waits = await app.alist_waits("td")
        return any(w.kind.value == "timer" and w.status is WaitStatus.PENDING for w in waits)

    await eventually(on_its_sleep)
    clock.advance(3599)
    assert await app.afire_due_timers() == []  # an hour, not a second
    assert await on_its_sleep()
    clock.advance(2)
    await app.afire_due_timers()  # (or this App's own wake-up for its timer, first)
    done = await app.aresult("td", timeout=timedelta(seconds=10))
    assert done.value == ["ok", "no", 3600.0, [1]]


async def test_a_negative_timedelta_is_refused_saying_so(app: App) -> None:
    @app.workflow
    async def hasty(wf: Workflow) -> None:
        await wf.wait_for_signal("go", timeout=timedelta(seconds=-1))

    with pytest.raises(tether.InvalidArgumentError, match=r"or a timedelta, got -1\.0"):
        await app.arun(hasty, workflow_id="neg")


async def test_a_result_timed_out_says_when_nothing_drives_the_run(app: App) -> None:
    # waiting for a run that no process drives timed out saying only "still pending"
    @app.workflow(name="queued")
    async def queued(wf: Workflow) -> int:
        return 1

    wid = await app.asubmit(queued, queue="nobody-serves")
    with pytest.raises(TimeoutError, match="no worker serves its queue 'nobody-serves'"):
        await app.aresult(wid, timeout=0)


async def test_brief_sleep_simply_waits_in_run(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def blink(wf: Workflow) -> str:
        await wf.sleep(2)
        return "awake"

    res = await app.arun(blink, workflow_id="blink")
    assert res.status is RunStatus.COMPLETED and res.value == "awake"
    assert clock.slept == [2.0]


async def test_a_workflow_sets_its_own_inline_wait(app: App, clock: FakeClock) -> None:
    # only the App had the setting: a workflow whose runs must park on every timer (an
    # issue run's 1 s retry, which a dispatcher's tick must not sit through) could not
    @app.workflow(inline_wait=0)
    async def parks(wf: Workflow) -> str:
        await wf.sleep(2)
        return "awake"

    @app.workflow(inline_wait=120)
    async def waits_a_minute(wf: Workflow) -> str:
        await wf.sleep(60)
        return "awake"

    assert (await app.arun(parks, workflow_id="parks")).status is RunStatus.WAITING
    assert clock.slept == []
    assert (await app.arun(waits_a_minute, workflow_id="minute")).value == "awake"
    assert clock.slept == [60.0]
    with pytest.raises(tether.InvalidArgumentError, match="inline_wait must be a number"):
        app.workflow(inline_wait=-1)(parks)


async def test_wait_timeout_raises_or_returns_default(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def impatient(wf: Workflow) -> str:
        try:
            await wf.wait_for_signal("reply", timeout=60)
        except tether.WaitTimeout:
            return "gave up"
        return "answered"

    @app.workflow
    async def lenient(wf: Workflow) -> object:
        return await wf.wait_for_event("never", timeout=60, default="fallback")

    assert (await app.arun(impatient, workflow_id="t1")).status is RunStatus.WAITING
    assert (await app.arun(lenient, workflow_id="t2")).status is RunStatus.WAITING
    clock.advance(61)
    assert sorted(await app.afire_due_timers()) == ["t1", "t2"]
    assert (await app.aresult("t1", timeout=10)).value == "gave up"
    assert (await app.aresult("t2", timeout=10)).value == "fallback"


async def test_child_that_waits_resumes_its_parent(app: App) -> None:
    @app.workflow
    async def child(wf: Workflow, n: int) -> int:
        bonus = await wf.wait_for_signal("bonus")
        return n * 10 + int(bonus)

    @app.workflow
    async def parent(wf: Workflow) -> int:
        value = await wf.child(child, 4, workflow_id="kid")
        return value + 1

    res = await app.arun(parent, workflow_id="mom")
    assert res.status is RunStatus.WAITING
    kid = await app.aget_run("kid")
    assert kid.status is RunStatus.WAITING and kid.parent_id == "mom"
    await app.asignal("kid", "bonus", 2)
    assert (await app.aresult("kid", timeout=10)).value == 42
    done = await app.aresult("mom", timeout=10)
    assert done.status is RunStatus.COMPLETED and done.value == 43


async def test_a_child_awaited_in_a_for_each_item_names_its_steps_from_its_own_root(
    app: App,
) -> None:
    """Driven from the item, the child's step was ``a[0]`` and its wait ``go[0]``;
    woken on its own by the signal, ``a`` and ``go``: it ran its step again and waited
    for a second signal for good (step rule 5)."""
    ran: list[int] = []

    @app.workflow
    async def kid(wf: Workflow, x: int) -> str:
        await wf.step("a", lambda: ran.append(x))
        who = await wf.wait_for_signal("go")
        return f"{x}:{who}"

    @app.workflow
    async def fan(wf: Workflow) -> list[str | None]:
        summary = await wf.for_each([1], lambda x: wf.child(kid, x, workflow_id=f"kid-{x}"))
        return summary.values

    assert (await app.arun(fan, workflow_id="fan")).status is RunStatus.WAITING
    assert await app.asignal("kid-1", "go", "ada") is True
    assert (await app.aresult("kid-1", timeout=10)).value == "1:ada"
    assert (await app.aresult("fan", timeout=10)).value == ["1:ada"]
    assert ran == [1]
    assert list((await app.aget_record("kid-1")).steps) == ["a"]
    assert [w.key for w in await app.alist_waits("kid-1")] == ["signal:go#1"]


async def test_a_child_started_inside_a_step_keeps_its_own_names_and_events(app: App) -> None:
    """Its drive inherited the step's context: its steps were named ``outer/...`` and
    the events it appended went to the parent's step, already recorded: lost."""

    @app.workflow
    async def kid(wf: Workflow) -> str:
        await wf.step("a", lambda: "A")
        await wf.append_event("app.note", "from the child")
        return "done"

    @app.workflow
    async def starter(wf: Workflow) -> str:
        return await wf.step("outer", lambda: wf.start_child(kid, workflow_id="kid-in-step"))

    assert (await app.arun(starter, workflow_id="starter")).value == "kid-in-step"
    done = await app.aresult("kid-in-step", timeout=10)
    assert done.value == "done" and "a" in done.record.steps
    assert not [k for k in done.record.steps if k.startswith("outer")]
    assert [e.message for e in done.record.events if e.type == "app.note"] == ["from the child"]


async def test_a_child_recorded_under_rule_4_is_named_as_it_was_then(app: App) -> None:
    from tether.store import NewRun

    @app.workflow(name="kid4")
    async def kid4(wf: Workflow, x: int) -> int:
        return await wf.step("a", lambda: x)

    @app.workflow(name="fan4")
    async def fan4(wf: Workflow) -> list[int | None]:
        summary = await wf.for_each([1], lambda x: wf.child(kid4, x, workflow_id="kid4"))
        return summary.values

    now = app.clock.now()
    await app.store.create_run(
        NewRun(workflow_id="fan4", workflow_name="fan4", state="null", step_rule=4), now
    )
    await app.store.create_run(
        NewRun(workflow_id="kid4", workflow_name="kid4", input="1", state="null",
               parent_id="fan4", step_rule=4),
        now,
    )  # fmt: skip
    assert (await app.aresume("fan4")).value == [1]
    assert list((await app.aget_record("kid4")).steps) == ["a[0]"]  # as rule 4 named it


async def test_cancelling_a_child_wakes_its_waiting_parent_here(app: App) -> None:
    """The parent is woken to see the child cancelled and continues in this process,
    as for a child that ends (before: it sat pending until someone resumed it)."""

    @app.workflow
    async def child(wf: Workflow) -> int:
        return int(await wf.wait_for_signal("never"))

    @app.workflow
    async def parent(wf: Workflow) -> str:
        try:
            await wf.child(child, workflow_id="kid-c")
        except tether.ChildRunError as exc:
            return f"child {exc.status}"
        return "no"

    assert (await app.arun(parent, workflow_id="mom-c")).status is RunStatus.WAITING
    assert await app.acancel("kid-c", "not needed") == ["kid-c"]
    done = await app.aresult("mom-c", timeout=10)
    assert done.status is RunStatus.COMPLETED and done.value == "child cancelled"


async def test_a_child_id_naming_another_run_is_refused(app: App) -> None:
    """A child's explicit id that names a run of another workflow, of another parent or
    with another input fails the parent clearly (before: that run's result was the
    child's, of whatever type)."""

    @app.workflow(name="neg")
    async def neg(wf: Workflow, x: int) -> int:
        return -x

    @app.workflow(name="kid")
    async def kid(wf: Workflow, x: int) -> int:
        return x * 100

    @app.workflow(name="reuses")
    async def reuses(wf: Workflow, how: str) -> int:
        if how == "twice":
            return await wf.child(kid, 1, workflow_id="k-same") + await wf.child(
                kid, 2, workflow_id="k-same"
            )
        return await wf.child(kid, 1, workflow_id="shared" if how == "other" else "k-top")

    await app.arun(neg, 7, workflow_id="shared")
    await app.arun(kid, 1, workflow_id="k-top")
    for how, match in [
        ("other", "already names a run of workflow 'neg', not 'kid'"),
        ("top", "not a child of run 'p-top'"),
        ("twice", "was started with a different input"),
    ]:
        with pytest.raises(tether.InvalidArgumentError, match=match):
            await app.arun(reuses, how, workflow_id=f"p-{how}")
    assert (await app.aget_run("shared")).output == "-7"  # untouched


async def test_a_wait_key_given_twice_to_different_waits_is_refused(app: App) -> None:
    """Before, the second wait was answered with the first one's payload."""

    @app.workflow(name="keys")
    async def keys(wf: Workflow) -> list[object]:
        a = await wf.wait_for_signal("a", key="same")
        b = await wf.wait_for_signal("b", key="same")
        return [a, b]

    assert (await app.arun(keys, workflow_id="k1")).status is RunStatus.WAITING
    await app.asignal("k1", "a", "A")
    with pytest.raises(tether.InvalidArgumentError, match="'same' already names a signal wait"):
        await app.arun(keys, workflow_id="k1")


async def test_child_completing_inline_returns_at_once(app: App) -> None:
    @app.workflow(name="double")
    async def double(wf: Workflow, n: int) -> int:
        return await wf.step("x2", lambda: n * 2)

    @app.workflow
    async def parent(wf: Workflow) -> list[int]:
        return [await wf.child(double, 1), await wf.child(double, 2)]

    res = await app.arun(parent, workflow_id="p-inline")
    assert res.value == [2, 4]
    assert {r.workflow_id for r in await app.alist_runs()} == {
        "p-inline",
        "p-inline/double#1",
        "p-inline/double#2",
    }


async def test_failed_child_raises_in_parent(app: App) -> None:
    @app.workflow
    async def broken(wf: Workflow) -> None:
        raise ValueError("child broke")

    @app.workflow
    async def parent(wf: Workflow) -> str:
        try:
            await wf.child(broken)
        except tether.ChildRunError as exc:
            return f"{exc.status}:{(exc.error or {}).get('message')}"
        return "no"

    assert (await app.arun(parent, workflow_id="p-fail")).value == "failed:child broke"


async def test_a_rerun_runs_the_children_awaited_after_its_step_again(app: App) -> None:
    # a rerun forgets the steps after the one it names, but a child awaited after it
    # answered from its old run: a child that failed failed the parent again, for good
    fixed: list[bool] = []
    ran: list[str] = []

    @app.workflow(name="first")
    async def first(wf: Workflow) -> str:
        ran.append("first")
        return "kept"

    @app.workflow(name="pick")
    async def pick(wf: Workflow, n: int) -> int:
        ran.append(f"pick {n}")
        if not fixed:
            raise ValueError("not fixed yet")
        return n * 2

    @app.workflow
    async def parent(wf: Workflow) -> str:
        kept = await wf.child(first)
        n = await wf.step("n", lambda: 3)
        got = await wf.child(pick, n)
        last = await wf.step("last", lambda: "done")
        return f"{kept} {got} {last}"

    with pytest.raises(tether.ChildRunError, match="not fixed yet"):
        await app.arun(parent, workflow_id="pr")
    fixed.append(True)
    assert (await app.arerun_from("pr", "n")).value == "kept 6 done"
    assert ran == ["first", "pick 3", "pick 3"]  # the first child answered as recorded
    assert (await app.arerun_from("pr", "last")).value == "kept 6 done"
    assert ran == ["first", "pick 3", "pick 3"]  # both awaited before 'last': kept
    assert (await app.arerun_from("pr", "n")).value == "kept 6 done"
    assert ran == ["first", "pick 3", "pick 3", "pick 3"]
    kids = {r.workflow_id: r.status for r in await app.alist_runs() if r.parent_id == "pr"}
    assert kids == {
        "pr/first#1": RunStatus.COMPLETED,
        "pr/pick#1": RunStatus.FAILED,  # each round's child stays as it ended
        "pr/pick#1@2": RunStatus.COMPLETED,
        "pr/pick#1@4": RunStatus.COMPLETED,
    }


async def test_a_rerun_from_a_failed_childs_wait_takes_that_child_up_where_it_stopped(
    app: App,
) -> None:
    """A rerun from the wait for a child that failed made a new child (``@2``) that did
    all its work again: each step, each paid AI call. The child now goes on from the
    step that failed, its earlier steps kept, and the parent awaits that same child."""
    fixed: list[bool] = []
    ran: list[str] = []

    def b() -> str:
        ran.append("b")
        if not fixed:
            raise ValueError("not fixed yet")
        return "b"

    @app.workflow(name="work")
    async def work(wf: Workflow) -> str:
        a = await wf.step("a", lambda: ran.append("a") or "a")
        return a + await wf.step("b", b)

    @app.workflow
    async def parent(wf: Workflow) -> str:
        before = await wf.step("before", lambda: ran.append("before") or "<")
        got = await wf.child(work)
        return before + got + await wf.step("after", lambda: ran.append("after") or ">")

    with pytest.raises(tether.ChildRunError, match="not fixed yet"):
        await app.arun(parent, workflow_id="pw")
    fixed.append(True)
    assert (await app.arerun_from("pw", "child:pw/work#1")).value == "<ab>"
    assert ran == ["before", "a", "b", "b", "after"]  # 'a' and 'before' kept
    kids = {r.workflow_id: r.status for r in await app.alist_runs(parent="pw")}
    assert kids == {"pw/work#1": RunStatus.COMPLETED}
    assert (await app.aget_run("pw/work#1")).attempt == 2
    # a child that completed is run again, as a new child, from its wait
    assert (await app.arerun_from("pw", "child:pw/work#1")).value == "<ab>"
    assert ran[5:] == ["a", "b", "after"]
    assert (await app.aget_run("pw/work#1@3")).status is RunStatus.COMPLETED


async def test_a_child_that_failed_outside_its_steps_goes_on_with_all_of_them(
    app: App,
) -> None:
    fixed: list[bool] = []
    ran: list[str] = []

    @app.workflow(name="check")
    async def check(wf: Workflow) -> int:
        n = await wf.step("count", lambda: ran.append("count") or 7)
        if not fixed:
            raise ValueError("the check's code raised")
        return n

    @app.workflow
    async def parent(wf: Workflow) -> int:
        return int(await wf.child(check)) + 1

    with pytest.raises(tether.ChildRunError, match="code raised"):
        await app.arun(parent, workflow_id="pc")
    fixed.append(True)
    assert (await app.arerun_from("pc", "child:pc/check#1")).value == 8
    assert ran == ["count"]
    events = [e.type for e in (await app.aget_record("pc/check#1")).events]
    assert events.count("run.rerun_from") == 1


async def test_cancel_while_waiting(app: App) -> None:
    @app.workflow
    async def waits(wf: Workflow) -> None:
        await wf.wait_for_signal("never")

    await app.arun(waits, workflow_id="c1")
    assert await app.acancel("c1", "no longer needed") == ["c1"]
    run = await app.aget_run("c1")
    assert run.status is RunStatus.CANCELLED
    assert [w.status for w in await app.alist_waits("c1")] == [WaitStatus.CANCELLED]
    rec = await app.aget_record("c1")
    assert rec.last_error is not None and rec.last_error.message == "no longer needed"
    with pytest.raises(tether.RunFinishedError, match="already ended"):
        await app.acancel("c1")
    with pytest.raises(tether.RunFinishedError):
        await app.asignal("c1", "never", 1)
    again = await app.arun(waits, workflow_id="c1")  # a cancelled run is not revived
    assert again.status is RunStatus.CANCELLED


async def test_cancel_while_a_step_executes_discards_its_result(app: App) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    seen: list[BaseException] = []

    @app.workflow
    async def busy(wf: Workflow) -> str:
        async def long_step() -> str:
            entered.set()
            await release.wait()
            return "late result"

        try:
            await wf.step("long", long_step)
        except asyncio.CancelledError as exc:
            seen.append(exc)
            raise
        await wf.step("after", lambda: "never")
        return "done"

    task = asyncio.ensure_future(app.arun(busy, workflow_id="c2"))
    await entered.wait()
    await app.acancel("c2")
    release.set()
    res = await task
    assert res.status is RunStatus.CANCELLED
    assert isinstance(seen[0], tether.RunCancelledError)
    rec = await app.aget_record("c2")
    assert rec.steps["long"].status is not tether.StepStatus.COMPLETED
    assert rec.steps["long"].result is None  # the late result was discarded
    assert "after" not in rec.steps


async def test_cancelling_a_parent_cancels_waited_children(app: App) -> None:
    @app.workflow
    async def kid(wf: Workflow) -> None:
        await wf.wait_for_signal("x")

    @app.workflow
    async def parent(wf: Workflow) -> None:
        await wf.start_child(kid, workflow_id="detached")
        await wf.child(kid, workflow_id="attached")

    await app.arun(parent, workflow_id="p-cancel")
    for _ in range(200):  # the detached child runs in the background until it parks
        if (await app.aget_run("detached")).status is RunStatus.WAITING:
            break
        await asyncio.sleep(0.005)
    cancelled = await app.acancel("p-cancel")
    assert cancelled == ["p-cancel", "attached"]
    assert (await app.aget_run("attached")).status is RunStatus.CANCELLED
    assert (await app.aget_run("detached")).status is RunStatus.WAITING


async def test_saga_compensates_in_reverse_order(app: App) -> None:
    undone: list[str] = []

    @app.workflow
    async def trip(wf: Workflow) -> None:
        await wf.step("flight", lambda: "F1", compensate=lambda r: undone.append(f"flight:{r}"))
        await wf.step("hotel", lambda: "H1", compensate=lambda r: undone.append(f"hotel:{r}"))

        async def cancel_car(r: str) -> None:
            undone.append(f"car:{r}")

        await wf.step("car", lambda: "C1", compensate=cancel_car)
        await wf.step("pay", _fail_payment)

    with pytest.raises(RuntimeError, match="card declined"):
        await app.arun(trip, workflow_id="saga")
    assert undone == ["car:C1", "hotel:H1", "flight:F1"]
    rec = await app.aget_record("saga")
    assert rec.status is RunStatus.COMPENSATED
    assert rec.last_error is not None and rec.last_error.message == "card declined"
    assert rec.steps["compensate:hotel"].status is tether.StepStatus.COMPLETED
    # resuming does not compensate twice
    with pytest.raises(tether.RunFinishedError):
        await app.acancel("saga")


def _fail_payment() -> None:
    raise RuntimeError("card declined")


async def test_failing_compensation_does_not_stop_the_others(app: App) -> None:
    undone: list[str] = []

    def bad(_: object) -> None:
        raise OSError("refund api down")

    @app.workflow
    async def trip(wf: Workflow) -> None:
        await wf.step("a", lambda: 1, compensate=lambda r: undone.append("a"))
        await wf.step("b", lambda: 2, compensate=bad)
        await wf.step("c", lambda: 3, compensate=lambda r: undone.append("c"))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await app.arun(trip, workflow_id="saga2")
    assert undone == ["c", "a"]
    rec = await app.aget_record("saga2")
    assert rec.status is RunStatus.COMPENSATION_FAILED
    assert rec.last_error is not None and rec.last_error.type == "ValueError"
    assert rec.steps["compensate:b"].status is tether.StepStatus.FAILED


async def test_steps_run_together_are_undone_newest_first_after_a_replay_too(
    app: App, clock: FakeClock
) -> None:
    """b completes before a; the run then waits, and its resume (a replay, which
    answers both steps at once in call order) fails: a, the newer, is undone first,
    as the first drive would have."""
    undone: list[str] = []
    b_recorded = asyncio.Event()

    async def a() -> str:
        await b_recorded.wait()
        clock.advance(1)  # a completes a second after b
        return "a"

    def heard(wid: str, type_: str, message: str | None, detail: object) -> None:
        if (type_, message) == ("step.completed", "b"):
            b_recorded.set()

    @app.workflow
    async def trip(wf: Workflow) -> None:
        await asyncio.gather(
            wf.step("a", a, compensate=undone.append),
            wf.step("b", lambda: "b", compensate=undone.append),
        )
        await wf.wait_for_signal("go")
        raise KeyError("no room")

    parked = await app.arun(trip, workflow_id="together", on_event=heard)
    assert parked.status is RunStatus.WAITING
    rec = await app.aget_record("together")
    assert rec.steps["a"].completed_at > rec.steps["b"].completed_at  # type: ignore[operator]
    await app.asignal("together", "go")
    await eventually(lambda: _settled(app, "together"))
    assert (await app.aget_run("together")).status is RunStatus.COMPENSATED
    assert undone == ["a", "b"]


async def test_a_failed_run_compensating_refuses_a_cancel_and_undoes_each_step_once(
    app: App,
) -> None:
    undone: list[str] = []
    undoing, go_on = asyncio.Event(), asyncio.Event()

    async def undo(r: str) -> None:
        undone.append(r)
        undoing.set()
        await go_on.wait()

    @app.workflow
    async def trip(wf: Workflow) -> None:
        await wf.step("flight", lambda: "F", compensate=undo)
        await wf.step("hotel", lambda: "H", compensate=undo)
        raise KeyError("no room")

    await app.astart(trip, workflow_id="failing")
    await asyncio.wait_for(undoing.wait(), 10)
    during = await app.aget_run("failing")
    assert (during.status, during.end_reason) == (RunStatus.RUNNING, tether.EndReason.FAILED)
    for compensate in (True, False):
        with pytest.raises(tether.RunFinishedError, match="running its compensations"):
            await app.acancel("failing", "too late", compensate=compensate)
    go_on.set()
    rec = (await asyncio.wait_for(app.aresult("failing"), 10)).record
    assert (rec.status, rec.end_reason) == (RunStatus.COMPENSATED, tether.EndReason.FAILED)
    assert rec.last_error is not None and rec.last_error.type == "KeyError"
    assert undone == ["H", "F"]
    assert [e.type for e in rec.events].count("workflow.compensating") == 1


async def test_a_cancel_that_lands_before_the_failure_is_recorded_wins(app: App) -> None:
    undone: list[str] = []

    @app.workflow
    async def trip(wf: Workflow) -> None:
        await wf.step("flight", lambda: "F", compensate=undone.append)
        await app.acancel(wf.workflow_id, "changed plans", compensate=True)
        raise KeyError("no room")

    result = await app.arun(trip, workflow_id="cancel-first")  # the cancel's answer
    assert result.status is RunStatus.COMPENSATED
    await eventually(lambda: _settled(app, "cancel-first"))
    rec = await app.aget_record("cancel-first")
    assert (rec.status, rec.end_reason) == (RunStatus.COMPENSATED, tether.EndReason.CANCELLED)
    assert rec.last_error is not None and rec.last_error.type == "Cancelled"
    assert undone == ["F"]


async def _settled(app: App, wid: str) -> bool:
    return (await app.aget_run(wid)).settled


async def test_cancel_with_compensation(app: App) -> None:
    undone: list[object] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=undone.append)
        await wf.wait_for_signal("confirm")
        await wf.step("ship", lambda: "S", compensate=undone.append)

    await app.arun(order, workflow_id="c-comp")
    await app.acancel("c-comp", "customer left", compensate=True)
    for _ in range(500):
        if (await app.aget_run("c-comp")).status is not RunStatus.CANCELLED:
            break
        await asyncio.sleep(0.005)
    run = await app.aget_run("c-comp")
    assert run.status is RunStatus.COMPENSATED
    assert undone == ["R"]


async def test_idempotent_start_under_concurrent_callers(
    database_url: str, clock: FakeClock
) -> None:
    apps = [App(database_url, clock=clock) for _ in range(4)]
    runs = 0
    try:
        for a in apps:

            @a.workflow(name="once")
            async def once(wf: Workflow, n: int) -> int:
                nonlocal runs
                runs += 1
                return n

        ids = await asyncio.gather(
            *(a.astart(a.get_workflow("once").fn, 5, idempotency_key="order-9") for a in apps)
        )
        assert len(set(ids)) == 1
        res = await apps[0].aresult(ids[0], timeout=10)
        assert res.value == 5
        assert len(await apps[0].alist_runs()) == 1
        await asyncio.sleep(0.05)
        assert runs == 1
    finally:
        for a in apps:
            await a.aclose()


async def test_version_mismatch_is_refused(database_url: str, clock: FakeClock) -> None:
    v1 = App(database_url, clock=clock)
    v2 = App(database_url, clock=clock)
    v3 = App(database_url, clock=clock)
    try:

        @v1.workflow(name="onboard", version="1")
        async def onboard_v1(wf: Workflow) -> str:
            await wf.wait_for_signal("go")
            return "v1"

        @v2.workflow(name="onboard", version="2")
        async def onboard_v2(wf: Workflow) -> str:
            await wf.wait_for_signal("go")
            return "v2"

        @v3.workflow(name="onboard", version="3", compatible=["1"])
        async def onboard_v3(wf: Workflow) -> str:
            await wf.wait_for_signal("go")
            return "v3"

        await v1.arun(onboard_v1, workflow_id="ob")
        await v1.aclose()
        with pytest.raises(tether.WorkflowVersionError, match="compatible"):
            await v2.aresume("ob")
        await v3.asignal("ob", "go")
        assert (await v3.aresult("ob", timeout=10)).value == "v3"
    finally:
        await v2.aclose()
        await v3.aclose()


async def test_several_waits_pending_at_once(app: App) -> None:
    @app.workflow
    async def gather(wf: Workflow) -> list[object]:
        async def one(name: str) -> object:
            return await wf.wait_for_signal(name)

        s = await wf.for_each(["a", "b", "c"], one, max_parallel=3)
        return s.values

    await app.arun(gather, workflow_id="many")
    pending = {w.name for w in await app.alist_waits("many") if w.status is WaitStatus.PENDING}
    assert pending == {"a", "b", "c"}
    await app.asignal("many", "b", 2)
    for _ in range(500):
        if (await app.aget_run("many")).status is RunStatus.WAITING:
            waits = {w.name: w.status for w in await app.alist_waits("many")}
            if waits["b"] is WaitStatus.RESOLVED:
                break
        await asyncio.sleep(0.005)
    waits = {w.name: w.status for w in await app.alist_waits("many")}
    assert waits == {"a": WaitStatus.PENDING, "b": WaitStatus.RESOLVED, "c": WaitStatus.PENDING}
    await app.asignal("many", "a", 1)
    await app.asignal("many", "c", 3)
    assert (await app.aresult("many", timeout=10)).value == [1, 2, 3]


async def test_recorded_values_replay_the_same(app: App, clock: FakeClock) -> None:
    seen: list[tuple[object, ...]] = []

    @app.workflow
    async def values(wf: Workflow) -> None:
        now, r, u = await wf.now(), await wf.random(), await wf.uuid()
        seen.append((now, r, u))
        await wf.wait_for_signal("next")

    await app.arun(values, workflow_id="vals")
    clock.advance(100)
    await app.asignal("vals", "next")
    await app.aresult("vals", timeout=10)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0][0] == clock.now() - timedelta(seconds=100)


async def test_parked_time_does_not_count_against_timeout(app: App, clock: FakeClock) -> None:
    @app.workflow(timeout=30)
    async def patient(wf: Workflow) -> str:
        await wf.step("a", lambda: clock.advance(10), result_type=datetime)
        await wf.sleep(86400)  # a day parked
        await wf.step("b", lambda: clock.advance(10), result_type=datetime)
        return "ok"

    @app.workflow(timeout=30)
    async def slow(wf: Workflow) -> str:
        await wf.step("a", lambda: clock.advance(20), result_type=datetime)
        await wf.sleep(60)
        await wf.step("b", lambda: clock.advance(20), result_type=datetime)
        await wf.step("c", lambda: None)
        return "never"

    await app.arun(patient, workflow_id="patient")
    clock.advance(86400)
    await app.afire_due_timers()
    assert (await app.aresult("patient", timeout=10)).value == "ok"

    await app.arun(slow, workflow_id="slow")
    clock.advance(60)
    await app.afire_due_timers()
    res = await app.aresult("slow", timeout=10)
    assert res.status is RunStatus.FAILED
    assert res.record.last_error is not None
    assert res.record.last_error.type == "WorkflowTimeoutError"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda wf: wf.wait_for_signal(""), "signal name"),
        (lambda wf: wf.wait_for_event("e", timeout=-1), "timeout"),
        (lambda wf: wf.sleep(-5), "sleep seconds"),
        (lambda wf: wf.wait_for_event("e", match=["x"]), "match must be a dict"),
        # keys, tokens and child ids name rows: before, "" fell back to the occurrence,
        # and a NUL or a number reached the database (a StoreError on PostgreSQL, kept
        # as it was on SQLite)
        (lambda wf: wf.wait_for_signal("go", key=""), "wait key must be a non-empty"),
        (lambda wf: wf.wait_for_signal("go", key=5), "wait key must be a non-empty"),
        (lambda wf: wf.wait_for_event("e", key="a\x00b"), "wait key .* NUL"),
        (lambda wf: wf.wait_for_token("t\x00"), "token .* NUL"),
        (lambda wf: wf.child(_child, workflow_id=""), "child workflow_id must be a non-empty"),
        (lambda wf: wf.child(_child, workflow_id="c\x00"), "child workflow_id .* NUL"),
        (lambda wf: wf.start_child(_child, workflow_id=""), "child workflow_id must be"),
    ],
)
async def test_bad_wait_arguments(app: App, call: object, match: str) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("before", lambda: "kept")
        await call(wf)  # type: ignore[operator]

    with pytest.raises(tether.InvalidArgumentError, match=match):
        await app.arun(flow, workflow_id="bad-wait")
    record = await app.aget_record("bad-wait")  # what was recorded before stays, alone
    assert record.steps["before"].status.value == "completed"
    assert await app.alist_waits("bad-wait") == []
    assert [run.workflow_id for run in await app.alist_runs()] == ["bad-wait"]  # no child


async def _child(wf: Workflow) -> str:
    return "child"


async def test_a_run_woken_under_an_incompatible_version_is_left_pending_not_failed(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def gated(wf: Workflow) -> str:
        return str(await wf.wait_for_signal("go"))

    old = App(database_url)
    old.workflow(name="gated", version="1")(gated)
    assert (await old.arun(gated, workflow_id="v1")).status is RunStatus.WAITING
    await old.aclose()
    new = App(database_url)
    new.workflow(name="gated", version="2")(gated)
    try:
        with caplog.at_level("WARNING", logger="tether"):
            assert await new.asignal("v1", "go", "x")
            await new.aclose()  # waits for the background drive
        reader = App(database_url)
        assert (await reader.aget_run("v1")).status is RunStatus.PENDING
        await reader.aclose()
        lines = [r for r in caplog.records if "v1" in r.getMessage()]
        assert [r.levelname for r in lines] == ["WARNING"] and not any(r.exc_info for r in lines)
        assert "left pending" in lines[0].getMessage()
    finally:
        await new.aclose()


async def test_the_result_of_a_run_cancelled_with_compensation_waits_for_the_undo(
    app: App,
) -> None:
    """`result()` answers once the compensations ran (before: `cancelled` at once,
    while the undo was still to come), as `tether runs watch` and the server's event
    stream end only then."""
    undone: list[object] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        await wf.step("reserve", lambda: "R", compensate=undone.append)
        await wf.wait_for_signal("confirm")

    await app.arun(order, workflow_id="c-wait")
    await app.acancel("c-wait", "customer left", compensate=True)
    result = await app.aresult("c-wait", timeout=10)
    assert result.status is RunStatus.COMPENSATED
    assert undone == ["R"]
    run = await app.aget_run("c-wait")
    assert run.settled and run.status is RunStatus.COMPENSATED


@pytest.mark.parametrize("every", [0.01, timedelta(milliseconds=10)], ids=["float", "timedelta"])
async def test_a_hosts_chores_wake_due_timers_without_a_worker(
    app: App, clock: FakeClock, every: float | timedelta
) -> None:
    # under `tether serve` nothing fired a timer longer than the inline wait: a run
    # parked on wf.sleep(3600) stayed waiting until some other run happened to wait
    # (and a timedelta, which the check of `every` takes, ended the chores at once)
    @app.workflow
    async def napper(wf: Workflow) -> str:
        await wf.sleep(3600)
        await wf.sleep(3600)  # due only after the chores' first pause
        return "rested"

    assert (await app.arun(napper, workflow_id="nap")).status is RunStatus.WAITING
    chores = asyncio.ensure_future(app.ahost_chores(every=every))
    try:
        clock.advance(3600)

        async def second_nap() -> bool:
            waits = await app.alist_waits("nap")
            return len(waits) == 2 and (await app.aget_run("nap")).status is RunStatus.WAITING

        await eventually(second_nap, timeout=30)
        clock.advance(3600)
        assert (await app.aresult("nap", timeout=30)).value == "rested"
    finally:
        chores.cancel()
        await asyncio.gather(chores, return_exceptions=True)


async def test_a_wait_in_a_task_never_awaited_parks_the_run_without_an_asyncio_error(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A fire-and-forget task that waits ends with the engine's unwind; asyncio must
    not report it as a task exception never retrieved (an ERROR for a normal park)."""
    tasks: list[asyncio.Task[object]] = []

    @app.workflow
    async def notes(wf: Workflow) -> object:
        tasks.append(asyncio.ensure_future(wf.wait_for_signal("side")))
        await wf.step("a", lambda: 1)
        return await wf.wait_for_signal("go")

    with caplog.at_level("ERROR", logger="asyncio"):
        res = await app.arun(notes, workflow_id="ff")
        assert res.status is RunStatus.WAITING
        await asyncio.sleep(0)  # the side task's done callbacks run
        assert tasks[0].done()
        tasks.clear()  # collected now: an unretrieved exception would be logged here
        gc.collect()
    assert [r.getMessage() for r in caplog.records] == []


async def test_a_task_that_swallows_the_unwind_and_fails_is_still_reported(
    app: App,
) -> None:
    """Only the unwind is retrieved quietly: a side task that catches it and fails
    otherwise reaches the loop's exception handler, as any failed task would."""
    reported: list[BaseException] = []

    @app.workflow
    async def swallow(wf: Workflow) -> object:
        async def side() -> None:
            try:
                await wf.wait_for_signal("side")
            except BaseException:
                raise ValueError("side broke") from None

        asyncio.ensure_future(side())  # noqa: RUF006  (fire and forget: the case)
        return await wf.wait_for_signal("go")

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, ctx: reported.append(ctx["exception"]))
    try:
        res = await app.arun(swallow, workflow_id="sw")
        assert res.status is RunStatus.WAITING
        await eventually(lambda: reported)  # the side task runs after the run parked
    finally:
        loop.set_exception_handler(None)
    assert [str(e) for e in reported] == ["side broke"]


@pytest.mark.parametrize("items", [6, 12])
async def test_signals_reach_for_each_items_in_the_order_they_waited(app: App, items: int) -> None:
    # under the fake clock every wait registers at one instant; half of them carry a
    # timeout, and on PostgreSQL the items' registrations commit on several connections
    async def item(wf: Workflow, i: int) -> object:
        return await wf.wait_for_signal("go", timeout=3600 if i % 2 else None)

    @app.workflow
    async def queue_up(wf: Workflow) -> list[object]:
        work = [i for i in range(items)]
        return (await wf.for_each(work, lambda i: item(wf, i), max_parallel=items)).values

    res = await app.arun(queue_up, workflow_id="queue-up")
    assert res.status is RunStatus.WAITING
    for i in range(items):
        await app.asignal("queue-up", "go", i)
    assert (await app.aresult("queue-up", timeout=30)).value == list(range(items))
    waits = await app.alist_waits("queue-up")  # the record lists them in that order too
    assert [w.key for w in waits] == [f"signal:go[{i}]#1" for i in range(items)]


async def test_a_parked_run_cancelled_with_compensation_elsewhere_is_compensated_there(
    database_url: str,
) -> None:
    # the process that parked it holds no claim on it: another App with the workflow
    # compensates at once, not once that process's last claim has lapsed
    undone: list[str] = []

    def register(app: App) -> Any:
        @app.workflow(name="parks")
        async def parks(wf: Workflow) -> None:
            await wf.step("charge", lambda: "c-1", compensate=undone.append)
            await wf.wait_for_signal("go")

        return parks

    parked_by, cancelled_by = App(database_url), App(database_url)
    parks = register(parked_by)
    register(cancelled_by)
    try:
        assert (await parked_by.arun(parks, workflow_id="parks")).status is RunStatus.WAITING
        await cancelled_by.acancel("parks", "stop", compensate=True)
        result = await cancelled_by.aresult("parks", timeout=10)
        assert result.record.status is RunStatus.COMPENSATED and undone == ["c-1"]
    finally:
        await parked_by.aclose()
        await cancelled_by.aclose()


async def test_a_run_goes_on_from_a_wait_when_it_recorded_no_step_before_it(app: App) -> None:
    """`rerun_from` took only step keys: a run whose first act was a wait (a signal, a
    child, a sleep) and that failed after it could not go on, nor be told how."""
    seen: list[Any] = []

    @app.workflow
    async def review(wf: Workflow) -> str:
        decision = await wf.wait_for_signal("approval")
        seen.append(decision)
        if decision != "yes":
            raise ValueError(f"cannot publish on {decision!r}")
        return "published"

    await app.arun(review, workflow_id="rv")
    await app.asignal("rv", "approval", "maybe")
    assert (await app.aresult("rv", timeout=10)).status is RunStatus.FAILED
    with pytest.raises(tether.InvalidArgumentError, match="that name: 'signal:approval#1'"):
        await app.arerun_from("rv", "approval")
    with pytest.raises(tether.InvalidArgumentError, match="none; its waits: 'signal:appr"):
        await app.arerun_from("rv", "publish")
    parked = await app.arerun_from("rv", "signal:approval#1")  # forgets it and what came after
    assert parked.status is RunStatus.WAITING and seen == ["maybe"]
    await app.asignal("rv", "approval", "yes")
    assert (await app.aresult("rv", timeout=10)).value == "published"
    assert seen == ["maybe", "yes"]
