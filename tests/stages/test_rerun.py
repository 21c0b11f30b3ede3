"""Rerun from a stage of a parallel group whose stages started in another order in
another round: the whole group runs again in the new attempt, and no stage keeps
an attempt whose files the rerun removes."""

from __future__ import annotations

import pytest
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


class Note(BaseModel):
    text: str


@tether.stage(id="first", input=Doc, output=Note)
async def first(ctx: tether.StageContext[Doc, None]) -> Note:
    return Note(text=await ctx.workflow.step("inner", lambda: "one"))


@tether.stage(id="second", input=Note, output=Note)
async def second(ctx: tether.StageContext[Note, None]) -> Note:
    await ctx.artifacts.put("f.txt", ctx.input.text)
    return Note(text=ctx.input.text + "!")


async def test_a_rerun_from_a_step_inside_a_stage_removes_the_later_stages_old_files(
    database_url: str,
) -> None:
    """The stage holding the step keeps its start and attempt; the later ones run in
    the new attempt, and their files of the old one went nowhere (only a rerun from
    a stage id removed the files of the stages it forgot)."""
    app = App(database_url)
    p = tether.Pipeline("two", input=Doc).pipe(first).pipe(second)
    app.register(p)
    try:
        await app.arun(p, Doc(url="u"), workflow_id="two-1")
        assert await app.blobs.get("runs/two-1/stages/second/1/files/f.txt") is not None
        done = await app.arerun_from("two-1", "first/inner")
        assert done.status is RunStatus.COMPLETED
        assert [(s.id, s.attempt) for s in done.record.stages] == [("first", 1), ("second", 2)]
        assert sorted(await app.blobs.list("runs/two-1/")) == [
            "runs/two-1/stages/second/2/files/f.txt"
        ]
    finally:
        await app.aclose()


counter = {"n": 0}


def _count() -> int:
    counter["n"] += 1
    return counter["n"]


@tether.stage(id="logged", input=Doc, output=Note)
async def logged(ctx: tether.StageContext[Doc, None]) -> Note:
    await ctx.log("info", "before")
    got = await ctx.workflow.step("work", _count)
    await ctx.log("info", f"work gave {got}")
    await ctx.progress(1.0, "done")
    return Note(text=str(got))


async def test_a_rerun_from_a_step_inside_a_stage_writes_its_lines_again(
    database_url: str,
) -> None:
    """The stage keeps its attempt; the lines written from the step on were forgotten
    with it and are written again, the ones before it are not written twice."""
    counter["n"] = 0
    app = App(database_url)
    p = tether.Pipeline("logs", input=Doc).pipe(logged)
    app.register(p)

    async def lines() -> list[str | None]:
        return [e.message for e in (await app.aget_record("logs-1")).events
                if e.type in ("stage.log", "stage.progress")]  # fmt: skip

    try:
        await app.arun(p, Doc(url="u"), workflow_id="logs-1")
        done = await app.arerun_from("logs-1", "logged/work")
        assert done.value == Note(text="2")
        assert await lines() == ["before", "work gave 1", "done", "work gave 2", "done"]
        again = await app.arerun_from("logs-1", "logged/work")  # and a second time
        assert again.value == Note(text="3")
        assert (await lines())[-2:] == ["work gave 3", "done"]
    finally:
        await app.aclose()


async def test_a_rerun_from_takes_the_stage_itself_and_refuses_what_is_no_key(
    database_url: str,
) -> None:
    """`rerun_from(run, left)`, the stage rather than its id, failed with a raw
    validation error of the kernel's command."""
    app, p = App(database_url), _release("1", [left, right])
    app.register(p)
    try:
        await app.arun(p, Doc(url="u"), workflow_id="st")
        done = await app.arerun_from("st", left)
        assert [(s.id, s.attempt) for s in done.record.stages] == [("left", 2), ("right", 2)]
        with pytest.raises(tether.InvalidArgumentError, match=r"takes a step's key .* got 3"):
            await app.arerun_from("st", 3)  # type: ignore[arg-type]
        # a misspelt stage id was answered with every step key, the stages' among them
        with pytest.raises(
            tether.InvalidArgumentError,
            match=r"no stage or step 'lef'; did you mean stage 'left'\? its pipeline's "
            r"stages: 'left', 'right'",
        ):
            await app.arerun_from("st", "lef")
    finally:
        await app.aclose()


@tether.stage(id="fetch", input=Doc, output=Note)
async def fetch(ctx: tether.StageContext[Doc, None]) -> Note:
    text = await ctx.workflow.step("get", lambda: ctx.input.url)
    await ctx.artifacts.put("page.txt", text)
    return Note(text=text)


async def test_a_rerun_of_a_plain_workflow_removes_the_old_files_of_each_items_forgotten_stages(
    sqlite_url: str,
) -> None:
    """A pipeline called once per item of a for_each: the rerun forgets the second item's
    stages, whose files of the old attempt went nowhere (only a pipeline run's stages
    had theirs removed); the first item's stages, kept, keep theirs."""
    p = tether.Pipeline("per-page", input=Doc).pipe(fetch).pipe(second)
    app = App(sqlite_url)  # a real SQLite file, its files in blobs/ beside it

    @app.workflow(name="pages")
    async def pages(wf: tether.Workflow, urls: list[str]) -> list[str]:
        async def one(url: str) -> str:
            return (await p(wf, Doc(url=url))).text

        return list((await wf.for_each(urls, one, max_parallel=1)).values)  # type: ignore[arg-type]

    async def files() -> dict[tuple[str, str], str]:
        """(attempt, what the file holds) -> its key: each item's files hold its url."""
        keys = [k for k in await app.blobs.list("runs/pages-1/") if "/files/" in k]
        said = {k: bytes(await app.blobs.get(k) or b"").decode() for k in keys}
        return {(k.split("/")[4], f"{text}:{k.rsplit('/', 1)[1]}"): k for k, text in said.items()}

    try:
        await app.arun(pages, ["a", "b"], workflow_id="pages-1")
        before = await files()
        assert sorted(before) == [("1", "a:f.txt"), ("1", "a:page.txt"),
                                  ("1", "b:f.txt"), ("1", "b:page.txt")]  # fmt: skip
        done = await app.arerun_from("pages-1", "stage:fetch.start[1]")
        assert done.status is RunStatus.COMPLETED and done.value == ["a!", "b!"]
        after = await files()
        # the second item's stages ran again in attempt 2; their old files are gone,
        # the first item's (kept) are where they were
        assert sorted(after) == [("1", "a:f.txt"), ("1", "a:page.txt"),
                                 ("2", "b:f.txt"), ("2", "b:page.txt")]  # fmt: skip
        assert after[("1", "a:page.txt")] == before[("1", "a:page.txt")]
        assert after[("1", "a:f.txt")] == before[("1", "a:f.txt")]
    finally:
        await app.aclose()


class Said(BaseModel):
    text: str


class SaidAsNumber(BaseModel):  # a model changed so that what was recorded no longer fits
    text: int


calls = {"one": 0}


def _said(out: type[BaseModel]) -> tether.Pipeline[Doc, Note]:
    @tether.stage(id="one", input=Doc, output=out)
    async def one(ctx: tether.StageContext[Doc, None]) -> BaseModel:
        def ask() -> str:  # the costly call: an AI model's, say
            calls["one"] += 1
            return "said"

        return out(text=await ctx.workflow.step("ask", ask))

    @tether.stage(id="two", input=out, output=Note)
    async def two(ctx: tether.StageContext[BaseModel, None]) -> Note:
        return Note(text=f"{ctx.input.text}!")  # type: ignore[attr-defined]

    return tether.Pipeline("said", input=Doc).pipe(one).pipe(two)


async def test_a_rerun_from_a_later_stage_goes_on_once_the_changed_model_is_fixed(
    database_url: str,
) -> None:
    """A rerun from `two` failed reading `one`'s output (its model changed since); with
    the model fixed, a second rerun from `two` was refused ("stage 'two' never started
    ... an earlier stage ended it"): only a rerun from `one` went on, recomputing it."""
    calls["one"] = 0
    app, p = App(database_url), _said(Said)
    app.register(p)
    try:
        await app.arun(p, Doc(url="u"), workflow_id="s1")
    finally:
        await app.aclose()
    app = App(database_url)
    app.register(_said(SaidAsNumber))
    try:
        expected = (
            r"^stage 'one' of run 's1' recorded its output in the run's record, as "
            r"\{text: str\}, which its output model SaidAsNumber no longer takes \(text: "
            r".*\): SaidAsNumber changed since it was recorded; keep the old model, or make "
            r"SaidAsNumber accept it .*, and rerun as before .*; or recompute it by "
            r"rerunning from this stage: app\.rerun_from\('s1', 'one'\)"
        )
        with pytest.raises(tether.StageError, match=expected):
            await app.arerun_from("s1", "two")
    finally:
        await app.aclose()
    app = App(database_url)
    app.register(_said(Said))  # the model changed back
    try:
        done = await app.arerun_from("s1", "two")
        assert done.status is RunStatus.COMPLETED and done.value == Note(text="said!")
        assert calls["one"] == 1  # one's output, and the call that made it, were kept
        assert [(s.id, s.attempt) for s in done.record.stages] == [("one", 1), ("two", 3)]
        # one's read-back failure was before this rerun: it showed `failed` still
        assert [s.status for s in done.record.stages] == ["completed", "completed"]
        assert done.record.stages[0].error is None
        assert [k for k in done.record.steps if k.startswith("stage:")] == [
            "stage:one.start", "stage:one", "stage:two.start", "stage:two"]  # fmt: skip
        again = await app.arerun_from("s1", "two")  # an ordinary rerun from two still
        assert again.value == Note(text="said!") and calls["one"] == 1
    finally:
        await app.aclose()


@tether.stage(id="Summarise", input=Doc, output=Note)
async def summarise(ctx: tether.StageContext[Doc, None]) -> Note:
    return Note(text="short")


@tether.stage(id="QA", input=Note, output=Note)
async def qa(ctx: tether.StageContext[Note, None]) -> Note:
    return Note(text=f"{ctx.input.text}, checked")


async def test_a_rerun_from_a_stage_id_in_another_case_names_the_stage_meant(
    database_url: str,
) -> None:
    """`rerun_from(run, "qa")` or "SUMMARISE" was refused with no guess: difflib scores
    two names apart only by case as nothing alike. The stage config and `group_of`
    refusals guess the same way."""
    app, p = App(database_url), tether.Pipeline("cased", input=Doc).pipe(summarise).pipe(qa)
    app.register(p)
    try:
        await app.arun(p, Doc(url="u"), workflow_id="c1")
        for said, meant in [("qa", "QA"), ("SUMMARISE", "Summarise"), ("summarize", "Summarise")]:
            with pytest.raises(
                tether.InvalidArgumentError,
                match=rf"no stage or step '{said}'; did you mean stage '{meant}'\? its "
                r"pipeline's stages: 'Summarise', 'QA'",
            ):
                await app.arerun_from("c1", said)
    finally:
        await app.aclose()
    with pytest.raises(
        tether.PipelineError, match=r"did you mean 'QA'\? \(stages: Summarise, QA\)"
    ):
        p.bind(Doc(url="u"), {"qa": {}})
    with pytest.raises(tether.PipelineError, match=r"no stage 'qa'; did you mean 'QA'\?"):
        p.group_of("qa")
