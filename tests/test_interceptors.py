"""Step interceptors: they see each executed attempt, may wrap it, and run in order."""

from __future__ import annotations

import re
from typing import Any

import pytest

import tether
from tether import App, FakeClock, InvalidArgumentError, Proceed, RetryPolicy, StepCall, Workflow


class Recorder:
    """Logs what it sees around each attempt under its own label."""

    def __init__(self, label: str, log: list[Any]) -> None:
        self.label = label
        self.log = log

    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        self.log.append((self.label, "before", call.name, call.key, call.attempt))
        try:
            result = await proceed()
        except Exception as exc:
            self.log.append((self.label, "raised", call.key, type(exc).__name__))
            raise
        self.log.append((self.label, "returned", call.key, result))
        return result


class Times10:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return (await proceed()) * 10


async def test_interceptors_see_each_attempt_in_order(sqlite_url: str) -> None:
    log: list[Any] = []
    app = App(sqlite_url, clock=FakeClock(), interceptors=[Recorder("a", log), Recorder("b", log)])
    failures = iter([ValueError("flaky")])

    def flaky() -> int:
        for exc in failures:
            raise exc
        log.append("fn")
        return 7

    @app.workflow
    async def flow(wf: Workflow) -> int:
        first = await wf.step("call", flaky, retry=RetryPolicy(attempts=2, backoff=0, jitter=0))
        second = await wf.step("call", lambda: 1)  # a second occurrence: its own key
        return first + second

    try:
        assert (await app.arun(flow, workflow_id="r1")).value == 8
    finally:
        await app.aclose()
    assert log[:9] == [
        ("a", "before", "call", "call", 1),
        ("b", "before", "call", "call", 1),
        ("b", "raised", "call", "ValueError"),
        ("a", "raised", "call", "ValueError"),
        ("a", "before", "call", "call", 2),
        ("b", "before", "call", "call", 2),
        "fn",
        ("b", "returned", "call", 7),
        ("a", "returned", "call", 7),
    ]
    assert log[9] == ("a", "before", "call", "call#2", 1)


async def test_an_interceptor_may_wrap_the_result_and_replay_is_not_intercepted(
    sqlite_url: str,
) -> None:
    log: list[Any] = []
    app = App(sqlite_url, clock=FakeClock(), interceptors=[Recorder("outer", log), Times10()])

    @app.workflow
    async def flow(wf: Workflow) -> int:
        value = await wf.step("n", lambda: 4)
        await wf.wait_for_signal("go")
        return int(value)

    try:
        assert (await app.arun(flow, workflow_id="r2")).status is tether.RunStatus.WAITING
        assert log == [("outer", "before", "n", "n", 1), ("outer", "returned", "n", 40)]
        await app.asignal("r2", "go")
        assert (await app.aresult("r2", timeout=10)).value == 40  # the recorded, wrapped value
        assert len(log) == 2  # the replayed step ran nothing, so nothing was intercepted
    finally:
        await app.aclose()


async def test_an_interceptor_sees_the_call_context(sqlite_url: str) -> None:
    seen: list[StepCall] = []

    class Keep:
        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            seen.append(call)
            return await proceed()

    app = App(sqlite_url, clock=FakeClock(), interceptors=[Keep()])

    @app.workflow(name="ctx-flow")
    async def flow(wf: Workflow) -> None:
        await wf.step("pay", lambda: None, idempotency_key="inv-1")

    try:
        await app.arun(flow, workflow_id="r3")
    finally:
        await app.aclose()
    assert seen == [StepCall("r3", "ctx-flow", "pay", "pay@inv-1", 1, 1, "inv-1")]


def test_an_object_without_intercept_is_refused(sqlite_url: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match="intercept"):
        App(sqlite_url, interceptors=[object()])  # type: ignore[list-item]


async def test_an_interceptor_may_answer_or_refuse_without_calling_the_step(
    sqlite_url: str,
) -> None:
    calls: list[str] = []

    class Policy:
        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            if call.name == "cached":
                return "from-the-interceptor"  # the step function never runs
            if call.name == "refused" and call.attempt == 1:
                raise PermissionError("over budget")  # a failed attempt, retried
            return await proceed()

    app = App(sqlite_url, clock=FakeClock(), interceptors=[Policy()])

    @app.workflow
    async def flow(wf: Workflow) -> list[Any]:
        a = await wf.step("cached", lambda: calls.append("cached"))
        b = await wf.step("refused", lambda: calls.append("refused") or "ran", retry=2)
        return [a, b]

    try:
        res = await app.arun(flow, workflow_id="r4")
    finally:
        await app.aclose()
    assert res.value == ["from-the-interceptor", "ran"]
    assert calls == ["refused"]
    assert res.record.steps["refused"].attempts == 2


async def test_a_listener_that_raises_is_logged_and_the_run_goes_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a logging hook failed the run for good, at a step whose result was
    already recorded, and kept the listeners after it from hearing anything."""

    class Broken:
        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            return await proceed()

        def on_event(self, workflow_id: str, type_: str, message: Any, detail: Any) -> None:
            raise KeyError("a bug in the listener")

    heard: list[str] = []
    app = App(database_url, clock=FakeClock(), interceptors=[Broken()])

    @app.workflow(name="listened")
    async def listened(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1) + await wf.step("two", lambda: 1)

    caplog.set_level("DEBUG", logger="tether")
    try:
        done = await app.arun(listened, workflow_id="l1", on_event=lambda *e: heard.append(e[1]))
    finally:
        await app.aclose()
    assert done.status is tether.RunStatus.COMPLETED and done.value == 2
    assert heard.count("step.completed") == 2  # the hook after the broken one heard all
    said = [r for r in caplog.records if "on_event listener failed" in r.getMessage()]
    assert [r.levelname for r in said][:1] == ["ERROR"]  # once with its traceback
    assert all(r.levelname == "DEBUG" for r in said[1:]) and len(said) > 1


async def test_a_listener_that_could_never_hear_is_refused_before_the_run(
    sqlite_url: str,
) -> None:
    """An `async def` listener was called without an await: its body never ran, every
    event went unheard and nothing said so. A listener that cannot take the four
    arguments failed each event with a logged TypeError. Both are refused at the call,
    before a run is created."""
    app = App(sqlite_url, clock=FakeClock())

    @app.workflow(name="heard")
    async def heard(wf: Workflow) -> int:
        return await wf.step("one", lambda: 1)

    async def late(workflow_id: str, type_: str, message: Any, detail: Any) -> None:
        return None

    class Later:
        async def __call__(self, workflow_id: str, type_: str, message: Any, detail: Any) -> None:
            return None

    try:
        for bad, said in [
            (late, "is an `async def`"),
            (Later(), "is an `async def`"),
            (lambda wid: None, "cannot be called with the 4 arguments"),
            ("print", "must be a function"),
        ]:
            with pytest.raises(InvalidArgumentError, match=re.escape(said)):
                await app.arun(heard, workflow_id="h1", on_event=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match=re.escape(said)):
                await app.aresume("h1", on_event=bad)  # type: ignore[arg-type]
        assert [r.workflow_id for r in await app.alist_runs()] == []  # no run was created
        done = await app.arun(heard, workflow_id="h1", on_event=lambda *e: None)
        assert done.value == 1
        with pytest.raises(InvalidArgumentError, match="is an `async def`"):
            await app.arerun_from("h1", "one", on_event=late)  # type: ignore[arg-type]
        assert (await app.aget_run("h1")).status is tether.RunStatus.COMPLETED
    finally:
        await app.aclose()


async def test_a_run_interceptor_calling_proceed_twice_is_refused_not_paying_twice(
    database_url: str,
) -> None:
    """An `intercept_run` that retried the drive by calling proceed() again ran the
    workflow's code a second time in the same drive: its steps took new names
    (``charge#2``) and executed again, a recorded payment charged twice."""
    charges: list[str] = []
    failures = iter([ValueError("flaky once")])

    def flaky() -> int:
        for exc in failures:
            raise exc
        return 1

    class RetryTheRun:
        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            return await proceed()

        async def intercept_run(self, call: tether.RunCall, proceed: Proceed) -> Any:
            try:
                return await proceed()
            except ValueError:
                return await proceed()

    app = App(database_url, clock=FakeClock(), interceptors=[RetryTheRun()])

    @app.workflow(name="pay")
    async def pay(wf: Workflow) -> str:
        await wf.step("charge", lambda: charges.append("paid"))
        await wf.step("flaky", flaky)
        return "done"

    try:
        with pytest.raises(InvalidArgumentError, match=r"called proceed\(\) a second time"):
            await app.arun(pay, workflow_id="pay-1")
        record = await app.aget_record("pay-1")
    finally:
        await app.aclose()
    assert charges == ["paid"]  # before: ["paid", "paid"] and the run completed
    assert record.status is tether.RunStatus.FAILED
    assert sorted(record.steps) == ["charge", "flaky"]


async def test_a_proceed_never_awaited_fails_the_step_not_records_it_done(
    sqlite_url: str,
) -> None:
    """An interceptor that calls proceed() but neither awaits nor returns it: the step
    never ran, and was recorded completed with the interceptor's None (a charge never
    made, read as made on every replay)."""
    charged: list[str] = []

    class FireAndForget:
        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            proceed()  # the await forgotten

    app = App(sqlite_url, clock=FakeClock(), interceptors=[FireAndForget()])

    @app.workflow
    async def flow(wf: Workflow) -> Any:
        return await wf.step("charge", lambda: charged.append("paid") or "paid")

    try:
        with pytest.raises(InvalidArgumentError, match=r"FireAndForget.intercept called "
                           r"proceed\(\) without awaiting it, so step 'charge' did not run"):  # fmt: skip
            await app.arun(flow, workflow_id="r-forgot")
        record = await app.aget_run("r-forgot")
    finally:
        await app.aclose()
    assert charged == []
    assert record.status is tether.RunStatus.FAILED  # not completed with None
