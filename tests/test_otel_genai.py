"""The AI call spans: the GenAI attributes the call log has (cache and reasoning tokens,
the provider's system, `invoke_agent` for an agent's turn), each call's own times, and
the link from every drive to the span it began in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

import tether
from tether import App, FakeClock, RunStatus, ai
from tether.agents._turns import run_turn
from tether.agents.backends import MockBackend, TurnRequest
from tether.otel import Tracing


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    return sorted(found, key=lambda s: s.start_time or 0)


async def test_an_ai_span_carries_the_cache_and_reasoning_tokens_the_log_has(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    usage = ai.Usage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=10,
                     output_tokens=30, reasoning_tokens=12)  # fmt: skip
    model = ai.FakeModel(["hi", "ho"], usage=usage)
    plain = ai.FakeModel(["plain"], usage=ai.Usage(input_tokens=5, output_tokens=1))
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, other=plain),
              interceptors=[Tracing(provider)])  # fmt: skip

    @app.workflow
    async def asks(wf: tether.Workflow) -> str:
        await wf.ai.generate_text("other:tiny", prompt="x")
        return (await wf.ai.generate_text("demo:big", prompt="x")).text

    try:
        done = await app.arun(asks, workflow_id="cache-1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED
    [span] = _named(exporter, "chat big")
    attributes = span.attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == 100
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 10
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 12
    [small] = _named(exporter, "chat tiny")  # nothing cached or reasoned: no such count
    assert not any("cache" in k or "reasoning" in k for k in small.attributes or {})


async def test_an_agent_turn_is_an_invoke_agent_span_over_its_step(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter], tmp_path: Path
) -> None:
    provider, exporter = spans
    clock = FakeClock()
    backend = MockBackend([{"usage": {"input_tokens": 50, "output_tokens": 7,
                                      "cached_input_tokens": 20}}])  # fmt: skip
    app = App(database_url, clock=clock, interceptors=[Tracing(provider)])

    async def nothing(_: Any) -> None:
        return None

    async def no() -> bool:
        return False

    async def turn() -> dict[str, Any]:
        request = TurnRequest("p", tmp_path, 1, 1, None, {"identifier": "A-1"}, 0)
        return await run_turn(backend, request, stall_timeout_ms=0, cancelled=no,
                              on_event=nothing, model="mock-model", budget_key="issue:A-1",
                              clock=clock)  # fmt: skip

    @app.workflow
    async def agent(wf: tether.Workflow) -> str:
        return str((await wf.step("turn", turn))["status"])

    try:
        done = await app.arun(agent, workflow_id="agent-1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED and done.value == "completed"
    [span] = _named(exporter, "invoke_agent mock-model")  # before: "agent mock-model"
    attributes = span.attributes or {}
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 20
    [step] = _named(exporter, "tether.step turn")  # the log gives a turn no times
    assert span.parent is not None and span.parent.span_id == step.context.span_id
    assert step.start_time <= span.start_time < span.end_time <= step.end_time  # type: ignore[operator]


async def test_the_system_is_the_providers_own_and_its_name_is_tethers(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    work = ai.FakeModel(["a"], usage=ai.Usage(input_tokens=1, output_tokens=1))
    work.price_id = "openai"  # what ai.OpenAI() says (its catalog at genai-prices)
    grok = ai.FakeModel(["b"], usage=ai.Usage(input_tokens=1, output_tokens=1))
    grok.price_id = "x-ai"  # genai-prices' id; the conventions spell it x_ai
    mine = ai.FakeModel(["c"], usage=ai.Usage(input_tokens=1, output_tokens=1))
    providers = ai.Providers(work=work, grok=grok, mine=mine)
    app = App(database_url, clock=FakeClock(), ai=providers,
              interceptors=[Tracing(provider, ai=providers)])  # fmt: skip

    @app.workflow
    async def asks(wf: tether.Workflow) -> None:
        for model in ("work:gpt-4.1-mini", "grok:grok-3", "mine:local"):
            await wf.ai.generate_text(model, prompt="x")

    try:
        await app.arun(asks, workflow_id="system-1")
    finally:
        await app.aclose()
    seen = {}
    for name in ("chat gpt-4.1-mini", "chat grok-3", "chat local"):
        [span] = _named(exporter, name)
        attributes = span.attributes or {}
        assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"]
        seen[name] = (attributes["gen_ai.system"], attributes["tether.ai.provider"])
    assert seen == {
        "chat gpt-4.1-mini": ("openai", "work"),  # before: gen_ai.system "work"
        "chat grok-3": ("x_ai", "grok"),
        "chat local": ("mine", "mine"),  # a provider that does not say: its name
    }


def test_tracing_refuses_what_is_not_the_apps_providers() -> None:
    model = ai.FakeModel(["a"])
    for wrong in (model, {"demo": model}):
        with pytest.raises(tether.InvalidArgumentError, match=r"Tracing\(ai=\) takes the App"):
            Tracing(ai=wrong)  # type: ignore[arg-type]


async def test_the_tries_of_generate_object_follow_each_other_on_a_fake_clock(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The tries of one `generate_object` (one step) all ended at the step's end, each
    back-dated by its latency: they looked simultaneous. Under a FakeClock the last
    ends at the step's end and the one before where the clock says."""
    provider, exporter = spans
    clock = FakeClock()
    replies = iter(["not json", {"text": "ok"}])

    def slow(model: str, request: ai.TextRequest) -> Any:
        clock.advance(2)  # the provider took 2 s
        return next(replies)

    app = App(database_url, clock=clock, ai=ai.Providers(demo=ai.FakeModel(slow)),
              interceptors=[Tracing(provider)])  # fmt: skip

    @app.workflow
    async def asks(wf: tether.Workflow) -> str:
        return (await wf.ai.generate_object("demo:m", Reply, prompt="x")).object.text

    try:
        done = await app.arun(asks, workflow_id="times-1")
    finally:
        await app.aclose()
    assert done.value == "ok"
    first, second = _named(exporter, "chat m")
    [step] = _named(exporter, "tether.step ai.object:demo:m")
    two_s = 2_000_000_000
    assert first.end_time - first.start_time == two_s  # type: ignore[operator]
    assert second.end_time - second.start_time == two_s  # type: ignore[operator]
    assert second.start_time == first.end_time  # before: 2 s before it
    assert second.end_time <= step.end_time  # type: ignore[operator]


async def test_the_tries_of_generate_object_take_the_times_the_log_recorded(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """On the wall clock a call's span ends exactly when its row says it was answered."""
    provider, exporter = spans
    model = ai.FakeModel(["not json", {"text": "ok"}])
    app = App(database_url, ai=ai.Providers(demo=model), interceptors=[Tracing(provider)])

    @app.workflow
    async def asks(wf: tether.Workflow) -> str:
        return (await wf.ai.generate_object("demo:m", Reply, prompt="x")).object.text

    try:
        done = await app.arun(asks, workflow_id="times-2")
        rows = sorted(await app.alist_ai_calls("times-2"), key=lambda row: row.id)
    finally:
        await app.aclose()
    assert done.value == "ok" and len(rows) == 2
    [step] = _named(exporter, "tether.step ai.object:demo:m")
    tries = _named(exporter, "chat m")
    for span, row in zip(tries, rows, strict=True):
        assert span.end_time == _ns(row.at.astimezone(UTC))  # before: the step's end
        assert span.start_time == span.end_time - row.latency_ms * 1_000_000  # type: ignore[operator]
        assert step.start_time <= span.end_time <= step.end_time  # type: ignore[operator]
    assert tries[0].end_time <= tries[1].start_time  # type: ignore[operator]


class Reply(BaseModel):
    text: str


def _ns(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND * 1_000


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


async def test_each_drive_links_the_span_it_began_in(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The first drive links the caller of `arun`; the drive `aresume` starts links
    that caller, not the first one's (the docstring said only the first was linked)."""
    provider, exporter = spans
    app = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)],
              resume_woken=False)  # fmt: skip

    @app.workflow
    async def gated(wf: tether.Workflow) -> str:
        return str(await wf.wait_for_signal("go"))

    tracer = provider.get_tracer("caller")
    try:
        with tracer.start_as_current_span("submit") as submit:
            parked = await app.arun(gated, workflow_id="links-1")
        assert parked.status is RunStatus.WAITING
        await app.asignal("links-1", "go", "ada")
        with tracer.start_as_current_span("resume") as resume:
            done = await app.aresume("links-1")
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED
    drives = [s for s in exporter.get_finished_spans() if s.name.startswith("tether.run ")]
    linked = [[link.context.span_id for link in d.links] for d in drives]
    assert linked == [[submit.get_span_context().span_id], [resume.get_span_context().span_id]]
    assert trace.get_current_span() is trace.INVALID_SPAN
