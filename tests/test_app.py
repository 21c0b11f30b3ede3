"""App: registry, run identity, input, state and events, record export, fencing."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether.kernel import CallableSink, OutboxEvent
from tether.testing import eventually

from ._broker import HeldBroker


class Job(BaseModel):
    company: str
    role: str


async def test_registered_workflow_name_version_and_typed_input(app: App) -> None:
    @app.workflow(name="apply-batch", version="2")
    async def apply_batch(wf: Workflow, jobs: list[Job]) -> int:
        assert all(isinstance(j, Job) for j in jobs)
        return len(jobs)

    jobs = [Job(company="A", role="x"), Job(company="B", role="y")]
    res = await app.arun(apply_batch, jobs, workflow_id="batch-1")
    assert res.value == 2
    assert res.record.workflow_name == "apply-batch"
    assert res.record.workflow_version == "2"
    assert res.record.input == [{"company": "A", "role": "x"}, {"company": "B", "role": "y"}]
    # resuming without input uses the recorded one, validated into list[Job]
    again = await app.arun(apply_batch, workflow_id="batch-1")
    assert again.value == 2
    assert app.get_workflow("apply-batch").fn is apply_batch


async def test_resume_with_different_input_is_refused(app: App) -> None:
    @app.workflow
    async def echo(wf: Workflow, n: int) -> int:
        return n

    await app.arun(echo, 1, workflow_id="echo-1")
    with pytest.raises(tether.InvalidArgumentError, match="different input"):
        await app.arun(echo, 2, workflow_id="echo-1")


async def test_workflow_id_names_one_definition(app: App) -> None:
    async def one(wf: Workflow) -> None:
        return None

    async def two(wf: Workflow) -> None:
        return None

    await app.arun(one, workflow_id="shared-id")
    with pytest.raises(tether.InvalidArgumentError, match="already names a run of workflow"):
        await app.arun(two, workflow_id="shared-id")


async def test_generated_workflow_id(app: App) -> None:
    async def gen(wf: Workflow) -> str:
        return wf.workflow_id

    res = await app.arun(gen)
    assert res.value.startswith("test_generated_workflow_id.<locals>.gen-")
    assert res.workflow_id == res.value


async def test_input_to_workflow_without_parameter(app: App) -> None:
    async def no_input(wf: Workflow) -> None:
        return None

    with pytest.raises(tether.InvalidArgumentError, match="takes no input"):
        await app.arun(no_input, 5, workflow_id="x")


async def test_workflow_returning_no_awaitable_is_refused(app: App) -> None:
    def not_async(wf: Workflow) -> None:
        return None

    with pytest.raises(tether.InvalidArgumentError, match="not an awaitable"):
        await app.arun(not_async, workflow_id="x")  # type: ignore[arg-type]
    with pytest.raises(tether.InvalidArgumentError, match="must be callable"):
        app.workflow(42)  # type: ignore[call-overload]


async def _body(wf: Workflow, tag: str) -> str:
    return await wf.step("s", lambda: f"done {tag}")


class _Flow:
    async def __call__(self, wf: Workflow, n: int) -> int:
        return await wf.step("double", lambda: n * 2)


async def test_any_callable_returning_an_awaitable_is_a_workflow(app: App) -> None:
    out = await app.arun(lambda wf: _body(wf, "a"), workflow_id="lam")
    assert out.value == "done a"
    assert (await app.arun(functools.partial(_body, tag="b"), workflow_id="part")).value == (
        "done b"
    )
    flow = app.workflow(name="doubler")(_Flow())
    assert (await app.arun(flow, 21, workflow_id="obj")).value == 42
    assert (await app.aget_run("obj")).workflow_name == "doubler"
    # the input type is read from the object's __call__, a partial's function
    assert tether.WorkflowDef.of(flow).input_type is int
    assert tether.WorkflowDef.of(functools.partial(_Flow(), n=1)).name == "_Flow"


async def _gated(wf: Workflow, tag: str) -> str:
    await wf.wait_for_signal("go")
    return await wf.step("after", lambda: tag)


async def test_runs_of_lambdas_and_partials_sharing_a_name_resume_with_their_own(
    app: App,
) -> None:
    """Lambdas share the name ``<lambda>``, partials their function's: each run is
    woken, and started, with the callable it was started with, not the latest."""
    first, second = (lambda wf: _gated(wf, "lam1")), (lambda wf: _gated(wf, "lam2"))
    await app.astart(functools.partial(_gated, tag="a"), workflow_id="pa")
    await app.astart(functools.partial(_gated, tag="b"), workflow_id="pb")
    await app.arun(first, workflow_id="l1")
    await app.arun(second, workflow_id="l2")
    generated = await app.astart(functools.partial(_gated, tag="c"))
    await app.astart(functools.partial(_gated, tag="d"), workflow_id="pd")
    for wid in ("pa", "pb", "l1", "l2", generated, "pd"):
        await eventually(lambda wid=wid: _waiting(app, wid))
    for wid in ("pa", "l1", generated, "pb", "l2", "pd"):
        await app.asignal(wid, "go")
    answers = {w: (await app.aresult(w, timeout=10)).value for w in ("pa", "pb", "l1", "l2")}
    assert answers == {"pa": "a", "pb": "b", "l1": "lam1", "l2": "lam2"}
    assert (await app.aresult(generated, timeout=10)).value == "c"
    assert (await app.aresult("pd", timeout=10)).value == "d"
    await eventually(lambda: not app._runtime.run_defs)  # each forgotten as its run ended


async def _waiting(app: App, wid: str) -> bool:
    return (await app.aget_run(wid)).status is RunStatus.WAITING


async def test_run_workflow_takes_a_lambda(database_url: str, clock: tether.FakeClock) -> None:
    result = await tether.run_workflow(
        lambda wf: _body(wf, "c"), workflow_id="fn", database_url=database_url, clock=clock
    )
    assert result.value == "done c"


async def test_state_updates_and_custom_events(app: App) -> None:
    async def flow(wf: Workflow) -> object:
        await wf.update_state({"applied": 0, "skipped": 0})
        await wf.update_state(lambda s: {**s, "applied": s["applied"] + 2})
        await wf.append_event("job.found", "Staff Engineer", {"company": "Anthropic"})
        return wf.state

    res = await app.arun(flow, workflow_id="state-1", initial_state={"applied": 0})
    assert res.value == {"applied": 2, "skipped": 0}
    assert res.record.state == {"applied": 2, "skipped": 0}
    custom = [e for e in res.record.events if e.type == "job.found"]
    assert custom[0].message == "Staff Engineer" and custom[0].detail == {"company": "Anthropic"}
    assert [e.type for e in res.record.events].count("state.updated") == 2


async def test_a_resume_neither_applies_a_state_update_nor_writes_an_event_again(
    app: App,
) -> None:
    seen: list[object] = []

    async def flow(wf: Workflow) -> object:
        visits = await wf.update_state(lambda s: {**s, "visits": s["visits"] + 1})
        seen.append(visits)
        await wf.append_event("visited", "once")
        for i in range(2):  # a loop's calls are occurrences, as its steps are
            await wf.update_state(lambda s: {**s, "loop": s.get("loop", 0) + 1})
            await wf.append_event("looped", str(i))
        await wf.wait_for_signal("go")
        return wf.state

    await app.arun(flow, workflow_id="visits", initial_state={"visits": 0})
    await app.arun(flow, workflow_id="visits")  # resumed while still waiting
    await app.asignal("visits", "go")
    done = await app.aresume("visits")
    assert done.value == {"visits": 1, "loop": 2}
    assert seen == [{"visits": 1}] * 3  # each drive got the state this call wrote
    types = [e.type for e in done.record.events]
    assert types.count("visited") == 1 and types.count("looped") == 2
    assert types.count("state.updated") == 3


async def test_unserialisable_state_writes_nothing(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.update_state({"ok": 1})
        with pytest.raises(tether.NotSerializableError, match="workflow state"):
            await wf.update_state({"bad": object()})

    res = await app.arun(flow, workflow_id="state-bad")
    assert res.record.state == {"ok": 1}


async def test_failed_workflow_records_error_and_reraises(app: App) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise LookupError("no such job")

    with pytest.raises(LookupError):
        await app.arun(flow, workflow_id="fail-1")
    rec = await app.aget_record("fail-1")
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None
    assert rec.last_error.type == "LookupError"
    assert rec.last_error.message == "no such job"


async def test_record_exports_seed_shape(app: App) -> None:
    async def flow(wf: Workflow) -> str:
        await wf.step("a", lambda: {"x": 1}, idempotency_key="k")
        await wf.heartbeat("w", "alive")
        await wf.touch_lease("slot", holder="me", ttl=10)
        return "done"

    res = await app.arun(flow, workflow_id="export-1", initial_state={"n": 1})
    data = json.loads(res.record.to_json())
    for key in (
        "version",
        "workflowId",
        "status",
        "createdAt",
        "updatedAt",
        "state",
        "steps",
        "events",
        "heartbeats",
        "leases",
        "lastError",
    ):
        assert key in data
    assert data["version"] == 1
    assert data["workflowId"] == "export-1"
    assert data["status"] == "completed"
    assert data["steps"]["a@k"] == {
        "status": "completed",
        "attempts": 1,
        "idempotencyKey": "k",
        "result": {"x": 1},
        "error": None,
        "startedAt": data["steps"]["a@k"]["startedAt"],
        "completedAt": data["steps"]["a@k"]["completedAt"],
    }
    assert data["steps"]["a@k"]["completedAt"].endswith("Z")
    assert data["leases"]["slot"]["holder"] == "me"
    assert data["heartbeats"]["w"]["detail"] == "alive"
    assert data["events"][0]["type"] == "workflow.running"
    assert data["lastError"] is None


async def test_list_and_get_runs(app: App, clock: FakeClock) -> None:
    async def ok(wf: Workflow) -> None:
        return None

    async def bad(wf: Workflow) -> None:
        raise RuntimeError("x")

    await app.arun(ok, workflow_id="r1")
    clock.advance(1)
    with pytest.raises(RuntimeError):
        await app.arun(bad, workflow_id="r2")
    runs = await app.alist_runs()
    assert [r.workflow_id for r in runs] == ["r2", "r1"]
    failed = await app.alist_runs(status="failed")
    assert [r.workflow_id for r in failed] == ["r2"]
    with pytest.raises(tether.InvalidArgumentError, match="unknown run status"):
        await app.alist_runs(status="bogus")
    with pytest.raises(tether.RunNotFoundError, match="nope"):
        await app.aget_record("nope")
    assert (await app.aget_run("r1")).status is RunStatus.COMPLETED


async def test_new_owner_fences_out_the_old_one(database_url: str, clock: FakeClock) -> None:
    first = App(database_url, clock=clock)
    second = App(database_url, clock=clock)
    try:
        steps_done: list[str] = []

        async def flow(wf: Workflow) -> None:
            await wf.step("one", lambda: steps_done.append("one"))
            # while the first owner's claim is live, nobody else may drive the run
            with pytest.raises(tether.RunAlreadyRunningError, match="being driven by"):
                await second.arun(flow_other, workflow_id="fenced")
            # once it lapsed (the owner stopped renewing it), another process takes over
            clock.advance(31)
            await second.arun(flow_other, workflow_id="fenced")
            await wf.step("two", lambda: steps_done.append("two"))

        async def flow_other(wf: Workflow) -> str:
            return "taken"

        flow_other.__qualname__ = flow.__qualname__
        with pytest.raises(tether.StaleOwnerError):
            await first.arun(flow, workflow_id="fenced")
        rec = await second.aget_record("fenced")
        assert "two" not in rec.steps  # the stale owner's write did not land
        assert rec.status is RunStatus.COMPLETED  # and it did not mark the run failed
        assert rec.output == "taken"
        assert steps_done == ["one"]  # the fenced start marker stopped it before running
    finally:
        await first.aclose()
        await second.aclose()


def test_sync_facade_runs_and_refuses_inside_a_loop(tmp_path: object) -> None:
    import asyncio

    app = App(f"sqlite:///{tmp_path}/sync.db")

    async def flow(wf: Workflow) -> int:
        return await wf.step("a", lambda: 5)

    try:
        assert app.run(flow, workflow_id="sync-1").value == 5
        assert app.run(flow, workflow_id="sync-1").value == 5  # a second loop, same store
        assert [r.workflow_id for r in app.list_runs()] == ["sync-1"]
        assert app.get_record("sync-1").status is RunStatus.COMPLETED

        async def inside() -> None:
            with pytest.raises(tether.TetherError, match=r"await app\.arun"):
                app.run(flow, workflow_id="sync-2")

        asyncio.run(inside())
    finally:
        app.close()


async def test_open_workflow_functional_form(tmp_path: object, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/fn.db"

    async def flow(wf: Workflow) -> int:
        return await wf.step("a", lambda: 3)

    res = await tether.run_workflow(
        flow, workflow_id="fn-1", initial_state={"a": 1}, database_url=url, clock=clock
    )
    assert res.value == 3 and res.record.state == {"a": 1}
    async with await tether.open_workflow(workflow_id="fn-1", database_url=url) as wf:
        assert wf.state == {"a": 1}
        assert await wf.step("a", lambda: 99) == 3  # answered from the record
        assert wf.workflow_name == res.record.workflow_name


def test_default_url_uses_env_then_dot_tether(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    monkeypatch.chdir(str(tmp_path))
    monkeypatch.delenv("TETHER_DATABASE_URL", raising=False)
    app = App()
    assert app.store.url == "sqlite:///.tether/tether.db"
    app.close()
    monkeypatch.setenv("TETHER_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    app = App()

    async def flow(wf: Workflow) -> None:
        return None

    app.run(flow, workflow_id="env")
    app.close()
    assert Path(f"{tmp_path}/env.db").exists()


async def test_an_event_type_is_one_line(app: App) -> None:
    """A line break in an event type would forge frames in the live event stream."""

    @app.workflow(name="forges")
    async def forges(wf: Workflow) -> None:
        await wf.append_event("progress", "fine")
        await wf.append_event("progress\nevent: end", "forged")

    with pytest.raises(tether.InvalidArgumentError, match="one line of text"):
        await app.arun(forges, workflow_id="f1")
    record = await app.aget_record("f1")
    assert [e.type for e in record.events if e.type.startswith("progress")] == ["progress"]


async def test_start_and_submit_of_an_existing_id_with_another_input_are_refused(
    app: App,
) -> None:
    """As `run` refuses it (before: the call returned the id, and the new input was
    dropped without a word)."""

    @app.workflow(name="hello")
    async def hello(wf: Workflow, who: str) -> str:
        return f"hi {who}"

    assert (await app.arun(hello, "Ada", workflow_id="h1")).value == "hi Ada"
    for call in (app.astart, app.asubmit):
        with pytest.raises(tether.InvalidArgumentError, match="started with a different input"):
            await call(hello, "Bob", workflow_id="h1")
        assert await call(hello, "Ada", workflow_id="h1") == "h1"  # the same: its id
    assert (await app.aresult("h1")).value == "hi Ada"


async def test_a_run_that_ends_between_a_drivers_read_and_its_claim_is_not_run_again(
    database_url: str, clock: FakeClock
) -> None:
    """A driver read the run live (another caller was finishing it) and claims it a
    moment later, after it completed: the claim is refused and the driver answers as
    the run ended. Before, the claim took the completed run back to running and its
    workflow function ran a second time (two idempotent starts could both run it)."""
    from dataclasses import replace

    from tether.store import open_store

    base: type = type(open_store(database_url))
    stale: set[str] = set()

    class StaleOnce(base):  # type: ignore[misc, valid-type]
        async def get_run(self, workflow_id: str) -> object:
            row = await super().get_run(workflow_id)
            if row is not None and workflow_id in stale:
                stale.discard(workflow_id)  # read before its end committed
                return replace(row, status=RunStatus.RUNNING, end_reason=None)
            return row

    bodies: list[str] = []
    async with App(store=StaleOnce(database_url), clock=clock) as app:

        @app.workflow(name="once")
        async def once(wf: Workflow) -> int:
            bodies.append(wf.workflow_id)
            return int(await wf.step("one", lambda: 1))

        assert (await app.arun(once, workflow_id="o1")).value == 1
        stale.add("o1")
        assert (await app.arun(once, workflow_id="o1")).value == 1
        record = await app.aget_record("o1")
    assert bodies == ["o1"]
    assert [e.type for e in record.events].count("workflow.running") == 1
    assert record.status is RunStatus.COMPLETED


async def test_close_lets_a_sinks_delivery_in_flight_finish(sqlite_url: str) -> None:
    broker = HeldBroker()
    sink = CallableSink(broker.deliver)
    app = App(sqlite_url, sinks=[sink])
    event = OutboxEvent("r1", 1, "step.completed", None, None, datetime.now(UTC), 1)
    delivery = asyncio.ensure_future(sink.publish(event))
    await eventually(broker.started.is_set)
    closing = asyncio.ensure_future(app.aclose())
    broker.release.set()
    await closing
    assert broker.finished == [1]  # delivered before the App closed, not cut off after
    await delivery


def test_a_sink_not_in_a_list_is_refused_saying_so(sqlite_url: str) -> None:
    """`App(sinks=LoggingSink())` was a raw TypeError ('object is not iterable') from
    building the settings before the options were checked."""
    from tether.kernel import LoggingSink

    with pytest.raises(tether.InvalidArgumentError, match=r"sinks must be a list of event sinks"):
        App(sqlite_url, sinks=LoggingSink())  # type: ignore[arg-type]
