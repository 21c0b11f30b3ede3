"""Tracing as a new user meets it: without the extra installed, and under the
opentelemetry-api releases the extra allows, a parked drive is no error."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import tether
from tether import App, FakeClock, RunStatus, ai
from tether.otel import Tracing

_WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
import tether.otel as otel
for call in (otel.Tracing, lambda: otel.run_trace_context("r1")):
    try:
        call()
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_without_the_extra_both_entry_points_say_how_to_get_it() -> None:
    """`run_trace_context` (public, in ``__all__``) failed with "'NoneType' object has
    no attribute 'SpanContext'", saying nothing of the missing extra."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for line in lines:
        assert line.startswith("InvalidArgumentError "), line
        assert "pip install 'tether[otel]'" in line


@contextlib.contextmanager
def _use_span_of_api_1_31(
    span: Any,
    end_on_exit: bool = False,
    record_exception: bool = True,
    set_status_on_exception: bool = True,
) -> Iterator[Any]:
    """`opentelemetry.trace.use_span` as opentelemetry-api 1.31.0 had it (its PR 4406,
    reverted in 1.31.1): every BaseException, not only an Exception, is an error."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        if record_exception:
            span.record_exception(exc)
        if set_status_on_exception:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        if end_on_exit:
            span.end()


async def test_a_parked_drive_is_no_error_under_any_api_the_extra_allows(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extra takes opentelemetry-api>=1.20; under 1.31.0 the SDK's own handling
    marked the drive that parked on a wait (a `Suspend`, a BaseException) ERROR, with
    an "exception" event, though it failed nothing."""
    monkeypatch.setattr(trace, "use_span", _use_span_of_api_1_31)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = App(database_url, clock=FakeClock(), interceptors=[Tracing(provider)])

    @app.workflow(name="gated")
    async def gated(wf: tether.Workflow) -> None:
        await wf.step("a", lambda: 1)
        await wf.wait_for_signal("go")
        raise ValueError("after the wait")

    try:
        parked = await app.arun(gated, workflow_id="p1")
        await app.asignal("p1", "go")
        failed = await app.aresult("p1", timeout=10)
    finally:
        await app.aclose()
        provider.shutdown()
    assert parked.status is RunStatus.WAITING and failed.status is RunStatus.FAILED
    drives = [s for s in exporter.get_finished_spans() if s.name == "tether.run gated"]
    assert [s.attributes["tether.outcome"] for s in drives] == ["parked", "ValueError"]
    assert drives[0].status.status_code is StatusCode.UNSET
    assert [e.name for e in drives[0].events] == []
    assert drives[1].status.status_code is StatusCode.ERROR
    assert drives[1].status.description == "ValueError: after the wait"
    assert [e.name for e in drives[1].events] == ["exception"]


async def test_a_failed_ai_call_says_so_as_the_genai_conventions_ask(database_url: str) -> None:
    """A call the provider refused had an ERROR status but no ``error.type``, which
    the GenAI conventions require of a call that failed."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    refused = ai.ProviderError("rate limited", status=429, retryable=True)
    model = ai.FakeModel([refused, "ok"], usage=ai.Usage(input_tokens=10, output_tokens=5))
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model),
              interceptors=[Tracing(provider)])  # fmt: skip

    @app.workflow(name="asks")
    async def asks(wf: tether.Workflow) -> str:
        return (await wf.ai.generate_text("demo:m", prompt="hi")).text

    try:
        done = await app.arun(asks)
    finally:
        await app.aclose()
        provider.shutdown()
    assert done.value == "ok"
    calls = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "chat m"),
        key=lambda s: s.start_time or 0,
    )
    assert [s.status.status_code for s in calls] == [StatusCode.ERROR, StatusCode.UNSET]
    assert calls[0].attributes["error.type"] == "_OTHER"
    assert "error.type" not in calls[1].attributes
