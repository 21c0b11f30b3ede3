"""A new user's walk of stages and pipelines: mistakes a first pipeline makes (a model
where a stage is wanted, `compatible="1.0"`, a required config of a pipeline called
from a workflow's code) get an error that says what was wrong and how to write it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import App, InvalidArgumentError, RunStatus
from tether.stages import PipelineError

from ._flows import Doc


class Text(BaseModel):
    text: str


class Model(BaseModel):
    name: str  # required: no default


def test_compatible_given_as_one_string_is_refused() -> None:
    # was taken letter by letter: ('1', '.', '0'), and runs of version "1.0" were
    # refused by the release that meant to resume them
    with pytest.raises(InvalidArgumentError, match=r"compatible must be a list.*\['1.0'\]"):
        tether.Pipeline("p", version="2", compatible="1.0")
    assert tether.Pipeline("p", version="2", compatible=iter(["1.0"])).definition().compatible == (
        "1.0",
    )


async def test_reading_a_model_where_a_stage_is_wanted_names_the_mistake(app: App) -> None:
    seen: dict[str, str] = {}

    @tether.stage(id="extract", input=Doc, output=Text)
    async def extract(ctx: tether.StageContext[Doc, None]) -> Text:
        await ctx.artifacts.put("a.txt", "a")
        return Text(text=ctx.input.url)

    @tether.stage(id="use", output=Text)
    async def use(ctx: tether.StageContext[Any, None]) -> Text:
        wrong: Any = Text  # the output model, where its stage is wanted
        for read in (ctx.require, ctx.optional):
            with pytest.raises(InvalidArgumentError) as sync_err:
                read(wrong)
            seen[str(sync_err.value).split(" takes")[0]] = str(sync_err.value)
        with pytest.raises(InvalidArgumentError) as async_err:
            await ctx.artifacts.list(stage=wrong)
        seen[str(async_err.value).split(" takes")[0]] = str(async_err.value)
        return ctx.require(extract)

    p: tether.Pipeline[Doc, Any] = (
        tether.Pipeline("walk38-require", input=Doc).pipe(extract).pipe(use)
    )
    app.register(p)
    done = await app.arun(p, Doc(url="u"), workflow_id="req-1")
    # before: AttributeError "type object 'Text' has no attribute 'id'", naming no stage
    assert done.status is RunStatus.COMPLETED
    assert set(seen) == {"ctx.require", "ctx.optional", "stage= of ctx.artifacts"}
    assert all("Text is a model, not a stage" in m for m in seen.values())
    assert "ctx.require(summarize) or ctx.require('summarize')" in seen["ctx.require"]


async def test_a_required_config_of_a_pipeline_called_from_code_says_how_to_give_it(
    app: App,
) -> None:
    @tether.stage(id="draft", input=Doc, output=Text, config=Model)
    async def draft(ctx: tether.StageContext[Doc, Model]) -> Text:
        return Text(text=f"{ctx.input.url} by {ctx.config.name}")

    p: tether.Pipeline[Doc, Any] = tether.Pipeline("walk38-config", input=Doc).pipe(draft)

    @app.workflow(name="walk38-caller")
    async def caller(wf: tether.Workflow, how: dict[str, Any]) -> str:
        doc = Doc(url=how["url"])
        run = p.bind(doc, {"draft": {"name": "gpt"}}) if how["bind"] else doc
        out: Text = await p(wf, run)
        return out.text

    # before: "config of stage 'draft' does not fit Model: name: Field required", with
    # no config= to give in a call from a workflow's code
    with pytest.raises(PipelineError, match=r"pipeline\.bind\(input, \{'draft': \{\.\.\.\}\}\)"):
        await app.arun(caller, {"url": "u", "bind": False}, workflow_id="cfg-1")
    done = await app.arun(caller, {"url": "u", "bind": True}, workflow_id="cfg-2")
    assert done.value == "u by gpt"
