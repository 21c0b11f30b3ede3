"""Artifact names a stage of a SQLite file's App (blobs as files beside it) keeps apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import tether
from tether import App, InvalidArgumentError

NAMES = ["report", "report/p1", "report/p1/x", "Report", "a" * 300, "a" * 300 + "/b", "ü"]


class Doc(BaseModel):
    url: str


class Read(BaseModel):
    names: list[str]
    bodies: list[str]


@tether.stage(id="write", input=Doc, output=Read)
async def write(ctx: tether.StageContext[Doc, None]) -> Read:
    for name in NAMES:
        await ctx.artifacts.put(name, name)
    bodies = [(await ctx.artifacts.get(name)).decode() for name in NAMES]
    return Read(names=await ctx.artifacts.list(), bodies=bodies)


async def test_a_name_and_the_names_under_it_are_all_artifacts(tmp_path: Path) -> None:
    # the file store kept 'report' as a file where 'report/p1' needs a folder: the
    # stage failed at the second put, whichever came first
    app = App(f"sqlite:///{tmp_path}/t.db")
    try:
        done = await app.arun(tether.Pipeline("names", input=Doc).pipe(write), Doc(url="u"))
    finally:
        await app.aclose()
    assert done.value.bodies == NAMES
    assert sorted(done.value.names) == sorted(NAMES)


@tether.stage(id="odd", input=Doc, output=Doc)
async def odd(ctx: tether.StageContext[Doc, None]) -> Doc:
    await ctx.artifacts.put("caf\udce9.txt", b"x")  # os.listdir() of a Latin-1 'café.txt'
    return ctx.input


async def test_a_name_that_is_no_text_is_refused_saying_why(tmp_path: Path) -> None:
    # it failed deep in the store with a bare UnicodeEncodeError naming no artifact
    app = App(f"sqlite:///{tmp_path}/t.db")
    try:
        with pytest.raises(InvalidArgumentError, match=r"artifact name 'caf\\udce9.txt' is not"):
            await app.arun(tether.Pipeline("odd", input=Doc).pipe(odd), Doc(url="u"))
    finally:
        await app.aclose()
