"""Steps: caching, idempotency keys, retries, typed results, serialisation errors."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RetryPolicy, StepContext, StepStatus, Workflow


class Outcome(BaseModel):
    company: str
    applied: bool


async def test_idempotent_step_runs_once_across_two_runs(app: App) -> None:
    calls: list[str] = []

    async def flow(wf: Workflow) -> dict[str, object]:
        async def apply() -> dict[str, object]:
            calls.append("apply")
            return {"ok": True}

        return await wf.step("apply", apply, idempotency_key="job-1")

    first = await app.arun(flow, workflow_id="wf-1")
    second = await app.arun(flow, workflow_id="wf-1")
    assert first.value == second.value == {"ok": True}
    assert calls == ["apply"]
    assert second.record.steps["apply@job-1"].attempts == 1
    assert second.record.steps["apply@job-1"].status is StepStatus.COMPLETED


async def test_different_idempotency_key_runs_again(app: App) -> None:
    calls: list[str] = []

    def make(key: str):  # type: ignore[no-untyped-def]
        async def flow(wf: Workflow) -> str:
            def work() -> str:
                calls.append(key)
                return key

            out = await wf.step("apply", work, idempotency_key=key)
            await wf.wait_for_signal("go")  # parks, so the next call resumes new code
            return out

        flow.__qualname__ = "flow"
        return flow

    await app.arun(make("a"), workflow_id="wf-keys")
    await app.arun(make("a"), workflow_id="wf-keys")
    await app.arun(make("b"), workflow_id="wf-keys")
    await app.asignal("wf-keys", "go")
    res = await app.arun(make("b"), workflow_id="wf-keys")
    assert calls == ["a", "b"]
    assert res.value == "b"
    assert res.record.steps["apply@b"].idempotency_key == "b"
    assert res.record.steps["apply@b"].attempts == 1


async def test_retries_fail_twice_then_succeed(app: App, clock: FakeClock) -> None:
    seen: list[int] = []

    async def flow(wf: Workflow) -> str:
        def flaky(ctx: StepContext) -> str:
            seen.append(ctx.attempt)
            assert ctx.max_attempts == 3
            if ctx.attempt < 3:
                raise RuntimeError(f"transient {ctx.attempt}")
            return "done"

        return await wf.step("flaky", flaky, retry=3)

    res = await app.arun(flow, workflow_id="wf-retry")
    assert res.value == "done"
    assert seen == [1, 2, 3]
    step = res.record.steps["flaky"]
    assert step.attempts == 3
    assert step.status is StepStatus.COMPLETED
    types = [e.type for e in res.record.events if e.message == "flaky"]
    assert types == [
        "step.started",
        "step.retrying",
        "step.started",
        "step.retrying",
        "step.started",
        "step.completed",
    ]
    # back-off waited on the injected clock, growing between attempts
    assert len(clock.slept) == 2 and clock.slept[1] > clock.slept[0] > 0


async def test_retry_policy_should_retry_stops_early(app: App) -> None:
    calls = 0

    async def flow(wf: Workflow) -> None:
        async def fatal() -> None:
            nonlocal calls
            calls += 1
            raise PermissionError("no")

        policy = RetryPolicy(attempts=5, should_retry=lambda e: not isinstance(e, PermissionError))
        await wf.step("fatal", fatal, retry=policy)

    with pytest.raises(PermissionError):
        await app.arun(flow, workflow_id="wf-fatal")
    assert calls == 1
    rec = await app.aget_record("wf-fatal")
    assert rec.status is tether.RunStatus.FAILED
    assert rec.steps["fatal"].status is StepStatus.FAILED
    assert rec.steps["fatal"].error is not None
    assert rec.steps["fatal"].error.type == "PermissionError"
    assert "Traceback" in rec.steps["fatal"].error.traceback
    assert rec.last_error is not None and rec.last_error.type == "PermissionError"
    assert [e.type for e in rec.events][-1] == "workflow.failed"


async def test_attempts_are_counted_durably_across_runs(app: App) -> None:
    async def flow(wf: Workflow) -> str:
        def always_fails() -> str:
            raise RuntimeError("boom")

        return await wf.step("s", always_fails, retry=RetryPolicy(attempts=2, backoff=0))

    with pytest.raises(RuntimeError):
        await app.arun(flow, workflow_id="wf-durable-attempts")
    events = (await app.aget_record("wf-durable-attempts")).events
    # asked again, a failed run answers with the same error type, running nothing
    with pytest.raises(RuntimeError, match="boom"):
        await app.arun(flow, workflow_id="wf-durable-attempts")
    rec = await app.aget_record("wf-durable-attempts")
    assert rec.steps["s"].attempts == 2 and rec.events == events


async def test_step_returning_none_is_cached(app: App) -> None:
    calls = 0

    async def flow(wf: Workflow) -> None:
        def nothing() -> None:
            nonlocal calls
            calls += 1

        assert await wf.step("nothing", nothing) is None

    await app.arun(flow, workflow_id="wf-none")
    await app.arun(flow, workflow_id="wf-none")
    assert calls == 1


async def test_typed_result_comes_back_as_its_type(app: App) -> None:
    async def flow(wf: Workflow) -> list[str]:
        async def apply() -> Outcome:
            return Outcome(company="Anthropic", applied=True)

        def many() -> list[Outcome]:
            return [Outcome(company="A", applied=False)]

        one = await wf.step("one", apply)
        lst = await wf.step("many", many)
        assert isinstance(one, Outcome)
        assert isinstance(lst[0], Outcome)
        return [one.company, lst[0].company]

    assert (await app.arun(flow, workflow_id="wf-typed")).value == ["Anthropic", "A"]
    # replay: both steps come from the record and still validate into Outcome
    assert (await app.arun(flow, workflow_id="wf-typed")).value == ["Anthropic", "A"]
    rec = await app.aget_record("wf-typed")
    assert rec.steps["one"].result == {"company": "Anthropic", "applied": True}


async def test_unserialisable_result_names_step_and_type(app: App) -> None:
    class Opaque:
        pass

    async def flow(wf: Workflow) -> None:
        await wf.step("bad", lambda: {"handle": Opaque()})

    with pytest.raises(tether.NotSerializableError) as info:
        await app.arun(flow, workflow_id="wf-bad")
    msg = str(info.value)
    assert "'bad'" in msg and "Opaque" in msg and "$.handle" in msg
    assert info.value.offending_type is Opaque
    rec = await app.aget_record("wf-bad")
    assert rec.steps["bad"].status is not StepStatus.COMPLETED
    assert rec.steps["bad"].result is None


async def test_nan_result_is_rejected(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("nan", lambda: [1.0, float("nan")])

    with pytest.raises(tether.NotSerializableError, match=r"\$\[1\]"):
        await app.arun(flow, workflow_id="wf-nan")


async def test_sync_step_runs_off_the_event_loop(app: App) -> None:
    import threading

    loop_thread = threading.get_ident()

    async def flow(wf: Workflow) -> bool:
        return await wf.step("thread", lambda: threading.get_ident() != loop_thread)

    assert (await app.arun(flow, workflow_id="wf-thread")).value is True


async def test_a_step_name_called_again_is_a_new_step(app: App) -> None:
    """Each call of one name is its own step (name, name#2, ...), in a loop or at once;
    a replay answers each from the record, in the same order."""
    calls: list[int] = []

    async def flow(wf: Workflow) -> list[str]:
        def llm(i: int) -> str:
            calls.append(i)
            return f"answer {i}"

        turns = [await wf.step("call-llm", lambda i=i: llm(i)) for i in range(3)]

        async def slow(i: int) -> str:
            calls.append(10 + i)
            await asyncio.sleep(0.01 * (2 - i))  # finish in the reverse order
            return f"fan {i}"

        both = await asyncio.gather(*(wf.step("x", lambda i=i: slow(i)) for i in range(2)))
        await wf.wait_for_signal("replay")  # park, so the next call replays from the top
        return [*turns, *both]

    await app.arun(flow, workflow_id="wf-loop")
    await app.asignal("wf-loop", "replay")
    result = await app.arun(flow, workflow_id="wf-loop")
    assert result.value == ["answer 0", "answer 1", "answer 2", "fan 0", "fan 1"]
    # the replay called nothing again (the two gathered steps start in either order:
    # their lambdas run on step threads)
    assert calls[:3] == [0, 1, 2] and sorted(calls[3:]) == [10, 11]
    assert set(result.record.steps) == {"call-llm", "call-llm#2", "call-llm#3", "x", "x#2"}


async def test_completed_workflow_reruns_from_record(app: App) -> None:
    calls = 0

    async def flow(wf: Workflow) -> int:
        async def one() -> int:
            nonlocal calls
            calls += 1
            return 1

        return await wf.step("one", one) + 1

    first = await app.arun(flow, workflow_id="wf-again")
    second = await app.arun(flow, workflow_id="wf-again")
    assert first.value == second.value == 2
    assert calls == 1
    assert second.record.status is tether.RunStatus.COMPLETED
    # a finished run is an answer: asking again runs no body and appends no event
    assert second.record.events == first.record.events


async def test_initial_state_only_applies_on_create(app: App) -> None:
    async def flow(wf: Workflow) -> object:
        return wf.state

    first = await app.arun(flow, workflow_id="wf-state", initial_state={"applied": 0})
    second = await app.arun(flow, workflow_id="wf-state", initial_state={"applied": 99})
    assert first.value == second.value == {"applied": 0}


async def test_step_events_and_workflow_lifecycle(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("a", lambda: 1)

    res = await app.arun(flow, workflow_id="wf-events")
    assert [e.type for e in res.record.events] == [
        "workflow.running",
        "step.started",
        "step.completed",
        "workflow.completed",
    ]
    seqs = [e.seq for e in res.record.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_a_listener_hears_each_event_a_step_appends_once(
    app: App,
) -> None:
    heard: list[tuple[str, str | None]] = []
    tries = [0]

    async def flow(wf: Workflow) -> None:
        async def work() -> None:
            tries[0] += 1
            await wf.append_event("progress", f"try {tries[0]}")
            if tries[0] == 1:
                raise OSError("flaky")  # written with the failed attempt

        await wf.step("a", work, retry=tether.RetryPolicy(attempts=2, backoff=0))

    def listen(wid: str, type_: str, message: str | None, detail: object) -> None:
        if type_ == "progress":
            heard.append((type_, message))

    res = await app.arun(flow, workflow_id="appended", on_event=listen)
    recorded = [(e.type, e.message) for e in res.record.events if e.type == "progress"]
    assert recorded == [("progress", "try 1"), ("progress", "try 2")]
    assert heard == recorded


async def test_interrupted_attempt_reruns_but_crash_loops_are_bounded(app: App) -> None:
    from tether.store import NewEvent

    async def flow(wf: Workflow) -> str:
        await wf.wait_for_signal("go")  # parked here while a "crash" is staged
        return await wf.step("fragile", lambda: "ran")

    async def crash(run_id: str, step: str) -> None:
        # what a process that died mid-step leaves: a start marker, no outcome
        run = await app.aget_run(run_id)
        await app.store.start_step(
            tether.store.Fence(run_id, run.generation),
            step,
            idempotency_key=None,
            at=app.clock.now(),
            event=NewEvent("step.started", step),
        )

    await app.arun(flow, workflow_id="wf-crashy")
    await crash("wf-crashy", "fragile")
    await app.asignal("wf-crashy", "go")
    got = await app.arun(flow, workflow_id="wf-crashy")
    assert got.value == "ran", (got.status, [e.type for e in got.record.events])

    # a step that kills its process every time: 1 attempt + 3 interrupted reruns, then stop
    async def dies(wf: Workflow) -> str:
        await wf.wait_for_signal("go")
        return await wf.step("always-dies", lambda: "never")

    await app.arun(dies, workflow_id="wf-dies")
    for _ in range(4):
        await crash("wf-dies", "always-dies")
    await app.asignal("wf-dies", "go")
    with pytest.raises(tether.StepFailedError, match="always-dies"):
        await app.arun(dies, workflow_id="wf-dies")


async def test_for_each_items_updating_the_state_side_by_side_lose_no_update(
    app: tether.App,
) -> None:
    async def flow(wf: tether.Workflow) -> object:
        await wf.update_state({"done": []})

        async def item(i: int) -> None:  # all four update at once
            await wf.update_state(lambda s: {"done": [*s["done"], i]})

        await wf.for_each(range(4), item, max_parallel=4)
        return wf.state

    done = await app.arun(flow, workflow_id="side-by-side")
    # before: each item built on the state before the others' writes: {'done': [0, 3]}
    assert sorted(done.value["done"]) == [0, 1, 2, 3]


async def test_a_child_never_declared_runs_as_a_function_run_never_declared_does(
    app: tether.App,
) -> None:
    async def summarise(wf: tether.Workflow, doc: str) -> str:  # never declared
        await wf.wait_for_signal("go")
        return doc.upper()

    @app.workflow
    async def parent(wf: tether.Workflow) -> str:
        return str(await wf.child(summarise, "doc"))

    # before: the parent failed with WorkflowNotFoundError, where the README says a
    # function run without being declared is registered when run
    parked = await app.arun(parent, workflow_id="plain-child")
    assert parked.status is tether.RunStatus.WAITING
    (child,) = [r for r in await app.alist_runs() if r.parent_id == "plain-child"]
    await app.asignal(child.workflow_id, "go")  # the child resumes here, then its parent
    assert (await app.aresult("plain-child", timeout=10)).value == "DOC"


@pytest.mark.parametrize("order", [["a", "a#2", "a"], ["a", "a", "a#2"]])
async def test_a_step_name_that_is_another_calls_key_is_refused(
    app: tether.App, order: list[str]
) -> None:
    ran: list[str] = []

    async def flow(wf: tether.Workflow) -> None:
        for name in order:
            await wf.step(name, lambda n=name: ran.append(n) or n)

    # before: one record answered both, and the later call's function never ran
    with pytest.raises(tether.InvalidArgumentError, match=r"both name 'a#2'.*rename 'a#2'"):
        await app.arun(flow)
    assert ran == order[:2]
