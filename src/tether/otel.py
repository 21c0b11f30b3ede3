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
- ``<operation> <model>`` for each AI call made in a step (``chat``,
  ``embeddings``, or ``invoke_agent`` for an agent's turn), with the GenAI
  semantic-convention attributes: ``gen_ai.system`` (and
  ``gen_ai.provider.name``), model, input and output tokens, and, when not 0,
  ``gen_ai.usage.cache_read.input_tokens``,
  ``gen_ai.usage.cache_creation.input_tokens`` and
  ``gen_ai.usage.reasoning.output_tokens``; plus ``tether.ai.provider`` (the
  name the provider has in ``ai.Providers(...)``) and ``tether.cost_usd``; a call
  that failed has status ERROR and ``error.type`` ``_OTHER`` (the log keeps no type).
  The system is the provider's own (``openai``, ``anthropic``: its
  ``price_id``) when `Tracing` is given the App's providers,
  ``Tracing(ai=providers)``; otherwise, or for a provider that does not say,
  the name it has in ``ai.Providers(...)``. Each call's span starts and ends
  when the call log says it did (its ``at`` and ``latency_ms``), so two calls
  of one step follow each other; under a clock other than the wall clock (a
  `FakeClock`) the last call is put at the step's end and the others as far
  before it as the clock says. An agent's turn, which the log gives no times,
  spans its step attempt.

Every drive of a run belongs to the run's own trace: its trace id and root
span id are derived from the run id, so a run resumed days later in another
process (a worker, after a crash) continues the same trace without anything
to look up. Each drive links the span current where it began, if any: the
caller's of `arun` or `aresume` for the drive it starts (a drive a signal
woke in the background, or a worker's, begins in none and links none).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._attach import attached
from ._control import HandBack, Suspend
from ._interceptors import Proceed, RunCall, StepCall
from .errors import InvalidArgumentError
from .store import NewAICall

if TYPE_CHECKING:
    from .ai import Providers

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the extra is missing
    trace = None  # type: ignore[assignment]

__all__ = ["Tracing", "run_trace_context"]

_OPS = {
    "text": "chat",
    "object": "chat",
    "embed": "embeddings",
    "batch": "chat",
    "agent": "invoke_agent",
}
# genai-prices' provider ids (a provider's `price_id`) that the GenAI conventions spell
# otherwise; the rest (openai, anthropic, groq, deepseek, cohere, ...) are the same
_SYSTEMS = {
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "google": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
}
# how far a call's recorded time may lie outside its step's wall-clock span and still
# be taken as wall-clock time (the log's times are whole microseconds, its latency ms)
_SLACK_NS = 2_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def run_trace_context(workflow_id: str) -> Any:
    """The OTel context every drive of run `workflow_id` is a child of: a remote parent
    whose trace and span ids are derived from the run id."""
    _need_otel()  # without the extra: an AttributeError on None, saying nothing of it
    digest = hashlib.sha256(f"tether-run:{workflow_id}".encode()).digest()
    span_context = trace.SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _need_otel() -> None:
    if trace is None:
        raise InvalidArgumentError(
            "tether.otel needs OpenTelemetry, which is not installed: pip install 'tether[otel]'"
        )


def _failed(span: Any, exc: BaseException) -> None:
    """Mark `span` failed by `exc` if it is an error: a drive that parks or is handed
    back (a `Suspend`) or is cancelled is none. Done here, not by the SDK's
    ``start_as_current_span``, which under opentelemetry-api 1.31 (allowed by the
    extra) marked every BaseException, a parked drive too, as an ERROR."""
    if isinstance(exc, Exception):
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


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

    def __init__(self, tracer_provider: Any = None, *, ai: Providers | None = None) -> None:
        """`ai`: the App's providers (what ``App(ai=...)`` has), so that an AI call's span
        names the provider's system (``openai``) rather than the name it is given."""
        _need_otel()
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
        _check_providers(ai)
        self._ai = ai
        self._tracer = trace.get_tracer("tether", tracer_provider=tracer_provider)
        # (run, stage id, where the pipeline was called) -> its open span: one stage id
        # called twice at once in a run (`for_each` items) is two stages
        self._stages: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    async def intercept_run(self, call: RunCall, proceed: Proceed) -> Any:
        # every drive links the span it began in, not the first drive only: a later drive
        # has a cause of its own (the request whose handler called `aresume`), which a
        # trace linking only the first would hide; a drive begun in no span links none
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
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                value = await proceed()
            except BaseException as exc:
                span.set_attribute("tether.outcome", _outcome(exc))
                _failed(span, exc)
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
        with self._tracer.start_as_current_span(
            f"tether.step {call.key}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.time_ns()
            try:
                return await proceed()
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                self._ai_spans(attached(), started)

    def _ai_spans(self, rows: list[Any], started: int) -> None:
        """A span per AI call the step (begun at `started`) made, from when the call log
        says it was sent to when it was answered; one with no time (an agent's turn)
        spans the step attempt."""
        end = time.time_ns()
        calls = [row for row in rows if isinstance(row, NewAICall)]
        shift = _shift(calls, started, end)
        for row in calls:
            op = _OPS.get(row.call_type, row.call_type)
            if row.at is None:
                start_ns, end_ns = started, end
            else:
                end_ns = _ns(row.at) + shift
                start_ns = end_ns - row.latency_ms * 1_000_000
            span = self._tracer.start_span(
                f"{op} {row.model}",
                kind=SpanKind.CLIENT,
                start_time=start_ns,
                attributes=_genai(row, op, self._system(row.provider)),
            )
            if row.error:
                span.set_status(Status(StatusCode.ERROR, row.error[:200]))
            span.end(end_time=end_ns)

    def _system(self, name: str) -> str:
        """The GenAI system of the provider configured as `name`: its own when it says
        (`price_id`), else the name."""
        provider = None if self._ai is None else self._ai.get(name)
        # not given the providers, or an agent backend's name: the name it has
        own = getattr(provider, "price_id", None)
        return _SYSTEMS.get(own, own) if isinstance(own, str) and own else name

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


def _check_providers(ai: Any) -> None:
    """Refuse what is no `ai.Providers` (a provider, a dict) where the App's go."""
    from .ai import Providers

    if ai is not None and not isinstance(ai, Providers):
        raise InvalidArgumentError(
            f"Tracing(ai=) takes the App's tether.ai.Providers, got {type(ai).__name__}; "
            "e.g. providers = ai.Providers(openai=ai.OpenAI()); "
            "App(ai=providers, interceptors=[Tracing(ai=providers)])"
        )


def _ns(at: datetime) -> int:
    """`at` in nanoseconds since the epoch, exact (a float timestamp is not)."""
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


def _shift(calls: list[NewAICall], started: int, end: int) -> int:
    """What to add to the calls' recorded times to place them in the step begun at
    `started` and ended at `end`: nothing when they fall inside it (the App's clock is
    the wall clock); otherwise (a FakeClock) enough to end the last call at `end`."""
    ends = [_ns(row.at) for row in calls if row.at is not None]
    if all(started - _SLACK_NS <= e <= end + _SLACK_NS for e in ends):
        return 0
    return end - max(ends)


def _genai(row: NewAICall, op: str, system: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": op,
        "gen_ai.system": system,
        "gen_ai.provider.name": system,
        "tether.ai.provider": row.provider,
        "gen_ai.request.model": row.model,
        "gen_ai.usage.input_tokens": row.input_tokens,
        "gen_ai.usage.output_tokens": row.output_tokens,
    }
    # parts of the counts above, as the log records them; 0 is left out, as what an
    # agent's turn does not report (cache writes, reasoning) is 0 there
    for name, count in (
        ("gen_ai.usage.cache_read.input_tokens", row.cached_input_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", row.cache_write_tokens),
        ("gen_ai.usage.reasoning.output_tokens", row.reasoning_tokens),
    ):
        if count:
            attributes[name] = count
    if row.request_id:
        attributes["gen_ai.response.id"] = row.request_id
    if row.cost_micro_usd is not None:
        attributes["tether.cost_usd"] = row.cost_micro_usd / 1_000_000
    if row.batch_id:
        attributes["tether.batch_id"] = row.batch_id
    if row.error:
        # the GenAI conventions require it of a call that failed; the log keeps the
        # error's message, not its type, so it is their fallback value
        attributes["error.type"] = "_OTHER"
    return attributes
