"""A stage's output is checked as it will be read back: an instance of its model that
skipped its checks, or that holds what JSON cannot, fails that stage, named, before
anything is recorded as done; dependencies are declared as a list."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ConfigDict, Field

import tether
from tether import App, RunStatus

from ._flows import Doc, Text


class Positive(BaseModel):
    x: int = Field(ge=0)


class Handle:
    """What a stage may hold by mistake: a client, a file, a lock."""


class Holder(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    h: Handle


class Held(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    ok: int = 1
    items: list[Holder]


@tether.stage(id="mutates", input=Doc, output=Positive)
async def mutates(ctx: tether.StageContext[Doc, None]) -> Positive:
    out = Positive(x=1)
    out.x = -5  # no validate_assignment: the model's check is skipped
    return out


@tether.stage(id="holds", input=Doc, output=Held)
async def holds(ctx: tether.StageContext[Doc, None]) -> Held:
    return Held(items=[Holder(h=Handle())])


async def test_an_output_changed_past_its_checks_fails_its_stage(app: App) -> None:
    # before: recorded as completed, then the run failed with a bare ValidationError
    p = tether.Pipeline("mutated", input=Doc).pipe(mutates)
    with pytest.raises(tether.StageError, match=r"stage 'mutates' returned a value that is "
                       r"not its output Positive: x: Input should be greater"):  # fmt: skip
        await app.arun(p, Doc(url="u"), workflow_id="m1")
    rec = await app.aget_record("m1")
    assert rec.status is RunStatus.FAILED
    assert [(s.id, s.status) for s in rec.stages] == [("mutates", "failed")]
    assert "stage:mutates" not in rec.steps


async def test_an_output_json_cannot_hold_fails_its_stage_naming_the_field(app: App) -> None:
    # before: "value of type Held at $ is not JSON-serialisable ... return a pydantic
    # model", raised by the stage's output step, and no error on the stage
    p = tether.Pipeline("held", input=Doc).pipe(holds)
    expected = (r"stage 'holds' returned an output that cannot be stored as JSON: "
                r"items\[0\]\.h of its Held holds a .*Handle; declare that field")  # fmt: skip
    with pytest.raises(tether.StageError, match=expected):
        await app.arun(p, Doc(url="u"), workflow_id="h1")
    rec = await app.aget_record("h1")
    [stage] = rec.stages
    assert stage.status == "failed" and "items[0].h of its Held" in (stage.error or "")


class Reading(BaseModel):
    value: float
    label: str


@pytest.mark.parametrize(
    ("out", "why"),
    [
        (Reading(value=float("nan"), label="ok"), r"is nan, and JSON has no NaN"),
        (Reading(value=1.0, label="a\x00b"), r"contains a NUL character"),
        (Reading(value=1.0, label="a\ud800b"), r"surrogates not allowed"),
    ],
    ids=["nan", "nul", "lone-surrogate"],
)
async def test_an_output_its_record_cannot_hold_fails_its_stage(
    app: App, out: Reading, why: str
) -> None:
    # before: the stage's output step refused it (a surrogate as a bare
    # UnicodeEncodeError), naming the step 'stage:measure'; the stage read `failed`
    # with no error and no stage.failed event
    @tether.stage(id="measure", input=Doc, output=Reading)
    async def measure(ctx: tether.StageContext[Doc, None]) -> Reading:
        return out

    p = tether.Pipeline("unrecordable", input=Doc).pipe(measure)
    expected = r"stage 'measure' returned an output that cannot be stored as JSON: .*"
    with pytest.raises(tether.StageError, match=expected + why):
        await app.arun(p, Doc(url="u"), workflow_id="u1")
    rec = await app.aget_record("u1")
    [stage] = rec.stages
    assert stage.status == "failed" and "stage 'measure' returned" in (stage.error or "")
    assert "stage:measure" not in rec.steps
    assert [e.message for e in rec.events if e.type == "stage.failed"] == ["measure"]


@pytest.mark.parametrize("given", ["extract", 1, [1]], ids=["one-id", "int", "list-of-int"])
def test_dependencies_that_are_not_a_list_of_stages_are_refused(given: object) -> None:
    # before: "extract" was read as its letters, 1 failed with a bare TypeError and
    # [1] with an AttributeError
    with pytest.raises(tether.PipelineError, match=r"stage 'agg': depend.*e\.g\. dependencies="):
        tether.stage(id="agg", output=Text, dependencies=given)  # type: ignore[arg-type]


def test_dependencies_may_be_any_iterable_of_stages_or_ids() -> None:
    @tether.stage(id="agg", output=Text, dependencies=(d for d in ["extract", "keywords"]))
    async def agg(ctx: tether.StageContext[object, None]) -> Text:
        raise AssertionError("never runs")

    assert agg.dependencies == ("extract", "keywords")


class Moment(BaseModel):
    at: datetime


@tether.stage(id="dated", input=Doc, output=Moment)
async def dated(ctx: tether.StageContext[Doc, None]) -> Moment:
    # Amsterdam's local mean time before 1937: +00:19:32, an offset with seconds
    return Moment(at=datetime(1900, 6, 1, 12, tzinfo=ZoneInfo("Europe/Amsterdam")))


@tether.stage(id="reads_date", input=Moment, output=Text, dependencies=[dated])
async def reads_date(ctx: tether.StageContext[Moment, None]) -> Text:
    return Text(text=ctx.input.at.isoformat(), words=1)


async def test_a_datetime_whose_offset_has_seconds_reaches_the_next_stage_unchanged(
    app: App,
) -> None:
    # the next stage's input was validated from pydantic's text of the offset, cut to
    # the minute (another instant), and then refused once serde wrote it in full
    p = tether.Pipeline("dated", input=Doc).pipe(dated).pipe(reads_date)
    res = await app.arun(p, Doc(url="u"), workflow_id="d1")
    assert res.value == Text(text="1900-06-01T12:00:00+00:19:32", words=1)


@tether.stage(id="reads_given", input=Moment, output=Text)
async def reads_given(ctx: tether.StageContext[Moment, None]) -> Text:
    return Text(text=ctx.input.at.isoformat(), words=1)


async def test_a_pipeline_input_whose_offset_has_seconds_is_kept(app: App) -> None:
    p = tether.Pipeline("given", input=Moment).pipe(reads_given)
    at = datetime(1900, 6, 1, 12, tzinfo=ZoneInfo("Europe/Amsterdam"))
    res = await app.arun(p, Moment(at=at), workflow_id="g1")
    assert res.value == Text(text="1900-06-01T12:00:00+00:19:32", words=1)
