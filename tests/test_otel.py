"""OpenTelemetry spans for runs, stages, steps and AI calls, parented correctly, one
trace per run across drives (checked with the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, ai
from tether.otel import Tracing, run_trace_context


class Doc(BaseModel):
    text: str


class Summary(BaseModel):
    summary: str


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@tether.stage(id="summarize", input=Doc, output=Summary)
async def summarize(ctx: tether.StageContext[Doc, None]) -> Summary:
    reply = await ctx.ai.generate_text("demo:small", prompt=ctx.input.text)
    return Summary(summary=reply.text)


async def test_spans_nest_run_stage_step_and_ai_call(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    model = ai.FakeModel(["short"], usage=ai.Usage(input_tokens=100, output_tokens=10))
    prices = ai.Prices({"demo:small": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, prices=prices),
              interceptors=[Tracing(provider)])  # fmt: skip
    p = tether.Pipeline("traced", input=Doc).pipe(summarize)
    try:
        done = await app.arun(p, Doc(text="hello"), workflow_id="t1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    run = by_name["tether.run traced"]
    stage = by_name["tether.stage summarize"]
    call = by_name["tether.step summarize/ai.text:demo:small"]
    model_span = by_name["chat small"]
    expected_trace = run_trace_context("t1")
    from opentelemetry import trace

    root = trace.get_current_span(expected_trace).get_span_context()
    assert run.context.trace_id == root.trace_id and run.parent.span_id == root.span_id
    assert stage.parent.span_id == run.context.span_id
    assert call.parent.span_id == stage.context.span_id
    assert model_span.parent.span_id == call.context.span_id
    assert model_span.attributes["gen_ai.system"] == "demo"
    assert model_span.attributes["gen_ai.usage.input_tokens"] == 100
    assert model_span.attributes["tether.cost_usd"] == pytest.approx(0.00012)
    assert by_name["tether.step stage:summarize"].parent.span_id == stage.context.span_id


async def test_a_resumed_run_continues_its_trace_in_another_app(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans

    async def gated(wf: tether.Workflow) -> str:
        await wf.step("before", lambda: 1)
        who = await wf.wait_for_signal("go")
        await wf.step("after", lambda: 2)
        return str(who)

    first = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)])
    parked = await first.arun(gated, workflow_id="g1")
    assert parked.status is RunStatus.WAITING
    await first.asignal("g1", "go", "ada")
    await first.aclose()
    second = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)])
    second.workflow(gated)  # another process resumes it
    try:
        done = await second.aresume("g1")
    finally:
        await second.aclose()
    assert done.status is RunStatus.COMPLETED
    runs = [s for s in exporter.get_finished_spans() if s.name.startswith("tether.run")]
    assert len(runs) >= 2 and len({s.context.trace_id for s in runs}) == 1
    steps = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("tether.step")}
    assert set(steps) == {"tether.step before", "tether.step after"}  # replays make no span
    assert steps["tether.step after"].context.trace_id == runs[0].context.trace_id


def test_tracing_without_the_extra_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import tether.otel as otel

    monkeypatch.setattr(otel, "trace", None)
    with pytest.raises(tether.InvalidArgumentError, match=r"tether\[otel\]"):
        Tracing()


def _stage_spans(exporter: InMemorySpanExporter, stage_id: str) -> list[Any]:
    found = [s for s in exporter.get_finished_spans() if s.name == f"tether.stage {stage_id}"]
    return sorted(found, key=lambda s: s.start_time)


def _parent_of(exporter: InMemorySpanExporter, name: str) -> int | None:
    [span] = [s for s in exporter.get_finished_spans() if s.name == name]
    return None if span.parent is None else span.parent.span_id


@tether.stage(id="approve", input=Doc, output=Summary)
async def approve(ctx: tether.StageContext[Doc, None]) -> Summary:
    await ctx.workflow.step("before", lambda: 1)
    who = await ctx.workflow.wait_for_signal("go")
    return Summary(summary=await ctx.workflow.step("after", lambda: str(who)))


async def test_a_stage_resumed_in_a_later_drive_gets_a_span_in_that_drive(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)],
              resume_woken=False)  # fmt: skip
    p = tether.Pipeline("gated", input=Doc).pipe(approve)
    app.register(p)
    try:
        parked = await app.arun(p, Doc(text="x"), workflow_id="s1")
        assert parked.status is RunStatus.WAITING
        await app.asignal("s1", "go", "ada")
        done = await app.aresume("s1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED
    first, second = _stage_spans(exporter, "approve")
    assert first.attributes["tether.stage.parked"] is True
    assert "tether.stage.parked" not in second.attributes
    assert second.attributes["tether.stage.resumed"] is True
    for key in ("tether.workflow_id", "tether.stage", "tether.stage.group", "tether.attempt"):
        assert second.attributes[key] == first.attributes[key]
    assert _parent_of(exporter, "tether.step approve/before") == first.context.span_id
    assert _parent_of(exporter, "tether.step approve/after") == second.context.span_id
    assert _parent_of(exporter, "tether.step stage:approve") == second.context.span_id
    runs = sorted((s for s in exporter.get_finished_spans() if s.name == "tether.run gated"),
                  key=lambda s: s.start_time)  # fmt: skip
    assert second.parent.span_id == runs[1].context.span_id


@tether.batch_stage(id="slow", input=Doc, output=Summary)
async def slow(ctx: tether.StageContext[Doc, None]) -> tether.Suspend:
    return tether.Suspend({"asked": ctx.input.text}, poll_every=60)


@slow.check
async def _slow_check(state: dict[str, Any], ctx: tether.StageContext[Doc, None]) -> Any:
    checks = await ctx.workflow.step("count", lambda: 1)  # a step inside each check
    del checks
    if ctx.workflow.clock.now() < START + timedelta(seconds=60):
        return tether.NotReady()
    return tether.Ready(Summary(summary=state["asked"]))


START = datetime(2030, 1, 1, tzinfo=UTC)


async def test_a_batch_stage_gets_a_span_in_each_drive_that_checks_it(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    clock = FakeClock(START)
    app = App(database_url, clock=clock, interceptors=[Tracing(provider)], resume_woken=False)
    p = tether.Pipeline("batched", input=Doc).pipe(slow)
    app.register(p)
    try:
        parked = await app.arun(p, Doc(text="x"), workflow_id="b1")
        assert parked.status is RunStatus.WAITING
        clock.advance(60)
        assert await app.afire_due_timers() == ["b1"]
        done = await app.aresume("b1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED and done.value == Summary(summary="x")
    first, second = _stage_spans(exporter, "slow")
    assert first.attributes["tether.stage.parked"] is True
    assert "tether.stage.parked" not in second.attributes
    assert second.attributes["tether.stage.resumed"] is True
    assert _parent_of(exporter, "tether.step stage:slow.check#2") == second.context.span_id
    assert _parent_of(exporter, "tether.step stage:slow") == second.context.span_id


class Counted(BaseModel):
    words: int


@tether.stage(id="count", input=Counted, output=Summary)
async def count(ctx: tether.StageContext[Counted, None]) -> Summary:
    raise AssertionError("never runs: its input does not fit")


async def test_a_stage_whose_input_does_not_fit_ends_its_span_as_an_error(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans

    class Words(BaseModel):  # a str where an int is wanted: fits when built, not with "x"
        words: str

    @tether.stage(id="split", input=Doc, output=Words)
    async def split(ctx: tether.StageContext[Doc, None]) -> Words:
        return Words(words=ctx.input.text)

    app = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)])
    p = tether.Pipeline("misfit", input=Doc).pipe(split).pipe(count)
    try:
        with pytest.raises(tether.StageError, match="input of stage 'count' does not fit"):
            await app.arun(p, Doc(text="x"), workflow_id="m1")
    finally:
        await app.aclose()
    [span] = _stage_spans(exporter, "count")
    assert span.status.status_code is StatusCode.ERROR
    assert "does not fit Counted" in (span.status.description or "")
    assert "tether.stage.parked" not in span.attributes


async def test_each_drive_says_how_it_ended(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = App(database_url, interceptors=[Tracing(provider)])

    @app.workflow
    async def gated(wf: tether.Workflow) -> int:
        await wf.step("a", lambda: 1)
        await wf.wait_for_signal("go")
        return 2

    try:
        await app.arun(gated, workflow_id="gated")
        await app.asignal("gated", "go")
        await app.aresult("gated", timeout=10)
    finally:
        await app.aclose()
    drives = [s for s in exporter.get_finished_spans() if s.name.startswith("tether.run ")]
    # before: "Suspend" (an internal class) for the parked drive, nothing for the last
    assert [s.attributes["tether.outcome"] for s in drives] == ["parked", "completed"]
    assert all(s.status.status_code is StatusCode.UNSET for s in drives)


class _Both:
    """Two stage bodies that each wait for the other to have started: they overlap."""

    started: ClassVar[dict[str, asyncio.Event]] = {}


@tether.stage(id="read", input=Doc, output=Doc)
async def read_both(ctx: tether.StageContext[Doc, None]) -> Doc:
    me, other = ("a", "b") if ctx.input.text == "a" else ("b", "a")
    _Both.started[me].set()
    await _Both.started[other].wait()
    return Doc(text=ctx.input.text.upper())


async def test_one_stage_id_called_twice_at_once_makes_two_stage_spans(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Two `for_each` items calling one pipeline run the stage `read` at once. Keyed by
    the stage id alone, the second start ended the first's span as parked (it was
    not) and its step hung under that ended span; each call has its own now, saying
    where it was called."""
    provider, exporter = spans
    _Both.started = {"a": asyncio.Event(), "b": asyncio.Event()}
    reader = tether.Pipeline("reader", input=Doc).pipe(read_both)
    app = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)])

    @app.workflow(name="both")
    async def both(wf: tether.Workflow) -> list[str]:
        async def one(text: str) -> str:
            return (await reader(wf, Doc(text=text))).text

        summary = await wf.for_each(["a", "b"], one, max_parallel=2)
        return [r.value for r in summary.results]

    try:
        done = await app.arun(both, workflow_id="both-1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED and done.value == ["A", "B"]
    finished = exporter.get_finished_spans()
    read = [s for s in finished if s.name == "tether.stage read"]
    assert [s.attributes.get("tether.stage.parked") for s in read] == [None, None]
    stages = {s.attributes["tether.stage.at"]: s for s in read}
    assert sorted(stages) == ["[0]", "[1]"]
    for at, stage in stages.items():
        (step,) = [s for s in finished if s.name == f"tether.step stage:read{at}"]
        assert step.parent.span_id == stage.context.span_id
        assert stage.start_time <= step.start_time and step.end_time <= stage.end_time


def test_a_provider_that_is_not_one_is_refused_saying_what_to_pass(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Passing the exporter (or a tracer) where the provider goes raised a bare
    AttributeError ("'InMemorySpanExporter' object has no attribute 'get_tracer'")."""
    provider, exporter = spans
    tracer = provider.get_tracer("mine")
    for wrong in (exporter, tracer, "console"):
        with pytest.raises(tether.InvalidArgumentError, match="takes an OpenTelemetry Tra"):
            Tracing(wrong)
    assert isinstance(Tracing(provider), Tracing)


@tether.stage(id="taken", input=Doc, output=Doc)
async def taken_over(ctx: tether.StageContext[Doc, None]) -> Doc:
    await ctx.workflow.step("one", lambda: 1)
    with pytest.raises(tether.RunAlreadyRunningError):  # while this process's claim holds
        await _TakeOver.second.aresume("f1")
    _TakeOver.clock.advance(31)  # this process stopped renewing its claim: it lapsed
    await _TakeOver.second.aresume("f1")  # another process took the run over
    await ctx.workflow.step("two", lambda: 2)  # fenced out here
    return ctx.input


class _TakeOver:
    clock: ClassVar[FakeClock]
    second: ClassVar[App]


async def test_a_stage_of_a_drive_fenced_out_still_ends_its_span(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A drive fenced out by another owner (StaleOwnerError) ends with no `workflow.`
    event: the span of the stage it was in stayed open for good, never exported, and
    the step spans under it pointed at a parent the trace never got."""
    provider, exporter = spans
    _TakeOver.clock = clock = FakeClock()
    first = App(database_url, clock=clock, interceptors=[Tracing(provider)])
    _TakeOver.second = second = App(database_url, clock=clock, interceptors=[Tracing(provider)])
    p = tether.Pipeline("fenced", input=Doc).pipe(taken_over)

    @first.workflow(name="fenced-flow")
    async def flow(wf: tether.Workflow) -> str:
        return (await p(wf, Doc(text="x"))).text

    @second.workflow(name="fenced-flow")
    async def other(wf: tether.Workflow) -> str:
        return "taken"

    try:
        with pytest.raises(tether.StaleOwnerError):
            await first.arun(flow, workflow_id="f1")
    finally:
        await first.aclose()
        await second.aclose()
    [stage] = _stage_spans(exporter, "taken")  # before: none, the span never ended
    assert stage.attributes["tether.stage.parked"] is True
    assert _parent_of(exporter, "tether.step taken/one") == stage.context.span_id
    [run] = [s for s in exporter.get_finished_spans() if s.name == "tether.run fenced-flow"
             and s.attributes["tether.outcome"] == "StaleOwnerError"]  # fmt: skip
    assert stage.parent.span_id == run.context.span_id and stage.end_time <= run.end_time
