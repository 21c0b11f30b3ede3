"""Pipelines run as durable workflows: typed end to end, stages recorded once,
parallel groups overlapping, rerun from a stage, artifacts, logs and usage;
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

import tether
from tether import App, FakeClock, RunStatus, ai

from ._flows import Doc, Report, Summary, Text, doc_pipeline, extract


def _effects(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.log"
    monkeypatch.setenv("STAGE_EFFECTS", str(path))
    return path


async def test_types_flow_end_to_end_and_a_replay_runs_nothing(app: App, effects: Path) -> None:
    app.register(doc_pipeline)
    first = await app.arun(doc_pipeline, Doc(url="u"), config={"extract": {"max_length": 30}},
                           workflow_id="d1")  # fmt: skip
    assert first.status is RunStatus.COMPLETED
    assert isinstance(first.value, Report) and first.value.summary == "text of u te"
    again = await app.arun(doc_pipeline, workflow_id="d1")  # the recorded input is used
    assert again.value == first.value and isinstance(again.value, Report)
    assert sorted(_effects(effects)) == ["aggregate", "extract", "keywords", "summarize"]
    rec = first.record
    assert rec.input["config"]["extract"] == {"max_length": 30, "fail": False}
    assert [(s.id, s.group, s.status, s.attempt) for s in rec.stages] == [
        ("extract", 1, "completed", 1), ("summarize", 2, "completed", 1),
        ("keywords", 2, "completed", 1), ("aggregate", 3, "completed", 1)]  # fmt: skip
    assert all(s.started_at is not None and s.seconds is not None for s in rec.stages)
    assert "extract/fetch" in rec.steps  # a stage's steps are named by its scope
    logs = [e for e in rec.events if e.type == "stage.log"]
    assert [(e.message, e.detail["fields"]) for e in logs] == [("fetched", {"chars": 40})]
    assert rec.to_dict()["stages"][0]["status"] == "completed"
    assert tether.RunRecord.from_dict(rec.to_dict()) == rec  # as a client reads it over HTTP


async def test_a_bad_config_fails_before_a_run_exists(app: App) -> None:
    with pytest.raises(tether.PipelineError, match=r"config of stage 'extract'.*max_length"):
        await app.arun(doc_pipeline, Doc(url="u"), config={"extract": {"max_length": "x"}})
    with pytest.raises(tether.InvalidArgumentError, match="config= is the stage config"):

        async def plain(wf: tether.Workflow) -> None:
            return None

        await app.arun(plain, config={"a": {}})
    assert await app.alist_runs() == []


async def test_parallel_stages_really_overlap(app: App) -> None:
    entered = {"left": asyncio.Event(), "right": asyncio.Event()}

    class Out(BaseModel):
        side: str

    def side(name: str, other: str) -> tether.Stage[Text, Out, None]:
        @tether.stage(id=name, input=Text, output=Out)
        async def run(ctx: tether.StageContext[Text, None]) -> Out:
            entered[name].set()
            await asyncio.wait_for(entered[other].wait(), 10)  # both in flight, or a timeout
            return Out(side=name)

        return run

    p = tether.Pipeline("overlap", input=Doc).pipe(extract).parallel(
        [side("left", "right"), side("right", "left")])  # fmt: skip
    result = await app.arun(p, Doc(url="u"))
    assert result.value == {"left": {"side": "left"}, "right": {"side": "right"}}


async def test_a_failing_stage_then_rerun_from_it_after_the_fix(
    app: App, effects: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.register(doc_pipeline)
    monkeypatch.setenv("STAGE_SUMMARIZE_BROKEN", "1")
    with pytest.raises(RuntimeError, match="summarizer is broken"):
        await app.arun(doc_pipeline, Doc(url="u"), workflow_id="fix-me")
    rec = await app.aget_record("fix-me")
    status = {s.id: s.status for s in rec.stages}
    assert status["extract"] == "completed" and status["summarize"] == "failed"
    assert status["aggregate"] == "skipped"
    assert "summarizer is broken" in (rec.stages[1].error or "")

    monkeypatch.delenv("STAGE_SUMMARIZE_BROKEN")  # the fix is deployed
    fixed = await app.arerun_from("fix-me", "summarize")
    assert fixed.status is RunStatus.COMPLETED and isinstance(fixed.value, Report)
    assert _effects(effects).count("extract") == 1  # earlier outputs kept
    assert _effects(effects).count("summarize") == 2
    stages = {s.id: s for s in fixed.record.stages}
    assert (stages["extract"].attempt, stages["summarize"].attempt) == (1, 2)
    assert fixed.record.attempt == 2 and (await app.aget_run("fix-me")).attempt == 2


async def test_rerun_from_needs_a_finished_run_and_a_known_stage(app: App) -> None:
    app.register(doc_pipeline)
    await app.arun(doc_pipeline, Doc(url="u"), workflow_id="r1")
    with pytest.raises(tether.InvalidArgumentError):
        await app.arerun_from("r1", "no-such-stage")  # not a stage: taken as a step key
    again = await app.arerun_from("r1", "aggregate")
    assert again.status is RunStatus.COMPLETED


class Big(BaseModel):
    blob: str


@tether.stage(id="big", input=Doc, output=Big)
async def big(ctx: tether.StageContext[Doc, None]) -> Big:
    await ctx.artifacts.put("notes.txt", "some notes")
    await ctx.artifacts.put("data.json", {"n": 1})
    return Big(blob="x" * 5000)


@tether.stage(id="reader", output=Summary)
async def reader(ctx: tether.StageContext[object, None]) -> Summary:
    notes = await ctx.artifacts.get("notes.txt", stage="big")
    assert await ctx.artifacts.get_json("data.json", stage=big) == {"n": 1}
    assert await ctx.artifacts.list(stage="big") == ["data.json", "notes.txt"]
    return Summary(summary=notes.decode() + str(len(ctx.require(big).blob)))


async def test_large_outputs_and_artifacts_live_in_the_blob_store(database_url: str) -> None:
    app = App(database_url, clock=FakeClock())
    p = tether.Pipeline("blobs", input=Doc, inline_limit=1000).pipe(big).pipe(reader)
    app.register(p)
    try:
        result = await app.arun(p, Doc(url="u"), workflow_id="b/1")
        assert result.value == Summary(summary="some notes5000")
        rec = result.record
        assert rec.stages[0].output_blob == "runs/b%2F1/stages/big/1/output.json"
        assert (
            "blob" in rec.steps["stage:big"].result
            and "output" not in rec.steps["stage:big"].result
        )
        assert len(await app.blobs.list("runs/b%2F1/")) == 3
        again = await app.arun(p, Doc(url="u"), workflow_id="b/1")  # read back from the blob
        assert again.value == result.value

        await app.arerun_from("b/1", "big")  # the old attempt's files go after the commit
        keys = await app.blobs.list("runs/b%2F1/")
        assert keys and all("/big/2/" in k for k in keys)
        await app.adelete_run("b/1")
        assert await app.blobs.list("runs/b%2F1/") == []
    finally:
        await app.aclose()


async def test_logs_and_progress_are_written_once_across_a_wait(app: App) -> None:
    @tether.stage(id="ask", input=Doc, output=Summary)
    async def ask(ctx: tether.StageContext[Doc, None]) -> Summary:
        await ctx.log("info", "asking")
        await ctx.progress(0.5, "waiting for a person")
        answer = await ctx.workflow.wait_for_signal("answer")
        await ctx.log("info", "answered", who=answer)
        return Summary(summary=answer)

    p = tether.Pipeline("asker", input=Doc).pipe(ask)
    app.register(p)
    parked = await app.arun(p, Doc(url="u"), workflow_id="ask1")
    assert parked.status is RunStatus.WAITING
    assert parked.record.stages[0].status == "suspended"
    assert parked.record.stages[0].progress == 0.5
    assert "ask/signal:answer#1" in {w.key for w in await app.alist_waits("ask1")}
    await app.asignal("ask1", "answer", "ada")
    done = await app.aresult("ask1", timeout=10)
    assert done.value == Summary(summary="ada")
    logs = [e.message for e in done.record.events if e.type == "stage.log"]
    assert logs == ["asking", "answered"]
    assert [e.message for e in done.record.events if e.type == "stage.progress"] == [
        "waiting for a person"
    ]


async def test_a_stages_ai_calls_are_summed_per_stage(database_url: str) -> None:
    model = ai.FakeModel(["short summary"], usage=ai.Usage(input_tokens=1000, output_tokens=100))
    prices = ai.Prices({"demo:small": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, prices=prices))

    @tether.stage(id="llm", input=Text, output=Summary)
    async def llm(ctx: tether.StageContext[Text, None]) -> Summary:
        reply = await ctx.ai.generate_text("demo:small", prompt=ctx.input.text)
        return Summary(summary=reply.text)

    p = tether.Pipeline("ai-stage", input=Doc).pipe(extract).pipe(llm)
    try:
        result = await app.arun(p, Doc(url="u"))
        usage = {s.id: s.usage for s in result.record.stages}
        assert usage["extract"] is None
        assert usage["llm"] is not None and usage["llm"].calls == 1
        assert usage["llm"].cost_micro_usd == 1200  # 1000 in at $1/M + 100 out at $2/M
        assert result.record.usage is not None
        assert result.record.usage.total.cost_micro_usd == 1200
        assert tether.RunRecord.from_dict(result.record.to_dict()) == result.record
    finally:
        await app.aclose()


async def test_a_stages_usage_counts_the_calls_of_its_current_attempt(database_url: str) -> None:
    model = ai.FakeModel(usage=ai.Usage(input_tokens=1000, output_tokens=100))  # 1200 micro-USD
    prices = ai.Prices({"demo:small": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, prices=prices))

    @tether.stage(id="first", input=Doc, output=Summary)
    async def first(ctx: tether.StageContext[Doc, None]) -> Summary:
        return Summary(summary=(await ctx.ai.generate_text("demo:small", prompt="a")).text)

    @tether.stage(id="second", input=Summary, output=Summary)
    async def second(ctx: tether.StageContext[Summary, None]) -> Summary:
        return Summary(summary=(await ctx.ai.generate_text("demo:small", prompt="b")).text)

    p = tether.Pipeline("two-llms", input=Doc, output=Summary).pipe(first).pipe(second)
    app.register(p)

    def stages(result: tether.RunResult[object]) -> list[tuple[str, int | None, int]]:
        return [(s.id, s.attempt, s.usage.calls if s.usage else 0) for s in result.record.stages]

    try:
        await app.arun(p, Doc(url="u"), workflow_id="s1")
        again = await app.arerun_from("s1", "second")  # the first stage's calls are kept
        assert stages(again) == [("first", 1, 1), ("second", 2, 1)]
        # from a step inside the stage: the stage's start, recorded before it in the
        # attempt that ran it last, is kept, so the stage goes on in that attempt,
        # whose calls now are the one forgotten (spent all the same) and the new one
        inside = await app.arerun_from("s1", "second/ai.text:demo:small")
        assert stages(inside) == [("first", 1, 1), ("second", 2, 2)]
        assert inside.record.usage is not None  # the run counts every call: money spent
        assert inside.record.usage.total.calls == 4
        assert inside.record.usage.total.cost_micro_usd == 4 * 1200
    finally:
        await app.aclose()


async def test_a_stage_returning_the_wrong_type_fails_naming_it(app: App) -> None:
    @tether.stage(id="liar", input=Doc, output=Summary)
    async def liar(ctx: tether.StageContext[Doc, None]) -> Summary:
        return {"nope": 1}  # type: ignore[return-value]

    with pytest.raises(tether.StageError, match="stage 'liar' returned a value that is not"):
        await app.arun(tether.Pipeline("liar", input=Doc).pipe(liar), Doc(url="u"))


async def test_require_of_a_stage_that_did_not_run_earlier_is_an_error(app: App) -> None:
    @tether.stage(id="greedy", input=Doc, output=Summary)
    async def greedy(ctx: tether.StageContext[Doc, None]) -> Summary:
        ctx.require("aggregate")
        raise AssertionError("unreachable")

    with pytest.raises(tether.InvalidArgumentError, match="requires the output of 'aggregate'"):
        await app.arun(tether.Pipeline("greedy", input=Doc).pipe(greedy), Doc(url="u"))


async def test_require_of_an_unknown_stage_names_the_pipelines_stages(app: App) -> None:
    @tether.stage(id="typo", input=Text, output=Summary)
    async def typo(ctx: tether.StageContext[Text, None]) -> Summary:
        ctx.require("extrct")
        raise AssertionError("unreachable")

    p = tether.Pipeline("typos", input=Doc).pipe(extract).pipe(typo)
    said = (r"requires the output of 'extrct', which is no stage of this pipeline; did you "
            r"mean 'extract'\? check the spelling: its stages are 'extract', 'typo'")  # fmt: skip
    with pytest.raises(tether.InvalidArgumentError, match=said):
        await app.arun(p, Doc(url="u"))


async def test_require_of_a_later_stage_says_to_move_it_before(app: App) -> None:
    @tether.stage(id="early", input=Doc, output=Text)
    async def early(ctx: tether.StageContext[Doc, None]) -> Text:
        ctx.require("late")
        raise AssertionError("unreachable")

    @tether.stage(id="late", input=Text, output=Summary)
    async def late(ctx: tether.StageContext[Text, None]) -> Summary:
        return Summary(summary=ctx.input.text)

    p = tether.Pipeline("backwards", input=Doc).pipe(early).pipe(late)
    said = (r"'early' requires the output of 'late', which runs later, in group 2 \(this "
            r"stage is in group 1\): move 'late' to a group before this one, and declare it "
            r"with dependencies=\['late'\]")  # fmt: skip
    with pytest.raises(tether.InvalidArgumentError, match=said):
        await app.arun(p, Doc(url="u"))


async def test_rerun_after_a_fix_deployed_as_a_compatible_version(
    database_url: str, effects: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ._flows import aggregate, keywords, summarize

    monkeypatch.setenv("STAGE_SUMMARIZE_BROKEN", "1")
    old = App(database_url, clock=FakeClock())
    old.register(doc_pipeline)  # version "1"
    with pytest.raises(RuntimeError):
        await old.arun(doc_pipeline, Doc(url="u"), workflow_id="v1-run")
    await old.aclose()

    monkeypatch.delenv("STAGE_SUMMARIZE_BROKEN")
    fixed = (
        tether.Pipeline("doc-processor", input=Doc, output=Report, version="2", compatible=["1"])
        .pipe(extract)
        .parallel([summarize, keywords])
        .pipe(aggregate)
    )
    new = App(database_url, clock=FakeClock())
    new.register(fixed)
    try:
        done = await new.arerun_from("v1-run", "summarize")
        assert done.status is RunStatus.COMPLETED and isinstance(done.value, Report)
        assert _effects(effects).count("extract") == 1
    finally:
        await new.aclose()


class N(BaseModel):
    x: int


@tether.stage(id="waits", input=N, output=N)
async def waits(ctx: tether.StageContext[N, None]) -> N:
    return N(x=await ctx.workflow.wait_for_signal("go"))


@tether.stage(id="breaks", input=N, output=N)
async def breaks(ctx: tether.StageContext[N, None]) -> N:
    raise RuntimeError("breaks broke")


OUT: dict[str, list[str]] = {"cancelled": []}


@tether.batch_stage(id="batches", input=N, output=N)
async def batches(ctx: tether.StageContext[N, None]) -> tether.Suspend:
    return tether.Suspend({"batch": "b-1"}, poll_every=3600)


@batches.check
async def _never(state: dict[str, str], ctx: tether.StageContext[N, None]) -> tether.NotReady:
    return tether.NotReady()


@batches.on_cancel
async def _cancelled(state: dict[str, str]) -> None:
    OUT["cancelled"].append(state["batch"])


@pytest.mark.parametrize("sibling", [waits, batches], ids=["signal", "batch"])
async def test_a_failure_beside_a_waiting_sibling_fails_the_run_at_once(
    app: App, sibling: tether.Stage[N, N, None]
) -> None:
    # before, the run parked behind the sibling's wait (up to a batch's max_wait), then ran
    # the failed stage again when it woke
    OUT["cancelled"].clear()
    p = tether.Pipeline(f"fails-beside-{sibling.id}", input=N).parallel([sibling, breaks])
    app.register(p)
    with pytest.raises(RuntimeError, match="breaks broke"):
        await app.arun(p, N(x=1), workflow_id="fb")
    rec = await app.aget_record("fb")
    assert rec.status is RunStatus.FAILED
    assert {s.id: s.status for s in rec.stages} == {sibling.id: "cancelled", "breaks": "failed"}
    [stopped] = [e.detail for e in rec.events if e.type == "stage.cancelled"]
    assert stopped["reason"] == "stage 'breaks' of its group failed"
    assert OUT["cancelled"] == (["b-1"] if sibling is batches else [])  # the batch was stopped


async def test_require_of_a_sibling_is_an_error_whichever_finishes_first(app: App) -> None:
    @tether.stage(id="quick", input=N, output=N)
    async def quick(ctx: tether.StageContext[N, None]) -> N:
        return N(x=7)

    @tether.stage(id="slow", input=N, output=N)
    async def slow(ctx: tether.StageContext[N, None]) -> N:
        await asyncio.sleep(0.05)  # the sibling has finished by now
        return N(x=ctx.require(quick).x)

    p = tether.Pipeline("siblings", input=N).parallel([quick, slow])
    with pytest.raises(tether.InvalidArgumentError, match="'slow' requires the output of 'quick'"):
        await app.arun(p, N(x=1))


async def test_a_pipeline_output_that_breaks_a_constraint_fails_naming_it(app: App) -> None:
    class Big(BaseModel):
        x: int = Field(ge=10)

    @tether.stage(id="small", input=N, output=N)
    async def small(ctx: tether.StageContext[N, None]) -> N:
        return N(x=1)

    p = tether.Pipeline("constrained", input=N, output=Big).pipe(small)
    expected = (r"pipeline 'constrained': what its last group \['small'\] gave does not fit "
                r"its output Big: x: Input should be greater than or equal to 10.*"
                r"rerun_from\('c1', 'small'\)")  # fmt: skip
    with pytest.raises(tether.StageError, match=expected):
        await app.arun(p, N(x=1), workflow_id="c1")


async def test_rerun_from_a_stage_that_started_only_in_a_forgotten_attempt(app: App) -> None:
    fail = {"a": False, "b": True}

    @tether.stage(id="a", input=N, output=N)
    async def a(ctx: tether.StageContext[N, None]) -> N:
        if fail["a"]:
            raise RuntimeError("a broke")
        return ctx.input

    @tether.stage(id="b", input=N, output=N)
    async def b(ctx: tether.StageContext[N, None]) -> N:
        if fail["b"]:
            raise RuntimeError("b broke")
        return ctx.input

    p = tether.Pipeline("twice", input=N).pipe(a).pipe(b)
    app.register(p)
    with pytest.raises(RuntimeError, match="b broke"):
        await app.arun(p, N(x=1), workflow_id="t1")
    fail["a"] = True
    with pytest.raises(RuntimeError, match="a broke"):
        await app.arerun_from("t1", "a")  # attempt 2: b never starts
    # before: "run 't1' has no step 'stage:b.start'", naming an internal step
    with pytest.raises(tether.PipelineError, match="stage 'b' never started in this run"):
        await app.arerun_from("t1", "b")


@tether.stage(id="first", input=N, output=N)
async def first(ctx: tether.StageContext[N, None]) -> N:
    return N(x=ctx.input.x + 1)


@tether.stage(id="doubles", input=N, output=N)
async def doubles(ctx: tether.StageContext[N, None]) -> N:
    return N(x=ctx.input.x * 2)


def _release(version: str, *stages: tether.Stage[N, N, None]) -> tether.Pipeline[N, N]:
    p = tether.Pipeline("evolving", input=N, output=N, version=version, compatible=["1"])
    for s in stages:
        p = p.pipe(s)
    return p


again = tether.stage(id="again", input=N, output=N)(doubles.fn)


@pytest.mark.parametrize(
    ("v2", "ran"),
    [((waits, doubles), ["waits", "doubles"]),  # "first" removed
     ((first, waits, doubles, again), ["first", "waits", "doubles", "again"])],  # one added
    ids=["removed", "added"],
)  # fmt: skip
async def test_a_compatible_release_that_changes_the_stages_resumes_and_shows_them(
    database_url: str, v2: tuple[tether.Stage[N, N, None], ...], ran: list[str]
) -> None:
    old = App(database_url, clock=FakeClock())
    v1 = _release("1", first, waits, doubles)
    old.register(v1)
    assert (await old.arun(v1, N(x=1), workflow_id="e1")).status is RunStatus.WAITING
    await old.aclose()
    new = App(database_url, clock=FakeClock())
    new.register(_release("2", *v2))
    try:
        # before: a removed stage's recorded config failed the resume for good
        await new.asignal("e1", "go", 10)
        done = await new.aresume("e1")
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        # before: the record kept the plan the run started with
        assert [(s.id, s.status) for s in done.record.stages] == [(i, "completed") for i in ran]
    finally:
        await new.aclose()


class Stamp(BaseModel):
    at: datetime


@tether.stage(id="stamps", input=Doc, output=Summary)
async def stamps(ctx: tether.StageContext[Doc, None]) -> Summary:
    await ctx.artifacts.put("stamp.json", {"stamp": Stamp(at=datetime(2026, 1, 2, tzinfo=UTC))})
    back = await ctx.artifacts.get_json("stamp.json")
    try:
        await ctx.artifacts.put("bad.json", {"x": math.nan})
    except tether.NotSerializableError as exc:
        return Summary(summary=f"{back['stamp']['at']} / {exc}")
    return Summary(summary="NaN was written")


async def test_an_artifact_of_json_data_is_written_as_values_are(app: App) -> None:
    # before: a model or a datetime raised a bare TypeError, NaN was written as `NaN`
    p = tether.Pipeline("stamps", input=Doc).pipe(stamps)
    app.register(p)
    said = (await app.arun(p, Doc(url="u"), workflow_id="st")).value.summary
    assert said.startswith("2026-01-02T00:00:00Z / ") and "artifact 'bad.json'" in said, said


async def test_log_levels_are_read_in_any_case(app: App) -> None:
    @tether.stage(id="ported", input=Doc, output=Summary)
    async def ported(ctx: tether.StageContext[Doc, None]) -> Summary:
        await ctx.log("INFO", "as bratsos spells it")  # type: ignore[arg-type]
        await ctx.log("WARN", "short for warning")  # type: ignore[arg-type]
        await ctx.log("Error", "mixed case")  # type: ignore[arg-type]
        try:
            await ctx.log("verbose", "no such level")  # type: ignore[arg-type]
        except tether.InvalidArgumentError as exc:
            return Summary(summary=str(exc))
        return Summary(summary="verbose was taken")

    p = tether.Pipeline("ported", input=Doc).pipe(ported)
    done = await app.arun(p, Doc(url="u"), workflow_id="lv")
    assert done.value.summary.startswith("log level must be one of")
    logs = [(e.detail["level"], e.message) for e in done.record.events if e.type == "stage.log"]
    assert logs == [("info", "as bratsos spells it"), ("warning", "short for warning"),
                    ("error", "mixed case")]  # fmt: skip


class _Ticket(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    ticket_id: str
    body_text: str


class _Reply(BaseModel):
    reply_to: str = Field(alias="replyTo")
    text: str


class _Tone(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    tone_of_voice: str = "plain"


@tether.stage(id="answer", input=_Ticket, output=_Reply, config=_Tone)
async def _answer(ctx: tether.StageContext[_Ticket, _Tone]) -> _Reply:
    return _Reply(replyTo=ctx.input.ticket_id, text=f"{ctx.config.tone_of_voice}: ok")


async def test_models_with_aliases_flow_through_a_pipeline(app: App) -> None:
    """The input and config were recorded by field name and read back by alias: every
    such run failed at its first stage."""
    p = tether.Pipeline("aliased", input=_Ticket, output=_Reply).pipe(_answer)
    app.register(p)
    ticket = _Ticket(ticketId="T-1", bodyText="help")
    done = await app.arun(p, ticket, config={"answer": {"toneOfVoice": "warm"}},
                          workflow_id="aliased-1")  # fmt: skip
    assert done.value == _Reply(replyTo="T-1", text="warm: ok")
    assert (await app.arun(p, workflow_id="aliased-1")).value == done.value  # replayed


async def test_an_untyped_pipeline_input_reads_the_same_in_every_drive(app: App) -> None:
    # given a model, the first drive's stage got the model and the drive after the wait
    # got the dict the run recorded: `ctx.input.url` worked, then failed on resume
    seen: list[object] = []

    @tether.stage(id="read", output=Summary)
    async def read(ctx: tether.StageContext[object, None]) -> Summary:
        seen.append(ctx.input)
        await ctx.workflow.wait_for_signal("go")
        return Summary(summary=str(ctx.input))

    p = tether.Pipeline("untyped").pipe(read)
    app.register(p)
    first = await app.arun(p, Doc(url="https://a"), workflow_id="u1")
    assert first.status is RunStatus.WAITING
    await app.asignal("u1", "go", None)
    done = await app.aresume("u1")
    assert seen == [{"url": "https://a"}, {"url": "https://a"}]
    assert done.value == Summary(summary="{'url': 'https://a'}")


async def test_a_log_inside_a_step_is_written_as_one_outside_it(app: App) -> None:
    when = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)

    @tether.stage(id="logger", input=Doc, output=Summary)
    async def logger(ctx: tether.StageContext[Doc, None]) -> Summary:
        await ctx.log("info", "outside", when=when, doc=ctx.input)

        async def inside() -> str:
            await ctx.log("info", "inside", when=when, doc=ctx.input)
            try:  # refused here, not by PostgreSQL when the step commits (a StoreError)
                await ctx.log("info", "not a number", ratio=math.nan)
            except tether.NotSerializableError as exc:
                return str(exc)
            return "NaN was taken"

        said = await ctx.workflow.step("inside", inside)
        return Summary(summary=said)

    p = tether.Pipeline("logger", input=Doc).pipe(logger)
    done = await app.arun(p, Doc(url="u"), workflow_id="lg")
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert "is nan" in done.value.summary
    fields = {e.message: e.detail["fields"] for e in done.record.events if e.type == "stage.log"}
    assert fields["inside"] == fields["outside"] == {
        "when": "2020-01-02T03:04:05Z", "doc": {"url": "u"}}  # fmt: skip
