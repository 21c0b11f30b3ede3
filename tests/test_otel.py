"""OpenTelemetry spans for runs, stages, steps and AI calls, parented correctly, one
trace per run across drives (checked with the SDK's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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
