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


def test_stage_called_without_id_or_output_takes_them_from_the_function() -> None:
    """``@tether.stage()`` or ``@tether.stage(input=Text)`` said "stage id None is not
    valid", though bare ``@tether.stage`` infers both."""

    @tether.stage()
    async def extract(ctx: tether.StageContext[None, None]) -> Text:
        return Text(text="x")

    @tether.stage(input=Text, description="labels a text")
    async def classify(ctx: tether.StageContext[Text, None]) -> Label:
        return Label(label="x", urgent=False)

    @tether.stage(id="short", input=Text)
    async def summarise(ctx: tether.StageContext[Text, None]) -> Text:
        return ctx.input

    assert (extract.id, extract.output) == ("extract", Text)
    assert (classify.id, classify.output, classify.input) == ("classify", Label, Text)
    assert classify.description == "labels a text"
    assert (summarise.id, summarise.output) == ("short", Text)

    with pytest.raises(PipelineError, match=r"'loose': without output=.*-> Text"):

        @tether.stage(input=Text)
        async def loose(ctx: tether.StageContext[Text, None]):  # type: ignore[no-untyped-def]
            return ctx.input


async def test_a_progress_message_that_is_not_text_is_refused(database_url: str) -> None:
    """``ctx.progress(0.5, 7)`` was taken as it was and recorded as the event's message."""
    said: list[str] = []

    @tether.stage(id="count", input=Text, output=Text)
    async def count(ctx: tether.StageContext[Text, None]) -> Text:
        with pytest.raises(tether.InvalidArgumentError) as info:
            await ctx.progress(0.5, 7)  # type: ignore[arg-type]
        said.append(str(info.value))
        await ctx.progress(1.0, "7 of 7")
        return ctx.input

    async with App(database_url, clock=FakeClock()) as app:
        done = await app.arun(tether.Pipeline("count", input=Text).pipe(count), Text(text="a"))
    assert said == ["progress message is text, got 7; pass e.g. f'{done} of {total}'"]
    messages = [e.message for e in done.record.events if e.type == "stage.progress"]
    assert messages == ["7 of 7"]
