"""OpenTelemetry tracing: ``App(interceptors=[tether.otel.Tracing()])``.

Needs the ``otel`` extra (``pip install 'tether[otel]'``). Spans:

- ``tether.run <workflow>``: one per drive of a run (from its claim until it
  ends, parks or is handed back), its ``tether.outcome`` saying which:
  ``completed``, ``parked``, ``handed_back``, ``cancelled`` or the type of the
  error it failed with (a parked drive is no error);
- ``tether.stage <id>``: a pipeline stage, inside the drive: one per drive
  the stage runs in (a stage parked on a wait, a batch stage between checks,
  or one whose process died gets another when it resumes, marked
  ``tether.stage.resumed``); its status is ERROR when the stage fails; a
  pipeline called from a run's code says where in ``tether.stage.at`` (two
  ``for_each`` items calling it at once make two spans of each stage);
- ``tether.step <key>``: each executed attempt of a step (a replayed step
  runs nothing and makes no span), with its exception when it fails;
- ``<operation> <model>`` for each AI call made in a step, with the GenAI
  semantic-convention attributes (system, model, input and output tokens)
  and ``tether.cost_usd``.

Every drive of a run belongs to the run's own trace: its trace id and root
span id are derived from the run id, so a run resumed days later in another
process (a worker, after a crash) continues the same trace without anything
to look up. The caller's span, if any, is linked from the first drive.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from ._attach import attached
from ._control import HandBack, Suspend
from ._interceptors import Proceed, RunCall, StepCall
from .errors import InvalidArgumentError
from .store import NewAICall

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the extra is missing
    trace = None  # type: ignore[assignment]

__all__ = ["Tracing", "run_trace_context"]

_OPS = {"text": "chat", "object": "chat", "embed": "embeddings", "batch": "chat"}


def run_trace_context(workflow_id: str) -> Any:
    """The OTel context every drive of run `workflow_id` is a child of: a remote parent
    whose trace and span ids are derived from the run id."""
    digest = hashlib.sha256(f"tether-run:{workflow_id}".encode()).digest()
    span_context = trace.SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _outcome(exc: BaseException) -> str:
    """How a drive that did not return ended, as the run span says it."""
    if isinstance(exc, HandBack):  # (a Suspend: test it first)
        return "handed_back"
    if isinstance(exc, Suspend):
        return "parked"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__


class Tracing:
    """Spans for runs, stages, steps and AI calls (an interceptor; see the module)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        if trace is None:
            raise InvalidArgumentError(
                "tether.otel needs OpenTelemetry: pip install 'tether[otel]'"
            )
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            # an exporter or a tracer passed here failed with a bare AttributeError
            raise InvalidArgumentError(
                f"Tracing(tracer_provider) takes an OpenTelemetry TracerProvider, got "
                f"{type(tracer_provider).__name__}; e.g. provider = TracerProvider(); "
                "provider.add_span_processor(SimpleSpanProcessor(exporter)); "
                "Tracing(provider), or Tracing() for the global provider"
            )
        self._tracer = trace.get_tracer("tether", tracer_provider=tracer_provider)
        # (run, stage id, where the pipeline was called) -> its open span: one stage id
        # called twice at once in a run (`for_each` items) is two stages
        self._stages: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    async def intercept_run(self, call: RunCall, proceed: Proceed) -> Any:
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else []
        attributes: dict[str, Any] = {
            "tether.workflow_id": call.workflow_id,
            "tether.workflow": call.workflow_name,
            "tether.workflow_version": call.workflow_version or "",
            "tether.attempt": call.attempt,
            "tether.generation": call.generation,
            "tether.queue": call.queue or "",
        }
        with self._tracer.start_as_current_span(
            f"tether.run {call.workflow_name}",
            context=run_trace_context(call.workflow_id),
            kind=SpanKind.INTERNAL,
            links=links,
            attributes=attributes,
        ) as span:
            try:
                value = await proceed()
            except BaseException as exc:
                span.set_attribute("tether.outcome", _outcome(exc))
                raise
            finally:
                # a drive fenced out (StaleOwnerError) ends with no `workflow.` event: its
                # stages' spans were left open, never exported, their steps orphaned
                self._end_stages_of(call.workflow_id)
            span.set_attribute("tether.outcome", "completed")
            return value

    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        attributes: dict[str, Any] = {
            "tether.workflow_id": call.workflow_id,
            "tether.step": call.key,
            "tether.step.attempt": call.attempt,
            "tether.step.max_attempts": call.max_attempts,
        }
        with self._tracer.start_as_current_span(f"tether.step {call.key}",
                                                attributes=attributes):  # fmt: skip
            try:
                return await proceed()
            finally:
                self._ai_spans(attached())

    def _ai_spans(self, rows: list[Any]) -> None:
        """A span per AI call the step made, ending now and lasting its latency."""
        end = time.time_ns()
        for row in rows:
            if not isinstance(row, NewAICall):
                continue
            op = _OPS.get(row.call_type, row.call_type)
            span = self._tracer.start_span(
                f"{op} {row.model}",
                kind=SpanKind.CLIENT,
                start_time=end - row.latency_ms * 1_000_000,
                attributes=_genai(row, op),
            )
            if row.error:
                span.set_status(Status(StatusCode.ERROR, row.error[:200]))
            span.end(end_time=end)

    def on_event(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        """Open a stage's span when it starts or resumes in this drive (current in the
        stage's own task, so its steps are its children) and end it when the stage ends,
        or when the drive ends first (a stage parked on a wait or a batch: a span per
        drive of it, the later ones opened on `stage.resumed`)."""
        if type_.startswith("workflow."):
            self._end_stages_of(workflow_id)
            return
        if not type_.startswith("stage.") or not isinstance(detail, dict):
            return
        key = (workflow_id, str(detail.get("stage")), str(detail.get("at") or ""))
        if type_ in ("stage.started", "stage.resumed"):
            # a span still open here is from a drive that ended without a word (fenced out)
            self._end_stage(key, "tether.stage.parked", same_task=True)
            self._open_stage(key, detail, resumed=type_ == "stage.resumed")
        elif type_ in ("stage.completed", "stage.failed", "stage.cancelled"):
            error = None if type_ == "stage.completed" else str(detail.get("error") or type_)
            self._end_stage(key, error, same_task=True)

    def _end_stages_of(self, workflow_id: str) -> None:
        """End the spans of the stages still open in a drive of `workflow_id` that ended."""
        for key in [k for k in self._stages if k[0] == workflow_id]:
            self._end_stage(key, "tether.stage.parked", same_task=False)

    def _open_stage(
        self, key: tuple[str, str, str], detail: dict[str, Any], *, resumed: bool
    ) -> None:
        attributes: dict[str, Any] = {
            "tether.workflow_id": key[0],
            "tether.stage": key[1],
            "tether.stage.group": int(detail.get("group") or 0),
            "tether.attempt": int(detail.get("attempt") or 1),
        }
        if key[2]:  # a pipeline called from the run's code: where (``[0]`` of a for_each)
            attributes["tether.stage.at"] = key[2]
        if resumed:
            attributes["tether.stage.resumed"] = True
        span = self._tracer.start_span(f"tether.stage {key[1]}", attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._stages[key] = (span, token, asyncio.current_task())

    def _end_stage(self, key: tuple[str, str, str], error: str | None, *, same_task: bool) -> None:
        found = self._stages.pop(key, None)
        if found is None:
            return
        span, token, task = found
        if error == "tether.stage.parked":
            span.set_attribute("tether.stage.parked", True)
        elif error is not None:
            span.set_status(Status(StatusCode.ERROR, error[:200]))
        span.end()
        if same_task and task is asyncio.current_task():
            otel_context.detach(token)


def _genai(row: NewAICall, op: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": op,
        "gen_ai.system": row.provider,
        "gen_ai.request.model": row.model,
        "gen_ai.usage.input_tokens": row.input_tokens,
        "gen_ai.usage.output_tokens": row.output_tokens,
    }
    if row.request_id:
        attributes["gen_ai.response.id"] = row.request_id
    if row.cost_micro_usd is not None:
        attributes["tether.cost_usd"] = row.cost_micro_usd / 1_000_000
    if row.batch_id:
        attributes["tether.batch_id"] = row.batch_id
    return attributes
