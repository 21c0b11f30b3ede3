"""A step function that raises `asyncio.CancelledError` itself (a library re-raising
one), with nothing stopping the run: the attempt's failure, retried by its policy. As
a cancel it reached the caller of `app.run` as a CancelledError and handed the run
back, to do the same at every resume."""

from __future__ import annotations

import asyncio

import pytest

from tether import App, RunStatus, Workflow


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_step_raising_cancelled_error_itself_fails_the_step(app: App, kind: str) -> None:
    async def boom_async() -> str:
        raise asyncio.CancelledError

    def boom_sync() -> str:
        raise asyncio.CancelledError

    @app.workflow(name="self-cancel")
    async def flow(wf: Workflow) -> str:
        return await wf.step("boom", boom_async if kind == "async" else boom_sync)

    with pytest.raises(Exception, match=r"raised asyncio\.CancelledError though nothing") as e:
        await app.arun(flow, workflow_id="sc1")
    assert not isinstance(e.value, asyncio.CancelledError)
    run = await app.aget_run("sc1")
    assert run is not None and run.status is RunStatus.FAILED
    assert isinstance(e.value.__cause__, asyncio.CancelledError)


async def test_its_retry_policy_tries_it_again(app: App) -> None:
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise asyncio.CancelledError
        return "done"

    @app.workflow(name="self-cancel-retry")
    async def flow(wf: Workflow) -> str:
        return await wf.step("flaky", flaky, retry=2)

    result = await app.arun(flow, workflow_id="sc2")
    assert result.value == "done" and len(tries) == 2
