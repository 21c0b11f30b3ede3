"""A run started under one release resumes under a compatible one whose stage config
models changed: what no longer applies is dropped, and what no longer fits fails
saying the run recorded it and how to make the release take it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus

from ._flows import Doc, Summary


class StyleConfig(BaseModel):
    style: str = "brief"


class ModeConfig(BaseModel):
    style: str = "brief"
    mode: str  # new in this release, and required


def _release(version: str, config: type[BaseModel] | None) -> tether.Pipeline[Doc, Summary]:
    @tether.stage(id="ask", input=Doc, output=Summary, config=config)
    async def ask(ctx: tether.StageContext[Doc, object]) -> Summary:
        answer = await ctx.workflow.wait_for_signal("go")
        return Summary(summary=f"{ctx.input.url}:{answer}")

    compatible = ["1"] if version != "1" else []
    return tether.Pipeline("configured", input=Doc, output=Summary, version=version,
                           compatible=compatible).pipe(ask)  # fmt: skip


async def _parked(database_url: str, wid: str) -> None:
    old = App(database_url, clock=FakeClock())
    v1 = _release("1", StyleConfig)
    old.register(v1)
    parked = await old.arun(v1, Doc(url="u"), workflow_id=wid)
    assert parked.status is RunStatus.WAITING
    assert parked.record.input["config"] == {"ask": {"style": "brief"}}
    await old.aclose()


async def test_a_release_whose_stage_takes_no_config_now_resumes_old_runs(
    database_url: str,
) -> None:
    await _parked(database_url, "r1")
    new = App(database_url, clock=FakeClock())
    new.register(_release("2", None))
    try:
        await new.asignal("r1", "go", "yes")
        # before: "stage 'ask' takes no config" failed the resume for good
        done = await new.aresume("r1")
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        assert done.value == Summary(summary="u:yes")
    finally:
        await new.aclose()


async def test_a_recorded_config_the_release_refuses_says_how_to_make_it_fit(
    database_url: str,
) -> None:
    await _parked(database_url, "r2")
    new = App(database_url, clock=FakeClock())
    new.register(_release("3", ModeConfig))
    try:
        await new.asignal("r2", "go", "yes")
        with pytest.raises(tether.PipelineError) as raised:
            await new.aresume("r2")
        said = str(raised.value)
        rec = await new.aget_record("r2")
        assert rec.status is RunStatus.FAILED and rec.last_error is not None
        assert rec.last_error.message == said
        assert said.startswith(
            "config of stage 'ask' does not fit ModeConfig: mode: Field required"
        )
        assert "run 'r2' recorded its input and config when it started" in said
        assert "give a new field a default" in said
    finally:
        await new.aclose()


async def test_a_release_that_dropped_a_config_field_resumes_runs_that_set_it(
    database_url: str,
) -> None:
    """A run's recorded config keeps a field the release has since dropped: only a
    config a caller gives now is refused for a key its model does not declare."""
    await _parked(database_url, "r3")
    new = App(database_url, clock=FakeClock())
    new.register(_release("2", Nothing))
    try:
        await new.asignal("r3", "go", "yes")
        done = await new.aresume("r3")
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        with pytest.raises(tether.PipelineError, match="has no field 'style'"):
            await new.arun(_release("2", Nothing), Doc(url="u"), config={"ask": {"style": "x"}})
    finally:
        await new.aclose()


class Nothing(BaseModel):
    """A release's config that no longer has `style`."""

    depth: int = 1
