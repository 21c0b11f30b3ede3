"""Rerun from a stage of a parallel group whose stages started in another order in
another round: the whole group runs again in the new attempt, and no stage keeps
an attempt whose files the rerun removes."""

from __future__ import annotations

from pydantic import BaseModel

import tether
from tether import App, RunStatus

from ._flows import Doc


class Out(BaseModel):
    side: str


def _side(name: str) -> tether.Stage[Doc, Out, None]:
    @tether.stage(id=name, input=Doc, output=Out)
    async def run(ctx: tether.StageContext[Doc, None]) -> Out:
        await ctx.artifacts.put("notes.txt", name)
        return Out(side=await ctx.workflow.step("work", lambda: name * 20))

    return run


left, right = _side("left"), _side("right")


def _release(version: str, group: list[tether.Stage[Doc, Out, None]]) -> tether.Pipeline[Doc, Out]:
    # inline_limit: each stage's output goes to the blob store, under its attempt
    p = tether.Pipeline("sides", input=Doc, version=version, compatible=["1"], inline_limit=10)
    return p.parallel(group)


async def test_a_second_rerun_from_a_reordered_group_reruns_all_of_it(database_url: str) -> None:
    old, v1 = App(database_url), _release("1", [left, right])
    old.register(v1)
    await old.arun(v1, Doc(url="u"), workflow_id="g")
    await old.aclose()
    app = App(database_url)  # the group's stages now start right, then left
    p = _release("2", [right, left])
    app.register(p)
    try:
        await app.arerun_from("g", "left")
        # before: the rerun went from left's first-ever start, which now comes after
        # right's: right kept attempt 2, and the files of attempt 2 were then removed
        done = await app.arerun_from("g", "left")
        assert done.status is RunStatus.COMPLETED
        assert [(s.id, s.attempt) for s in done.record.stages] == [("right", 3), ("left", 3)]
        for s in done.record.stages:
            assert s.output_blob is not None and await app.blobs.get(s.output_blob) is not None
            assert await app.blobs.get(f"runs/g/stages/{s.id}/3/files/notes.txt") is not None
        assert sorted(await app.blobs.list("runs/g/")) == sorted(
            f"runs/g/stages/{sid}/3/{name}" for sid in ("left", "right")
            for name in ("output.json", "files/notes.txt"))  # fmt: skip
        again = await app.arun(p, Doc(url="u"), workflow_id="g")  # read back from the blobs
        assert again.value == {"right": {"side": "right" * 20}, "left": {"side": "left" * 20}}
    finally:
        await app.aclose()
