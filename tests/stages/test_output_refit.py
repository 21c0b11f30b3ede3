"""A pipeline run's recorded output that no longer fits the pipeline's output type.

A pipeline has no return annotation: its output type is its `output=`, else its
last stage's (that stage's `output=` or return annotation). Reading such a run
back, or a parent replaying its wait on such a child, says which to change;
before, it said "declare on workflow 'pp' a return type", which a pipeline has
nowhere to declare.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import TetherError

from ._flows import Doc


class Said(BaseModel):
    text: str


class Counted(BaseModel):
    text: int


def _built(out: type[BaseModel], how: str) -> tether.Pipeline[Any, Any]:
    """Pipeline "pp" of one stage "one" returning `out`, its output type declared `how`:
    on the pipeline, on the stage (output=), or by the stage's return annotation."""

    if out is Said:

        async def one(ctx: tether.StageContext[Doc, None]) -> Said:
            return Said(text="hello")
    else:

        async def one(ctx: tether.StageContext[Doc, None]) -> Counted:
            return Counted(text=1)

    made = tether.stage(one) if how == "annotation" else tether.stage(id="one", output=out)(one)
    return tether.Pipeline("pp", input=Doc, output=out if how == "pipeline" else None).pipe(made)


_WAYS = {
    "pipeline": "give pipeline 'pp' an output= (now: Counted) that the recorded value fits",
    "stage": "give pipeline 'pp' an output= (now: its last stage 'one''s output=, Counted) "
    "that the recorded value fits",
    "annotation": "give pipeline 'pp' an output= (now: its last stage 'one''s return "
    "annotation, Counted) that the recorded value fits",
}


@pytest.mark.parametrize("how", list(_WAYS))
async def test_a_pipeline_runs_unfitting_output_names_where_its_type_comes_from(
    database_url: str, clock: FakeClock, how: str
) -> None:
    before = App(database_url, clock=clock)
    p = _built(Said, how)
    before.register(p)
    assert (await before.arun(p, Doc(url="u"), workflow_id="r1")).value == Said(text="hello")
    await before.aclose()

    after = App(database_url, clock=clock)
    try:
        after.register(_built(Counted, how))
        with pytest.raises(TetherError) as caught:
            await after.aresult("r1")
        message = str(caught.value)
        assert message.startswith("run 'r1' recorded a result that does not fit")
        assert message.endswith(f"read it with the code that ran it, or {_WAYS[how]}")
    finally:
        await after.aclose()


@pytest.mark.parametrize("how", list(_WAYS))
async def test_a_child_pipelines_unfitting_output_names_where_its_type_comes_from(
    database_url: str, clock: FakeClock, how: str
) -> None:
    def parent_of(app: App, child: tether.Pipeline[Any, Any]) -> Any:
        app.register(child)

        @app.workflow(name="parent")
        async def parent(wf: Workflow) -> str:
            got = await wf.child(child, Doc(url="u"), workflow_id="p-c")
            await wf.wait_for_signal("go")
            return repr(got)

        return parent

    before = App(database_url, clock=clock, inline_wait=0)
    first = await before.arun(parent_of(before, _built(Said, how)), workflow_id="p")
    assert first.status is RunStatus.WAITING
    await before.aclose()

    after = App(database_url, clock=clock, inline_wait=0)
    try:
        parent = parent_of(after, _built(Counted, how))
        await after.asignal("p", "go")
        with pytest.raises(TetherError) as caught:
            await after.arun(parent, workflow_id="p")
        message = str(caught.value)
        assert message.startswith("child run 'p-c' of run 'p' recorded a result")
        assert message.endswith(f"resume run 'p' with the code that started it, or {_WAYS[how]}")
    finally:
        await after.aclose()
