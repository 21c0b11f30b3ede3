"""Artifacts named as files are: in any language, with spaces and signs; a name that
cannot name a file is refused naming the artifact, not the blob key it would make."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

import tether
from tether import App, InvalidArgumentError

from ._flows import Doc

NAMES = ["Bericht für März.pdf", "页面/第 3 页.txt", "100% done~.md", "x:y.json"]


class Listed(BaseModel):
    names: list[str]
    refused: str


@tether.stage(id="write", input=Doc, output=Listed)
async def write(ctx: tether.StageContext[Doc, None]) -> Listed:
    for name in NAMES:
        await ctx.artifacts.put(name, name.encode())
        assert await ctx.artifacts.get(name) == name.encode()
    try:
        await ctx.artifacts.put("../escape.txt", b"x")
    except InvalidArgumentError as exc:
        refused = str(exc)
    return Listed(names=await ctx.artifacts.list(), refused=refused)


@tether.stage(id="read", output=Listed, dependencies=[write])
async def read(ctx: tether.StageContext[object, None]) -> Listed:
    names = await ctx.artifacts.list(stage=write)
    for name in names:
        assert (await ctx.artifacts.get(name, stage=write)).decode() == name
    assert await ctx.artifacts.delete("nothing here.txt") is False
    return Listed(names=names, refused="")


async def test_artifacts_take_any_file_name(app: App) -> None:
    p = tether.Pipeline("files", input=Doc).pipe(write).pipe(read)
    app.register(p)
    done = await app.arun(p, Doc(url="u"), workflow_id="files-1")
    assert sorted(done.value.names) == sorted(NAMES)
    written = await app.arun(p, workflow_id="files-1")  # answered from the record
    assert sorted(written.value.names) == sorted(NAMES)
    first = done.record.steps["stage:write"].result["output"]
    assert first["refused"].startswith("artifact name '../escape.txt' cannot name a file")
    keys = await app.blobs.list("runs/files-1/stages/write/1/files/")
    # a name of what a key holds as itself is stored as it always was
    assert "runs/files-1/stages/write/1/files/x:y.json" in keys


@pytest.mark.parametrize("name", ["", "a//b", ".", "../x", "x/.."])
async def test_a_name_that_cannot_name_a_file_is_refused_naming_it(app: App, name: str) -> None:
    @tether.stage(id="bad", input=Doc, output=Doc)
    async def bad(ctx: tether.StageContext[Doc, None]) -> Doc:
        await ctx.artifacts.put(name, b"x")
        return ctx.input

    p = tether.Pipeline("bad-files", input=Doc).pipe(bad)
    said = re.escape(f"artifact name {name!r} cannot name a file")
    with pytest.raises(InvalidArgumentError, match=said):
        await app.arun(p, Doc(url="u"))


LONG = ["n" * 300 + ".txt", "页" * 120 + "/part.txt", "pages/.tmp-draft.md", "x" * 2000]


@tether.stage(id="long", input=Doc, output=Listed)
async def long(ctx: tether.StageContext[Doc, None]) -> Listed:
    keys = [await ctx.artifacts.put(name, name[:5]) for name in LONG]
    assert keys == [await ctx.artifacts.put(name, name[:5]) for name in LONG]  # stable keys
    await ctx.artifacts.put("gone " + "z" * 300, b"x")
    assert await ctx.artifacts.delete("gone " + "z" * 300) is True
    return Listed(names=await ctx.artifacts.list(), refused="")


@tether.stage(id="later", output=Listed, dependencies=[long])
async def later(ctx: tether.StageContext[object, None]) -> Listed:
    names = await ctx.artifacts.list(stage=long)
    return Listed(names=[(await ctx.artifacts.get(n, stage=long)).decode() for n in names],
                  refused="")  # fmt: skip


async def test_a_name_no_key_can_hold_is_kept_under_its_digest(app: App) -> None:
    """A part over 200 characters once encoded, one a file store keeps for its writes, a
    name longer than a key: any text, as the README says, each stored under a digest of
    the name, listed and read back by the name itself."""
    p = tether.Pipeline("long-files", input=Doc).pipe(long).pipe(later)
    done = await app.arun(p, Doc(url="u"), workflow_id="long-1")
    assert sorted(done.record.steps["stage:long"].result["output"]["names"]) == sorted(LONG)
    assert sorted(done.value.names) == sorted(name[:5] for name in LONG)
    keys = await app.blobs.list("runs/long-1/stages/long/1/files/")
    # each the digest of its name, and its name beside it; the deleted one is gone
    assert len(keys) == 2 * len(LONG) and all("/files/%-" in k for k in keys)


async def test_a_stage_no_pipeline_has_is_refused_naming_the_stages(app: App) -> None:
    """`list(stage="wirte")` answered [] and `get` "no artifact ... in stage 'wirte'",
    both hiding the typo."""
    said: list[str] = []

    @tether.stage(id="typo", output=Listed, dependencies=[write])
    async def typo(ctx: tether.StageContext[object, None]) -> Listed:
        for ask in (ctx.artifacts.list(stage="wirte"), ctx.artifacts.get("a", stage="wirte")):
            try:
                await ask
            except InvalidArgumentError as exc:
                said.append(str(exc))
        return Listed(names=await ctx.artifacts.list(stage="write"), refused="")

    p = tether.Pipeline("typos", input=Doc).pipe(write).pipe(typo)
    done = await app.arun(p, Doc(url="u"), workflow_id="typos-1")
    assert sorted(done.value.names) == sorted(NAMES)
    assert len(said) == 2
    assert all("no stage 'wirte' in this pipeline (its stages: 'write', 'typo')" in s for s in said)
