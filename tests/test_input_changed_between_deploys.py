"""A run started under one version of a workflow, resumed by a deploy whose input type
its recorded input no longer fits (v2 takes a model where v1 took a str, declared
`compatible=["1"]`). Before, the resume raised pydantic's bare ValidationError after
claiming the run, and the run stayed `running` with a claim nobody drove: every later
resume met the same error, and no process could take the run over until the claim
lapsed. Now the run is handed back (pending) and the error says what to change."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tether import App, InvalidArgumentError, RunStatus, Workflow
from tether.testing import FakeClock


class Doc(BaseModel):
    url: str


async def test_a_recorded_input_that_no_longer_fits_is_refused_and_the_run_handed_back(
    database_url: str, clock: FakeClock
) -> None:
    async with App(database_url, clock=clock, resume_woken=False) as v1:  # v2 drives it

        @v1.workflow(name="fetch", version="1")
        async def fetch_v1(wf: Workflow, doc: str) -> str:
            await wf.wait_for_signal("go")
            return doc

        assert (await v1.arun(fetch_v1, "u", workflow_id="r")).status is RunStatus.WAITING
        await v1.asignal("r", "go")  # answered: the next drive goes on from here

    async with App(database_url, clock=clock) as v2:

        @v2.workflow(name="fetch", version="2", compatible=["1"])
        async def fetch_v2(wf: Workflow, doc: Doc) -> str:
            await wf.wait_for_signal("go")
            return doc.url

        with pytest.raises(InvalidArgumentError) as refused:
            await v2.aresume("r")
        said = str(refused.value)
        assert "recorded input" in said and "Doc" in said and "version '1'" in said, said
        run = await v2.aget_run("r")
        assert run.status is RunStatus.PENDING and run.owner_expires_at is None  # handed back
        events = [(e.type, e.message) for e in (await v2.aget_record("r")).events]
        assert events[-1] == ("workflow.handed_back", "recorded input does not fit")
        with pytest.raises(InvalidArgumentError):  # the same answer, not a stuck claim
            await v2.aresume("r")
