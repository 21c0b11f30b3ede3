"""A pipeline called from a workflow's own code: once per item of a `for_each`, twice in
a row, or inside a step. Each call is a run of its own stages: it never answers with
another call's recorded outputs or files, and a resumed call skips what it recorded."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import tether
from tether import App, RunStatus, ai

from ._flows import Doc


class Part(BaseModel):
    text: str


class Both(BaseModel):
    left: Part
    right: Part


def _pipeline(ran: list[str], *, inline_limit: int = 64 * 1024) -> tether.Pipeline[Doc, Both]:
    @tether.stage(id="read", input=Doc, output=Part)
    async def read(ctx: tether.StageContext[Doc, None]) -> Part:
        ran.append(f"read {ctx.input.url}")  # the stage's own code, outside any step
        await ctx.artifacts.put("source.txt", ctx.input.url)
        return Part(text=ctx.input.url + "." * 200)

    @tether.stage(id="left", input=Part, output=Part)
    async def left(ctx: tether.StageContext[Part, None]) -> Part:
        source = (await ctx.artifacts.get("source.txt", stage="read")).decode()
        return Part(text=f"L:{source}")

    @tether.stage(id="right", input=Part, output=Part)
    async def right(ctx: tether.StageContext[Part, None]) -> Part:
        return Part(text=f"R:{ctx.input.text.rstrip('.')}")

    return (
        tether.Pipeline("per-doc", input=Doc, output=Both, inline_limit=inline_limit)
        .pipe(read)
        .parallel([left, right])
    )


def _shown(out: Both) -> str:
    return f"{out.left.text}|{out.right.text}"


async def test_a_pipeline_per_item_of_a_for_each_gives_each_item_its_own_outputs(
    app: App,
) -> None:
    ran: list[str] = []
    p = _pipeline(ran, inline_limit=100)  # read's output goes to a blob

    @app.workflow(name="many-docs")
    async def many(wf: tether.Workflow, urls: list[str]) -> list[str]:
        async def one(url: str) -> str:
            return _shown(await p(wf, Doc(url=url)))

        return list((await wf.for_each(urls, one, max_parallel=3)).values)  # type: ignore[arg-type]

    urls = ["u1", "u2", "u3"]
    first = await app.arun(many, urls, workflow_id="many-1")
    assert first.value == [f"L:{u}|R:{u}" for u in urls]
    assert sorted(ran) == ["read u1", "read u2", "read u3"]
    again = await app.arun(many, urls, workflow_id="many-1")  # answered from the record
    assert again.value == first.value and len(ran) == 3
    blobs = [k for k in await app.blobs.list("runs/many-1/") if k.endswith("output.json")]
    assert len(blobs) == 3  # one per item, none written over another's


async def test_a_pipeline_called_twice_in_a_row_runs_twice(app: App) -> None:
    ran: list[str] = []
    p = _pipeline(ran)

    @app.workflow(name="two-docs")
    async def two(wf: tether.Workflow) -> str:
        a = await p(wf, Doc(url="a"))
        b = await p(wf, Doc(url="b"))
        return f"{_shown(a)} {_shown(b)}"

    done = await app.arun(two, workflow_id="two-1")
    assert done.value == "L:a|R:a L:b|R:b"
    again = await app.arun(two, workflow_id="two-1")
    assert again.value == done.value and ran == ["read a", "read b"]


async def test_a_pipeline_inside_a_step_resumes_without_running_recorded_stages(
    app: App,
) -> None:
    ran: list[str] = []

    @tether.stage(id="first", input=Doc, output=Part)
    async def first(ctx: tether.StageContext[Doc, None]) -> Part:
        ran.append("first")
        return Part(text=ctx.input.url)

    @tether.stage(id="wait", input=Part, output=Part)
    async def wait(ctx: tether.StageContext[Part, None]) -> Part:
        answer = await ctx.workflow.wait_for_signal("go")
        return Part(text=f"{ctx.input.text}:{answer}")

    p = tether.Pipeline("asks", input=Doc, output=Part).pipe(first).pipe(wait)

    @app.workflow(name="outer-step")
    async def outer(wf: tether.Workflow) -> str:
        out = await wf.step("process", lambda: p(wf, Doc(url="x")))
        return str(out.text)

    parked = await app.arun(outer, workflow_id="outer-1")
    assert parked.status is RunStatus.WAITING
    await app.asignal("outer-1", "go", "yes")
    done = await app.aresult("outer-1", timeout=10)
    assert done.value == "x:yes"
    assert ran == ["first"]  # recorded once, never run again on resume


async def test_calls_of_different_pipelines_keep_their_own_names(app: App) -> None:
    """A second pipeline (not the same one again) is named as before: runs recorded
    before a repeated call got its own scope resume as they were."""
    ran: list[str] = []
    p = _pipeline(ran)

    @tether.stage(id="solo", input=Doc, output=Part)
    async def solo(ctx: tether.StageContext[Doc, None]) -> Part:
        return Part(text=ctx.input.url * 3)

    q = tether.Pipeline("other", input=Doc, output=Part).pipe(solo)

    @app.workflow(name="mixed")
    async def mixed(wf: tether.Workflow) -> str:
        a = await p(wf, Doc(url="a"))
        b = await q(wf, Doc(url="b"))
        return f"{_shown(a)} {b.text}"

    done = await app.arun(mixed, workflow_id="mixed-1")
    assert done.value == "L:a|R:a bbb"
    assert {"stage:read", "stage:solo", "pipeline.plan", "pipeline.plan#2"} <= set(
        done.record.steps
    )


async def test_each_items_log_lines_are_written_once_and_none_dropped_on_resume(
    app: App, clock: tether.FakeClock
) -> None:
    @tether.stage(id="talk", input=Doc, output=Part)
    async def talk(ctx: tether.StageContext[Doc, None]) -> Part:
        for i in range(len(ctx.input.url)):  # items say different numbers of lines
            await ctx.log("info", f"{ctx.input.url} before {i}")
        await ctx.workflow.sleep(60)
        await ctx.log("info", f"{ctx.input.url} after")
        return Part(text=ctx.input.url)

    p = tether.Pipeline("talks", input=Doc, output=Part).pipe(talk)

    @app.workflow(name="talkers")
    async def talkers(wf: tether.Workflow, urls: list[str]) -> list[str]:
        async def one(url: str) -> str:
            return (await p(wf, Doc(url=url))).text

        return list((await wf.for_each(urls, one, max_parallel=2)).values)  # type: ignore[arg-type]

    parked = await app.arun(talkers, ["a", "bbb"], workflow_id="talk-1")
    assert parked.status is RunStatus.WAITING
    clock.advance(60)
    await app.afire_due_timers()
    done = await app.aresult("talk-1", timeout=10)
    assert done.value == ["a", "bbb"]
    lines = sorted(e.message or "" for e in done.record.events if e.type == "stage.log")
    # before: item "a" took item "bbb"'s three lines for its own and dropped "a after"
    assert lines == ["a after", "a before 0", "bbb after", "bbb before 0", "bbb before 1",
                     "bbb before 2"]  # fmt: skip


def _costly_then_flaky(name: str, ran: list[str]) -> tether.Pipeline[Doc, Part]:
    """Pipeline `name`: a stage worth keeping, then one that fails its first time; each
    stage notes in `ran` that it ran."""

    @tether.stage(id="costly", input=Doc, output=Part)
    async def costly(ctx: tether.StageContext[Doc, None]) -> Part:
        ran.append("costly")
        return Part(text=ctx.input.url)

    @tether.stage(id="flaky", input=Part, output=Part)
    async def flaky(ctx: tether.StageContext[Part, None]) -> Part:
        ran.append("flaky")
        if ran.count("flaky") == 1:
            raise ConnectionError("try again")
        return Part(text=ctx.input.text + "!")

    return tether.Pipeline(name, input=Doc, output=Part).pipe(costly).pipe(flaky)


async def test_the_same_call_again_in_the_workflows_code_resumes_the_first(app: App) -> None:
    """Called again with the same input (a retry in the workflow's code), a pipeline
    goes on from what the first call recorded, as before calls were told apart."""
    ran: list[str] = []
    p = _costly_then_flaky("retried", ran)

    @app.workflow(name="retrying")
    async def retrying(wf: tether.Workflow) -> str:
        try:
            out = await p(wf, Doc(url="x"))
        except ConnectionError:
            out = await p(wf, Doc(url="x"))
        return out.text

    done = await app.arun(retrying, workflow_id="retry-1")
    assert done.value == "x!"
    assert ran == ["costly", "flaky", "flaky"]


async def test_two_pipelines_sharing_a_stage_id_answer_each_with_its_own_output(
    app: App,
) -> None:
    """Another pipeline with a stage of the same id is no retry of the first: its stage
    ran, not answered with the first pipeline's recorded output ("P:a P:a")."""

    def reader(name: str, tag: str) -> tether.Pipeline[Doc, Part]:
        @tether.stage(id="read", input=Doc, output=Part)
        async def read(ctx: tether.StageContext[Doc, None]) -> Part:
            return Part(text=f"{tag}:{ctx.input.url}")

        return tether.Pipeline(name, input=Doc, output=Part).pipe(read)

    p, q = reader("p-reader", "P"), reader("q-reader", "Q")

    @app.workflow(name="two-readers")
    async def two(wf: tether.Workflow) -> str:
        return f"{(await p(wf, Doc(url='a'))).text} {(await q(wf, Doc(url='b'))).text}"

    done = await app.arun(two, workflow_id="readers-1")
    assert done.value == "P:a Q:b"
    again = await app.arun(two, workflow_id="readers-1")  # a replay answers each its own
    assert again.value == "P:a Q:b"


async def test_the_stage_table_keeps_each_calls_stages_apart(app: App) -> None:
    """The same pipeline called twice: four stage rows, each call's own, told apart by
    where it was called (one row per stage id mixed the calls: the second call's
    failure showed on the first call's completed stage). Needs the lead's change to
    `tether._stage_record.build_stages` (rows by place): fails until it is applied."""

    @tether.stage(id="first", input=Doc, output=Part)
    async def first(ctx: tether.StageContext[Doc, None]) -> Part:
        return Part(text=ctx.input.url)

    @tether.stage(id="second", input=Part, output=Part)
    async def second(ctx: tether.StageContext[Part, None]) -> Part:
        if ctx.input.text == "bad":
            raise ValueError("a bad doc")
        return Part(text=ctx.input.text + "!")

    p = tether.Pipeline("twice", input=Doc, output=Part).pipe(first).pipe(second)

    @app.workflow(name="twice-called")
    async def twice(wf: tether.Workflow) -> str:
        good = await p(wf, Doc(url="good"))
        try:
            await p(wf, Doc(url="bad"))
        except ValueError:
            return good.text + " and one bad"
        return good.text

    done = await app.arun(twice, workflow_id="twice-1")
    assert done.value == "good! and one bad"
    rows = [(s.at, s.id, s.status) for s in done.record.stages]
    assert rows == [("", "first", "completed"), ("", "second", "completed"),
                    ("pipeline#2/", "first", "completed"),
                    ("pipeline#2/", "second", "failed")]  # fmt: skip
    assert tether.RunRecord.from_dict(done.record.to_dict()) == done.record


async def test_a_retried_step_answers_the_stages_its_pipeline_completed(app: App) -> None:
    """A pipeline inside ``wf.step(..., retry=n)``: a retry goes on from the stages the
    failed attempt completed (recorded once, never recomputed) and starts the rest anew,
    as started, not resumed."""
    ran: list[str] = []
    p = _costly_then_flaky("in-retried-step", ran)

    @app.workflow(name="retried-step")
    async def retried(wf: tether.Workflow) -> str:
        out = await wf.step("process", lambda: p(wf, Doc(url="x")), retry=3)
        return str(out.text)

    done = await app.arun(retried, workflow_id="retried-1")
    assert done.value == "x!" and ran == ["costly", "flaky", "flaky"]
    assert done.record.steps["process"].attempts == 2
    # the retry starts "flaky" anew (it read as started and resumed at once: a tracer
    # ended its fresh span as parked and opened a second one, "resumed", beside it)
    drives = [(e.type, e.message) for e in done.record.events
              if e.type in ("stage.started", "stage.resumed")]  # fmt: skip
    assert drives == [("stage.started", "costly"), ("stage.started", "flaky"),
                      ("stage.started", "flaky")]  # fmt: skip


async def test_a_pipeline_with_a_budget_is_refused_inside_another_runs_code(
    database_url: str, clock: tether.FakeClock
) -> None:
    """Called from a workflow's code, a pipeline's own budget= did not hold (its stage
    spent $0.012 past a max_usd of $0.003): the call is refused, saying to run it as a
    child run, where its budget holds."""
    usage = ai.Usage(input_tokens=1000, output_tokens=100)  # $0.0012 a call
    prices = ai.Prices({"fake:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    fake = ai.FakeModel(usage=usage)

    @tether.stage(id="spend", input=Doc, output=Part)
    async def spend(ctx: tether.StageContext[Doc, None]) -> Part:
        for i in range(10):
            await ctx.ai.generate_text("fake:m", prompt=str(i))
        return Part(text=ctx.input.url)

    p = tether.Pipeline("capped", input=Doc, output=Part, budget={"max_usd": 0.003}).pipe(spend)
    async with App(database_url, clock=clock, ai=ai.Providers(fake=fake, prices=prices)) as app:
        app.register(p)

        @app.workflow(name="embeds-capped")
        async def embeds(wf: tether.Workflow, as_child: bool) -> str:
            out = await (wf.child(p, Doc(url="u")) if as_child else p(wf, Doc(url="u")))
            return str(out.text)

        with pytest.raises(tether.PipelineError, match=r"await wf\.child\(pipeline, input\)"):
            await app.arun(embeds, False, workflow_id="inline")
        assert fake.calls == []
        with pytest.raises(tether.ChildRunError):
            await app.arun(embeds, True, workflow_id="as-child")
        assert len(fake.calls) == 3  # the child's budget stopped it
