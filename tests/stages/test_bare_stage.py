"""`@tether.stage` used bare, without parentheses: its id is the function's name and
its output the model it returns (it failed with a TypeError naming no stage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import tether
from tether import PipelineError


class Page(BaseModel):
    url: str


class Words(BaseModel):
    count: int


@tether.stage(id="count", input=Page, output=Words)
async def count(ctx: tether.StageContext[Page, None]) -> Words:
    return Words(count=len(ctx.input.url))


@tether.stage
async def double_count(ctx: tether.StageContext[None, None]) -> Words:
    return Words(count=2 * ctx.require(count).count)


async def test_a_bare_stage_is_named_for_its_function_and_runs(tmp_path: Path) -> None:
    assert double_count.id == "double_count" and double_count.output is Words
    assert double_count.input is None and double_count.mode == "sync"
    pipeline = tether.Pipeline("bare", input=Page, output=Words).pipe(count).pipe(double_count)
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock()) as app:
        assert (await app.arun(pipeline, Page(url="abcd"))).value == Words(count=8)


def test_a_bare_stage_without_an_output_annotation_says_how_to_declare_it() -> None:
    async def unannotated(ctx):  # type: ignore[no-untyped-def]
        return Words(count=0)

    with pytest.raises(PipelineError, match=r"'unannotated'.*has none.*-> Text"):
        tether.stage(unannotated)


def test_a_bare_stage_returning_no_model_is_refused_as_a_declared_one_is() -> None:
    async def plain(ctx: tether.StageContext[None, None]) -> int:
        return 1

    with pytest.raises(PipelineError, match="'plain': output must be a pydantic model"):
        tether.stage(plain)


def test_a_bare_stage_on_a_plain_def_is_refused() -> None:
    def sync(ctx: tether.StageContext[None, None]) -> Words:
        return Words(count=0)

    with pytest.raises(PipelineError, match=r"'sync'.*must be an `async def"):
        tether.stage(sync)  # type: ignore[arg-type]
