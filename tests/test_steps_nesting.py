"""Steps called from steps: nothing is left `running` in the record.

Nested past Python's recursion limit (steps from steps, child runs from child
runs), the failure is recorded like any other: a RecursionError raised inside
a store write used to leave the innermost started steps `running` for good,
and a chain of child runs `running` and `waiting`. A nested step cut short
by its enclosing step's timeout fails with it: it used to stay `running` in
a run that went on and completed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tether import App, RetryPolicy, RunStatus, Workflow
from tether.errors import ChildRunError, StepTimeoutError
from tether.store import StepStatus

# extra frames of room above the test's own depth: nesting some 40 steps deep
ROOM = 400


@contextmanager
def recursion_room(extra: int) -> Iterator[int]:
    """Python's recursion limit set `extra` frames above the caller's depth (a shallow
    limit keeps the nesting short, and moving it frame by frame moves where in a
    nested step's recording the limit is reached)."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back  # type: ignore[assignment]
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + extra)
    try:
        yield depth + extra
    finally:
        sys.setrecursionlimit(before)


def nested_steps(retry: RetryPolicy | None = None):  # type: ignore[no-untyped-def]
    """A workflow whose each step's function calls the next step: nested for ever (the
    outermost step retried by `retry`; retrying every level would repeat each level's
    attempts below each attempt of the one above)."""

    async def flow(wf: Workflow) -> int:
        async def level(n: int) -> int:
            policy = retry if n == 0 else None
            return await wf.step(f"s{n}", lambda: level(n + 1), retry=policy) + 1

        return await level(0)

    return flow


async def _steps_left_running(app: App, workflow_id: str) -> list[str]:
    return [
        s.key for s in await app.store.load_steps(workflow_id) if s.status is StepStatus.RUNNING
    ]


async def test_steps_nested_past_the_recursion_limit_fail_and_none_is_left_running(
    app: App,
) -> None:
    # the limit moved over a nesting's worth of frames (and more): wherever it falls in a
    # nested step's start, call or recording, the outcome is the same
    for shift in range(8):
        wid = f"deep-{shift}"
        with recursion_room(ROOM + shift), pytest.raises(RecursionError) as caught:
            await app.arun(nested_steps(), workflow_id=wid)
        assert await _steps_left_running(app, wid) == [], shift
        assert "too close to Python's recursion limit" in str(caught.value), shift
        record = await app.aget_record(wid)
        assert record.status is RunStatus.FAILED
        assert record.last_error is not None and record.last_error.type == "RecursionError"
        assert len(record.steps) > 5  # nested some way before the limit
        for key, step in record.steps.items():
            assert step.status is StepStatus.FAILED, (shift, key)
            assert step.error is not None and step.error.type == "RecursionError"
            assert "too close to Python's recursion limit" in step.error.message


async def test_a_nested_step_too_deep_is_retried_by_its_policy_then_recorded_failed(
    app: App,
) -> None:
    policy = RetryPolicy(attempts=2, backoff=0.0)
    with recursion_room(ROOM), pytest.raises(RecursionError):
        await app.arun(nested_steps(policy), workflow_id="deep-retried")
    assert await _steps_left_running(app, "deep-retried") == []
    record = await app.aget_record("deep-retried")
    assert record.status is RunStatus.FAILED
    outer = record.steps["s0"]
    assert outer.status is StepStatus.FAILED and outer.attempts == 2
    retried = [e for e in record.events if e.type == "step.retrying" and e.message == "s0"]
    assert len(retried) == 1


async def test_child_runs_nested_past_the_recursion_limit_all_fail(app: App) -> None:
    @app.workflow
    async def descend(wf: Workflow, n: int) -> int:
        return await wf.child(descend, n + 1, workflow_id=f"child-{n + 1}") + 1

    with recursion_room(ROOM), pytest.raises(ChildRunError):
        await app.arun(descend, 0, workflow_id="child-0")
    runs = await app.alist_runs(limit=1000)
    assert len(runs) > 3
    assert {r.status for r in runs} == {RunStatus.FAILED}  # none running, none waiting
    deepest = max(runs, key=lambda r: int(r.workflow_id.split("-")[1]))
    record = await app.aget_record(deepest.workflow_id)
    assert record.last_error is not None and record.last_error.type == "RecursionError"
    assert "wf.child" in record.last_error.message


async def test_a_nested_step_cut_short_by_its_enclosing_steps_timeout_is_recorded_failed(
    app: App,
) -> None:
    never = asyncio.Event()

    async def flow(wf: Workflow) -> str:
        async def outer() -> int:
            await wf.step("before", lambda: 1)
            return await wf.step("inner", never.wait)  # never returns

        try:
            await wf.step("outer", outer, timeout=0.05)
        except StepTimeoutError:
            return "went on"
        return "unreachable"

    result = await app.arun(flow, workflow_id="cut-short")
    assert result.value == "went on"
    assert await _steps_left_running(app, "cut-short") == []  # inner was left running
    record = await app.aget_record("cut-short")
    assert record.steps["outer/before"].status is StepStatus.COMPLETED  # named under it
    for key in ("outer/inner", "outer"):
        step = record.steps[key]
        assert step.status is StepStatus.FAILED, key
        assert step.error is not None and step.error.type == "StepTimeoutError"
        assert "step 'outer' ran past its timeout" in step.error.message
    ends = [e.message for e in record.events if e.type == "step.failed"]
    assert ends == ["outer/inner", "outer"]


async def test_a_step_called_inside_a_step_keeps_its_name_apart_on_replay(
    database_url: str,
) -> None:
    # a replay answers "outer" from the record and calls nothing inside it: the later
    # top-level "fetch" took the number of the one "outer" called, and its answer
    fetched: list[str] = []
    app = App(database_url)

    @app.workflow(name="nest")
    async def nest(wf: Workflow) -> str:
        def fetch(what: str) -> str:
            fetched.append(what)
            return what

        async def outer() -> str:
            return await wf.step("fetch", lambda: fetch("inner")) + "+outer"

        a = await wf.step("outer", outer)
        b = await wf.step("fetch", lambda: fetch("top"))
        await wf.wait_for_signal("go")
        return f"{a} | {b}"

    try:
        await app.astart(nest, workflow_id="n1")
        await app.asignal("n1", "go", None)
        assert (await app.aresult("n1", timeout=60)).value == "inner+outer | top"
        assert fetched == ["inner", "top"]  # each once: the replay called neither
        record = await app.aget_record("n1")
        assert {"outer", "outer/fetch", "fetch"} <= set(record.steps)
    finally:
        await app.aclose()


async def test_a_run_recorded_under_rule_3_names_a_step_inside_a_step_as_before(
    database_url: str,
) -> None:
    from tether.store import NewRun

    app = App(database_url)

    @app.workflow(name="nest3")
    async def nest3(wf: Workflow) -> str:
        async def outer() -> str:
            return await wf.step("fetch", lambda: "inner")

        return await wf.step("outer", outer) + "|" + await wf.step("fetch", lambda: "top")

    try:
        await app.store.create_run(
            NewRun(workflow_id="old", workflow_name="nest3", state="null", step_rule=3),
            app.clock.now(),
        )
        old = await app.arun(nest3, workflow_id="old")
        new = await app.arun(nest3, workflow_id="new")
        assert sorted(old.record.steps) == ["fetch", "fetch#2", "outer"]  # as recorded then
        assert sorted(new.record.steps) == ["fetch", "outer", "outer/fetch"]
        assert old.value == new.value == "inner|top"
    finally:
        await app.aclose()
