"""The command kernel: typed commands, idempotency keys, rerun_from."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

import tether
from tether import App, RunStatus, Workflow
from tether.kernel import (
    RunCancel,
    RunCreate,
    RunCreated,
    RunRerunFrom,
    RunResume,
    RunResumed,
    Woken,
)
from tether.store import Store, open_store
from tether.testing import eventually
from tether.worker import ServerlessHost


async def test_commands_from_dicts_and_models(app: App) -> None:
    @app.workflow(name="hello")
    async def hello(wf: Workflow, name: str) -> str:
        return f"hi {name}"

    created = await app.kernel.adispatch(
        {"type": "run.create", "workflow": "hello", "input": "ada"}
    )
    assert isinstance(created, RunCreated) and created.created
    assert (await app.aresult(created.workflow_id, timeout=10)).value == "hi ada"
    with pytest.raises(tether.InvalidArgumentError, match=r"run\.create"):
        await app.kernel.adispatch({"type": "run.create", "workflow": ""})
    with pytest.raises(tether.InvalidArgumentError, match="type"):
        await app.kernel.adispatch({"type": "run.explode"})
    with pytest.raises(tether.WorkflowNotFoundError, match="nope"):
        await app.kernel.adispatch(RunCreate(workflow="nope"))


async def test_replaying_an_idempotency_key_returns_the_first_result(app: App) -> None:
    @app.workflow(name="job")
    async def job(wf: Workflow) -> None:
        await wf.wait_for_signal("go")

    first = await app.kernel.adispatch(RunCreate(workflow="job", idempotency_key="k1"))
    again = await app.kernel.adispatch(RunCreate(workflow="job", idempotency_key="k1"))
    assert isinstance(first, RunCreated) and isinstance(again, RunCreated)
    assert again.workflow_id == first.workflow_id
    assert (first.created, again.created) == (True, False)
    assert len(await app.alist_runs()) == 1
    cancel = RunCancel(workflow_id=first.workflow_id, idempotency_key="c1")  # type: ignore[union-attr]
    assert await app.kernel.adispatch(cancel) == await app.kernel.adispatch(cancel)
    # without the key, cancelling again is an error: the run already ended
    with pytest.raises(tether.RunFinishedError):
        await app.kernel.adispatch(RunCancel(workflow_id=first.workflow_id))  # type: ignore[union-attr]


class HeldSendEvent:
    """A real store whose `send_event` waits until `release` is set (a slow database)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.started = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send_event(self, *args: Any, **kwargs: Any) -> Any:
        self.started += 1
        await self.release.wait()
        return await self.inner.send_event(*args, **kwargs)


async def test_same_key_in_flight_raises_and_concurrent_dispatch_runs_once(
    database_url: str,
) -> None:
    store = HeldSendEvent(open_store(database_url))
    app = App(store=cast(Store, store))
    try:
        cmd = RunResume(kind="event", name="ping", payload={"n": 1}, idempotency_key="ev-1")
        first = asyncio.ensure_future(app.kernel.adispatch(cmd))
        await eventually(lambda: store.started, interval=0.001)
        with pytest.raises(tether.IdempotencyInProgressError, match="ev-1"):
            await app.kernel.adispatch(cmd)
        store.release.set()
        result = await first
        assert await app.kernel.adispatch(cmd) == result
        assert store.started == 1
    finally:
        await app.aclose()


async def test_concurrent_dispatch_across_apps(database_url: str) -> None:
    apps = [App(database_url) for _ in range(4)]
    try:
        for a in apps:

            @a.workflow(name="w")
            async def w(wf: Workflow) -> None:
                await wf.wait_for_signal("go")

        await apps[0].arun(apps[0].get_workflow("w").fn, workflow_id="only-one")
        cmd = RunResume(kind="signal", name="go", workflow_id="only-one", idempotency_key="once")
        outcomes = await asyncio.gather(
            *(a.kernel.adispatch(cmd) for a in apps), return_exceptions=True
        )
        ok = [o for o in outcomes if isinstance(o, RunResumed)]
        busy = [o for o in outcomes if isinstance(o, tether.IdempotencyInProgressError)]
        assert len(ok) + len(busy) == 4 and ok
        assert all(o == ok[0] for o in ok)  # replays return the first result
        assert ok[0].woken == ["only-one"]  # the signal was sent once: it woke the run
        waits = await apps[0].alist_waits("only-one")
        assert [w.status.value for w in waits] == ["resolved"]
        types = [e.type for e in (await apps[0].aget_record("only-one")).events]
        assert types.count("wait.resolved") == 1 and "signal.kept" not in types
    finally:
        for a in apps:
            await a.aclose()


async def test_rerun_from_forgets_that_step_and_later_ones(app: App) -> None:
    calls: list[str] = []

    @app.workflow(name="pipeline")
    async def pipeline(wf: Workflow) -> list[str]:
        out = []
        for name in ("extract", "summarise", "publish"):
            out.append(await wf.step(name, lambda n=name: calls.append(n) or n))
            app.clock.advance(1)  # type: ignore[attr-defined]
        return out

    res = await app.arun(pipeline, workflow_id="p")
    assert res.value == ["extract", "summarise", "publish"]
    woken = await app.kernel.adispatch(RunRerunFrom(workflow_id="p", step="summarise"))
    assert isinstance(woken, Woken)
    done = await app.aresult("p", timeout=10)
    for _ in range(200):
        done = await app.aresult("p", timeout=10)
        if len(calls) == 5:
            break
        await asyncio.sleep(0.005)
    assert calls == ["extract", "summarise", "publish", "summarise", "publish"]
    assert done.status is RunStatus.COMPLETED
    with pytest.raises(tether.InvalidArgumentError, match="no step 'nope'"):
        await app.kernel.adispatch(RunRerunFrom(workflow_id="p", step="nope"))


async def test_cancelling_a_job_execution_stops_driving_its_run(app: App) -> None:
    # a worker shutting down cancels its job executions before handing the jobs back:
    # the run must stop here too, or it starts more steps while another worker claims it
    entered = asyncio.Event()
    step_cancelled = asyncio.Event()
    later: list[str] = []

    @app.workflow(name="two-steps")
    async def two_steps(wf: Workflow) -> None:
        async def first() -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                step_cancelled.set()
                raise

        await wf.step("first", first)
        await wf.step("second", lambda: later.append("second"))

    wid = await app.asubmit(two_steps)
    host = ServerlessHost(app)
    [job] = await host.aclaim(1)
    execution = asyncio.ensure_future(host.ahandle_job(job))
    await entered.wait()
    execution.cancel()
    with pytest.raises(asyncio.CancelledError):
        await execution
    assert step_cancelled.is_set()
    assert later == []
    assert (await app.aget_record(wid)).steps["first"].completed_at is None
