"""A declared type that no value can be stored as is refused before anything runs,
with an error saying so, not pydantic's own error after the step's side effect."""

from __future__ import annotations

import sys
import typing

import pytest

import tether
from tether import App, RunStatus, Workflow


class Response:
    """A class pydantic knows nothing of (an HTTP client's response, say)."""

    def __init__(self, status: int) -> None:
        self.status = status


class Job(typing.TypedDict):  # typing's, which pydantic refuses before Python 3.12
    company: str


async def test_a_step_declaring_a_type_it_cannot_store_is_refused_before_it_runs(
    app: App,
) -> None:
    calls: list[int] = []

    def fetch() -> Response:
        calls.append(1)  # the side effect a refusal after the call would have repeated
        return Response(200)

    async def flow(wf: Workflow) -> str:
        with pytest.raises(tether.InvalidArgumentError, match=r"step 'fetch'.*Response"):
            await wf.step("fetch", fetch, retry=3)
        with pytest.raises(tether.InvalidArgumentError, match=r"step 'odd'.*\[<class 'int'>\]"):
            await wf.step("odd", lambda: [1], result_type=[int])  # not a type
        return "fixed"

    result = await app.arun(flow, workflow_id="types-1")
    assert result.value == "fixed" and calls == []
    assert result.record.steps == {}  # nothing recorded: fixing the code is all it takes


async def test_a_workflow_input_type_it_cannot_store_is_refused_before_a_run_exists(
    app: App,
) -> None:
    @app.workflow(name="apply")
    async def apply(wf: Workflow, job: Job) -> str:
        return job["company"]

    if sys.version_info < (3, 12):
        with pytest.raises(tether.InvalidArgumentError, match=r"input parameter.*'apply'.*Job"):
            await app.arun(apply, {"company": "Acme"}, workflow_id="apply-1")
        assert await app.alist_runs() == []
    else:  # pydantic takes typing.TypedDict from 3.12 on
        assert (await app.arun(apply, {"company": "Acme"}, workflow_id="apply-1")).value == "Acme"


async def test_a_workflow_result_type_it_cannot_store_fails_the_run_saying_so(app: App) -> None:
    @app.workflow(name="probe")
    async def probe(wf: Workflow) -> Response:
        return Response(200)

    for _ in range(2):  # and again, asked for the failed run's answer
        with pytest.raises(tether.InvalidArgumentError, match=r"workflow 'probe'.*Response"):
            await app.arun(probe, workflow_id="probe-1")
    assert (await app.aget_run("probe-1")).status is RunStatus.FAILED
