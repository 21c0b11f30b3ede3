"""Pipelines are checked when built and their run config before anything runs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field

import tether
from tether import PipelineError
from tether.stages._chain import accepts

from ._flows import Doc, Keywords, Report, Summary, Text, aggregate, extract, keywords, summarize


class Other(BaseModel):
    amount: int


def test_groups_chain_and_parallel_outputs_map_by_stage_id() -> None:
    p = tether.Pipeline("p", input=Doc, output=Report).pipe(extract).parallel([summarize, keywords])
    p = p.pipe(aggregate)
    assert [[s.id for s in g] for g in p.groups] == [["extract"], ["summarize", "keywords"],
                                                     ["aggregate"]]  # fmt: skip
    p.check()


def test_each_builder_call_returns_a_new_pipeline() -> None:
    base = tether.Pipeline("p", input=Doc).pipe(extract)
    longer = base.pipe(summarize)
    assert len(base.groups) == 1 and len(longer.groups) == 2


def test_parallel_of_an_empty_generator_is_refused_when_built() -> None:
    """`.parallel(s for s in stages if ...)` matching none was taken as a group of no
    stages: the run then failed with "max_parallel must be an integer >= 1"."""
    chosen = (s for s in (summarize, keywords) if s.id == "none")
    with pytest.raises(PipelineError, match="parallel takes a non-empty list of stages"):
        tether.Pipeline("p", input=Doc).pipe(extract).parallel(chosen)
    built = tether.Pipeline("p", input=Doc).pipe(extract).parallel(iter([summarize, keywords]))
    assert [s.id for s in built.groups[1]] == ["summarize", "keywords"]


def test_duplicate_stage_ids_are_refused() -> None:
    with pytest.raises(PipelineError, match="'extract' appears twice"):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(extract)
    with pytest.raises(PipelineError, match="appears twice"):
        tether.Pipeline("p", input=Text).parallel([summarize, summarize])


def test_a_dependency_that_does_not_run_earlier_is_refused() -> None:
    with pytest.raises(PipelineError, match="depends on 'summarize'"):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(aggregate)


def test_models_that_do_not_chain_are_refused_naming_both() -> None:
    @tether.stage(id="bill", input=Other, output=Other)
    async def bill(ctx: tether.StageContext[Other, None]) -> Other:
        return ctx.input

    with pytest.raises(PipelineError, match=r"'bill' takes Other.*output Text of stage 'extract'"):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(bill)
    with pytest.raises(PipelineError, match="pipeline input Doc"):
        tether.Pipeline("p", input=Doc).pipe(bill)


def test_a_stage_after_a_parallel_group_takes_a_model_keyed_by_stage_id() -> None:
    class Both(BaseModel):
        summarize: Summary
        keywords: Keywords

    class Wrong(BaseModel):
        summary: Summary

    @tether.stage(id="join", input=Both, output=Report)
    async def join(ctx: tether.StageContext[Both, None]) -> Report:
        return Report(summary=ctx.input.summarize.summary, keywords=ctx.input.keywords.words)

    @tether.stage(id="bad-join", input=Wrong, output=Report)
    async def bad_join(ctx: tether.StageContext[Wrong, None]) -> Report:
        raise AssertionError("never runs")

    base = tether.Pipeline("p", input=Text).parallel([summarize, keywords])
    base.pipe(join).check()
    with pytest.raises(PipelineError, match="parallel group"):
        base.pipe(bad_join)


def test_the_declared_output_must_fit_the_last_group() -> None:
    with pytest.raises(PipelineError, match="its output Report does not fit"):
        tether.Pipeline("p", input=Doc, output=Report).pipe(extract).check()
    with pytest.raises(PipelineError, match="no stages"):
        tether.Pipeline("p").check()


def test_bad_stage_declarations_say_what_to_write() -> None:
    with pytest.raises(PipelineError, match="stage id 'a b' is not valid"):
        tether.stage(id="a b", output=Text)
    with pytest.raises(PipelineError, match="output must be a pydantic model"):

        @tether.stage(id="x", output=dict)  # type: ignore[arg-type]
        async def x(ctx: object) -> dict:  # type: ignore[type-arg]
            return {}

    with pytest.raises(PipelineError, match="must be an `async def"):
        tether.stage(id="y", output=Text)(lambda ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(PipelineError, match="not a stage"):
        tether.Pipeline("p").pipe(extract.fn)  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="non-empty list"):
        tether.Pipeline("p").parallel([])


@pytest.mark.parametrize("name", [None, "", "  ", 5])
def test_a_pipeline_without_a_name_is_refused_when_built(name: object) -> None:
    # None built a pipeline registered as "Pipeline" (its class), whose runs then
    # failed with a ValidationError of PipelineRun
    with pytest.raises(PipelineError, match="a pipeline's name must be a non-empty str"):
        tether.Pipeline(name, input=Doc)  # type: ignore[arg-type]


def test_a_batch_stage_without_a_check_is_refused_when_piped() -> None:
    @tether.batch_stage(id="b", output=Text)
    async def b(ctx: object) -> tether.Suspend:
        return tether.Suspend({"id": 1})

    with pytest.raises(PipelineError, match="batch stage 'b' has no check"):
        tether.Pipeline("p").pipe(b)
    with pytest.raises(PipelineError, match="not a batch stage"):
        extract.check(lambda *a: None)  # type: ignore[arg-type,return-value]


def test_config_is_validated_per_stage_with_defaults_before_anything_runs() -> None:
    p = tether.Pipeline("p", input=Doc).pipe(extract)
    run = p.bind({"url": "u"}, {"extract": {"max_length": 5}})
    assert run.config == {"extract": {"max_length": 5, "fail": False}}
    assert p.bind({"url": "u"}, None).config == {"extract": {"max_length": 200, "fail": False}}
    with pytest.raises(PipelineError, match=r"config of stage 'extract'.*max_length"):
        p.bind({"url": "u"}, {"extract": {"max_length": "lots"}})
    with pytest.raises(PipelineError, match=r"names \['extrakt'\], which are not stages"):
        p.bind({"url": "u"}, {"extrakt": {}})
    with pytest.raises(PipelineError, match="input of pipeline 'p' does not fit Doc"):
        p.bind({"uri": "u"}, None)
    with pytest.raises(PipelineError, match="takes no config"):
        tether.Pipeline("q", input=Text).pipe(summarize).bind({"text": "", "words": 0},
                                                              {"summarize": {"x": 1}})  # fmt: skip


def test_a_config_key_the_stage_does_not_declare_is_refused_not_ignored() -> None:
    """A misspelt key (``max_len``) was dropped by the model, and the stage ran with
    its default: a config the caller believed applied, silently not."""
    p = tether.Pipeline("p", input=Doc).pipe(extract)
    with pytest.raises(
        PipelineError,
        match=r"config of stage 'extract' has no field 'max_len' .*fields: fail, "
        r"max_length\); did you mean 'max_length'\?",
    ):
        p.bind({"url": "u"}, {"extract": {"max_len": 5}})

    class Loose(BaseModel):
        model_config = ConfigDict(extra="ignore")  # said so: extra keys are dropped
        depth: int = 1

    @tether.stage(id="loose", input=Doc, output=Doc, config=Loose)
    async def loose(ctx: tether.StageContext[Doc, Loose]) -> Doc:
        return ctx.input

    run = tether.Pipeline("l", input=Doc).pipe(loose).bind({"url": "u"}, {"loose": {"x": 1}})
    assert run.config == {"loose": {"depth": 1}}


def test_suspend_and_not_ready_check_their_seconds() -> None:
    assert tether.Suspend({"id": 1}).poll_every == 30.0
    assert tether.Suspend({"id": 1}).max_wait == 24 * 3600.0
    with pytest.raises(
        tether.InvalidArgumentError, match="poll_every must be a number of seconds above 0"
    ):
        tether.Suspend({}, poll_every=0)
    with pytest.raises(tether.InvalidArgumentError, match="next_check_in"):
        tether.NotReady(next_check_in=-1)


def test_presets_compose_into_a_config_model() -> None:
    from tether.stages import AIConfig, ConcurrencyConfig

    class SummarizeConfig(AIConfig, ConcurrencyConfig):
        style: str = "brief"

    cfg = SummarizeConfig(temperature=0.2)
    assert (cfg.model, cfg.temperature, cfg.concurrency, cfg.style) == (
        "openai:gpt-4.1-mini", 0.2, 5, "brief")  # fmt: skip
    with pytest.raises(ValueError, match="temperature"):
        SummarizeConfig(temperature=3)


class Needs(BaseModel):
    words: list[str]


class Loose(BaseModel):
    words: float  # Text.words is an int: validates (lax), so it chains


def test_a_field_whose_types_never_meet_is_refused_naming_stages_field_and_types() -> None:
    @tether.stage(id="needs", input=Needs, output=Keywords)
    async def needs(ctx: tether.StageContext[Needs, None]) -> Keywords:
        raise AssertionError("never runs")

    @tether.stage(id="loose", input=Loose, output=Keywords)
    async def loose(ctx: tether.StageContext[Loose, None]) -> Keywords:
        raise AssertionError("never runs")

    with pytest.raises(
        PipelineError,
        match=r"stage 'needs' takes Needs, but the output Text of stage 'extract' does not fit "
        r"it: field 'words' is int in Text, but Needs wants list\[str\]",
    ):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(needs)
    tether.Pipeline("p", input=Doc).pipe(extract).pipe(loose)

    class MaybeNeeds(BaseModel):  # optional, but Text always gives it: it must fit too
        words: list[str] = []

    @tether.stage(id="maybe", input=MaybeNeeds, output=Keywords)
    async def maybe(ctx: tether.StageContext[MaybeNeeds, None]) -> Keywords:
        raise AssertionError("never runs")

    with pytest.raises(PipelineError, match=r"field 'words' is int in Text"):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(maybe)


def test_a_parallel_groups_outputs_are_checked_by_type_too() -> None:
    class Counts(BaseModel):
        summarize: int
        keywords: Keywords

    @tether.stage(id="join", input=Counts, output=Report)
    async def join(ctx: tether.StageContext[Counts, None]) -> Report:
        raise AssertionError("never runs")

    with pytest.raises(
        PipelineError, match=r"field 'summarize' of Counts wants int, but stage 'summarize' "
        r"outputs Summary"
    ):  # fmt: skip
        tether.Pipeline("p", input=Text).parallel([summarize, keywords]).pipe(join)


class Inner(BaseModel):
    n: int


class OtherInner(BaseModel):
    n: list[int]


class Color(StrEnum):
    red = "red"


@pytest.mark.parametrize(
    ("target", "source", "fits"),
    [
        (list[str], int, False),
        (str, int, False),  # pydantic does not turn a number into a string
        (int, str, True),  # "3" validates as an int: decided at run time
        (float, int, True),
        (int | None, str, True),
        (list[str] | None, int, False),
        (Optional[int], list[int], False),  # noqa: UP045 - the old spelling too
        (Any, list[int], True),
        (int, Any, True),
        (list[str], list[int], False),
        (list[int], tuple[int, ...], True),
        (set[int], list[str], True),
        (dict[str, int], dict[str, list[int]], False),
        (Inner, OtherInner, False),  # nested models: their fields are compared
        (Inner, Inner, True),
        (list[Inner], list[OtherInner], False),
        (dict[str, Any], Inner, True),
        (str, Color, True),  # a str enum dumps to its value
        (Annotated[list[str], "meta"], int, False),
        (Literal["a"], str, True),  # cannot tell: accepted
        (datetime, str, True),
        (str, datetime, True),
        (int, str | list[int], True),  # some value of it fits
    ],
)
def test_whether_a_field_type_can_take_another(target: Any, source: Any, fits: bool) -> None:
    assert accepts(target, source) is fits


@pytest.mark.parametrize("suffix", [".start", ".suspended", ".check", ".cancel", ".unread"])
def test_an_id_that_names_another_stages_own_step_is_refused(suffix: str) -> None:
    # "fetch.start" would record its output under the key of fetch's start marker
    with pytest.raises(PipelineError, match=rf"ends in '\{suffix}', which names a step of"):

        @tether.stage(id=f"fetch{suffix}", input=Doc, output=Doc)
        async def clash(ctx: tether.StageContext[Doc, None]) -> Doc:
            return ctx.input


def test_a_plain_def_check_or_cancel_is_refused_when_declared() -> None:
    @tether.batch_stage(id="embed", input=Doc, output=Doc)
    async def embed(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
        return tether.Suspend({})

    def check(state: Any, ctx: Any) -> Any:  # awaited, it would fail after its work
        return tether.Ready(Doc(url="u"))

    with pytest.raises(
        PipelineError, match=r"its check must be an `async def check\(state, ctx\)`"
    ):
        embed.check(check)
    with pytest.raises(PipelineError, match=r"its cancel must be an `async def cancel\(state\)`"):
        embed.on_cancel(lambda state: None)
    with pytest.raises(PipelineError, match="its check must be an `async def"):
        tether.batch_stage(id="b2", output=Doc, check=check)(embed.fn)


class _Both(BaseModel):
    # stage ids with '-' are no Python names: a model reads them under an alias
    summary: Summary = Field(alias="sum-up")
    words: Keywords = Field(alias="key-words")


class _Body(BaseModel):
    content: str = Field(alias="text")


@tether.stage(id="sum-up", input=Text, output=Summary)
async def _sum_up(ctx: tether.StageContext[Text, None]) -> Summary:
    return Summary(summary=ctx.input.text[:9])


@tether.stage(id="key-words", input=Text, output=Keywords)
async def _key_words(ctx: tether.StageContext[Text, None]) -> Keywords:
    return Keywords(words=ctx.input.text.split()[:2])


@tether.stage(id="body", input=_Body, output=Summary)
async def _body(ctx: tether.StageContext[_Body, None]) -> Summary:
    return Summary(summary=ctx.input.content[:4])


def test_a_model_reading_stage_outputs_under_aliases_is_taken_and_runs(database_url: str) -> None:
    # refused when built: "_Both requires fields ['summary', 'words'], which are not
    # stage ids of the group", though the run validates the outputs by their aliases
    both = tether.Pipeline("both", input=Doc, output=_Both).pipe(extract)
    both = both.parallel([_sum_up, _key_words])
    body = tether.Pipeline("body", input=Doc).pipe(extract).pipe(_body)
    with tether.App(database_url) as app:
        app.register(both)
        app.register(body)
        done = app.run(both, Doc(url="u"), workflow_id="both-1")
        assert done.value.summary.summary == "text of u"
        assert done.value.words.words == ["text", "of"]
        assert app.run(body, Doc(url="u"), workflow_id="body-1").value.summary == "text"


def test_an_alias_naming_no_stage_or_field_is_still_refused() -> None:
    class Misspelt(BaseModel):
        summary: Summary = Field(alias="sum_up")

    class Elsewhere(BaseModel):
        content: str = Field(alias="body")

    with pytest.raises(PipelineError, match=r"Misspelt requires fields \['summary'\]"):
        tether.Pipeline("p", input=Doc, output=Misspelt).pipe(extract).parallel(
            [_sum_up, _key_words]
        ).check()
    with pytest.raises(PipelineError, match=r"Text lacks the required fields \['content'\]"):
        tether.Pipeline("p", input=Doc).pipe(extract).pipe(
            tether.stage(id="elsewhere", input=Elsewhere, output=Summary)(_body.fn)
        )
