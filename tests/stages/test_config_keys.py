"""A run config key the stage's model would drop is refused, at any depth; and the
mistakes of building a pipeline say what to do."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel

import tether
from tether import App, PipelineError, RunNotFoundError
from tether.stages import AIConfig

from ._flows import Doc, Text, extract, keywords, summarize


class Nested(BaseModel):
    ai: AIConfig = AIConfig()
    fallback: AIConfig | None = None
    tiers: list[AIConfig] = []
    by_name: dict[str, AIConfig] = {}


class Aliased(BaseModel):
    max_len: int = Field(default=3, alias="maxLength")


class ByName(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    max_len: int = Field(default=3, alias="maxLength")


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # said so: extra keys are dropped
    depth: int = 1


class Holder(BaseModel):
    loose: Loose = Loose()


def _pipeline(config: type[BaseModel]) -> tether.Pipeline[Doc, Text]:
    @tether.stage(id="s", input=Doc, output=Text, config=config)
    async def s(ctx: tether.StageContext[Doc, BaseModel]) -> Text:
        return Text(text=repr(ctx.config), words=0)

    return tether.Pipeline(f"keys-{config.__name__}", input=Doc, output=Text).pipe(s)


@pytest.mark.parametrize(
    ("config", "path", "close"),
    [
        ({"ai": {"temprature": 0.1}}, "ai.temprature", "temperature"),
        ({"fallback": {"modle": "x"}}, "fallback.modle", "model"),
        ({"tiers": [{"model": "a"}, {"modle": "b"}]}, r"tiers\[1\].modle", "model"),
        ({"by_name": {"cheap": {"max_token": 5}}}, "by_name.cheap.max_token", "max_tokens"),
    ],
)
def test_a_misspelt_key_in_a_nested_model_is_refused(
    config: dict[str, object], path: str, close: str
) -> None:
    """A key misspelt inside a nested model (``{"ai": {"temprature": 0.1}}``) was dropped
    by the model, and the stage ran with the default temperature 0.7."""
    p = _pipeline(Nested)
    with pytest.raises(
        PipelineError,
        match=rf"config of stage 's' has no field '{path}' \(AIConfig's fields: max_tokens, "
        rf"model, temperature\); did you mean '{close}'\?",
    ):
        p.bind({"url": "u"}, {"s": config})
    good = {"ai": {"temperature": 0.1}, "tiers": [{"model": "b"}], "by_name": {"c": {}}}
    bound = p.bind({"url": "u"}, {"s": good})
    assert bound.config["s"]["ai"]["temperature"] == 0.1
    assert bound.config["s"]["tiers"][0]["model"] == "b"


def test_a_field_read_under_its_alias_refuses_its_name() -> None:
    """``max_len`` for a field declared ``Field(alias="maxLength")`` passed the key check
    (it is the field's name), and pydantic dropped it: the stage ran with 3, not 9."""
    with pytest.raises(
        PipelineError,
        match=r"has no field 'max_len' \(Aliased's fields: maxLength\); the field 'max_len' "
        r"is read as 'maxLength'",
    ):
        _pipeline(Aliased).bind({"url": "u"}, {"s": {"max_len": 9}})
    assert _pipeline(Aliased).bind({"url": "u"}, {"s": {"maxLength": 9}}).config["s"] == {
        "maxLength": 9
    }
    # a model that reads its fields by name too takes both
    assert _pipeline(ByName).bind({"url": "u"}, {"s": {"max_len": 9}}).config["s"] == {
        "maxLength": 9
    }


def test_a_nested_model_that_says_what_to_do_with_extra_keys_is_obeyed() -> None:
    bound = _pipeline(Holder).bind({"url": "u"}, {"s": {"loose": {"x": 1, "depth": 2}}})
    assert bound.config["s"] == {"loose": {"depth": 2}}


async def test_a_run_with_a_nested_misspelt_key_is_refused_before_it_exists(
    database_url: str,
) -> None:
    """The refusal holds for `App.run`: no run is recorded with a config the caller
    believed applied."""
    p = _pipeline(Nested)
    app = App(database_url)
    app.register(p)
    try:
        with pytest.raises(PipelineError, match=r"no field 'ai.temprature'"):
            await app.arun(p, Doc(url="u"), config={"s": {"ai": {"temprature": 0}}},
                           workflow_id="nested-typo")  # fmt: skip
        with pytest.raises(RunNotFoundError):
            await app.aget_run("nested-typo")
        done = await app.arun(p, Doc(url="u"), config={"s": {"ai": {"temperature": 0}}})
        assert "temperature=0.0" in done.value.text
    finally:
        await app.aclose()


def test_a_pipeline_whose_pipe_result_was_dropped_says_to_keep_it() -> None:
    """`p.pipe(extract)` without `p = ...` left `p` empty, and the error said "add one
    with .pipe()" to a user who had called it."""
    p = tether.Pipeline("forgot", input=Doc)
    p.pipe(extract)
    with pytest.raises(PipelineError, match=r"return a new pipeline: keep it, e\.g\. p = p\.pipe"):
        p.check()


def test_pipe_given_a_list_of_stages_points_at_parallel() -> None:
    """`.pipe([summarize, keywords])` said "is not a stage; declare it with
    @tether.stage" of two declared stages."""
    p = tether.Pipeline("lst", input=Doc).pipe(extract)
    with pytest.raises(PipelineError, match=r"pipe takes one stage.*use \.parallel\(\[\.\.\.\]\)"):
        p.pipe([summarize, keywords])  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="is not a stage; declare it"):
        p.pipe(len)  # type: ignore[arg-type]


class Tiers(RootModel[dict[str, AIConfig]]):
    pass


class WithTiers(BaseModel):
    tiers: Tiers = Tiers({})


def test_a_root_model_takes_its_data_keys_and_its_models_are_checked() -> None:
    p = _pipeline(WithTiers)
    bound = p.bind({"url": "u"}, {"s": {"tiers": {"cheap": {"model": "x"}}}})
    assert bound.config["s"]["tiers"]["cheap"]["model"] == "x"
    with pytest.raises(PipelineError, match=r"no field 'tiers.cheap.modle'"):
        p.bind({"url": "u"}, {"s": {"tiers": {"cheap": {"modle": "x"}}}})
