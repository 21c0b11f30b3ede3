"""A new user's walk through stage pipelines (session 41): bare `@batch_stage`, and
what a walk of chains, config, outcomes and replay found."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, PipelineError, RunStatus, ai
from tether.errors import NotSerializableError
from tether.stages import StageError


class Text(BaseModel):
    text: str


def test_a_bare_batch_stage_is_refused_saying_what_to_write() -> None:
    """It failed with a TypeError (takes 0 positional arguments) naming no stage."""

    async def embed(ctx: tether.StageContext[None, None]) -> tether.Suspend:
        return tether.Suspend({"batch": "b1"})

    with pytest.raises(PipelineError, match=r"'embed'.*needs its output model") as info:
        tether.batch_stage(embed)
    assert "@batch_stage(id='embed', output=Text)" in str(info.value)


def test_a_batch_stage_declared_in_full_still_works() -> None:
    @tether.batch_stage(id="embed", output=Text)
    async def embed(ctx: tether.StageContext[None, None]) -> tether.Suspend:
        return tether.Suspend({"batch": "b1"})

    assert embed.id == "embed" and embed.mode == "batch" and embed.output is Text


class Label(BaseModel):
    label: str
    urgent: bool


async def test_a_stage_returning_the_generate_object_result_is_told_to_return_its_object(
    database_url: str,
) -> None:
    """Returned whole, the ObjectResult failed as missing every field of Label, its
    message quoting the whole result (usage, text) once per field."""

    @tether.stage(id="classify", input=Text, output=Label)
    async def classify(ctx: tether.StageContext[Text, None]) -> Label:
        result = await ctx.ai.generate_object("fake:m", Label, ctx.input.text)
        return result  # type: ignore[return-value]  # the mistake: not result.object

    fake = ai.FakeModel(['{"label": "bug", "urgent": true}'])
    pipeline = tether.Pipeline("classify", input=Text, output=Label).pipe(classify)
    async with App(database_url, clock=FakeClock(), ai=ai.Providers(fake=fake)) as app:
        with pytest.raises(StageError) as info:
            await app.arun(pipeline, Text(text="it broke"), workflow_id="c1")
        said = str(info.value)
        assert (
            "'classify' returned a value of type ObjectResult[Label], not its output Label" in said
        )
        assert "return result.object" in said and "usage" not in said
        record = await app.aget_record("c1")
        assert record.status is RunStatus.FAILED
        assert record.stages[0].error == f"StageError: {said}"


async def test_a_log_field_json_cannot_hold_is_refused_naming_the_stage_and_field(
    database_url: str,
) -> None:
    """It was refused as "event 'stage.log' detail" at $.fields.when, telling the code to
    "Return JSON data", which names neither the stage nor the call."""
    seen: list[str] = []

    @tether.stage(id="read", input=Text, output=Text)
    async def read(ctx: tether.StageContext[Text, None]) -> Text:
        for fields in ({"handle": object()}, {"ratio": float("nan")}):
            with pytest.raises(NotSerializableError) as info:
                await ctx.log("info", "read", **fields)
            seen.append(str(info.value))
        await ctx.log("info", "read", size=len(ctx.input.text), doc=ctx.input)
        return ctx.input

    async with App(database_url, clock=FakeClock()) as app:
        done = await app.arun(tether.Pipeline("read", input=Text).pipe(read), Text(text="a"))
        assert done.value == Text(text="a")
        logged = [e.detail for e in done.record.events if e.type == "stage.log"]
    assert seen[0].startswith("field of ctx.log in stage 'read' cannot be stored as JSON")
    assert "at $.handle" in seen[0] and "x=str(value)" in seen[0]
    assert seen[1].startswith("field of ctx.log in stage 'read'") and "nan" in seen[1]
    assert [d["fields"] for d in logged if d] == [{"size": 1, "doc": {"text": "a"}}]
