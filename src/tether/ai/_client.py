"""`wf.ai`: model calls as durable steps, priced, logged and budgeted.

Each call is one step. Inside it: the budget is checked against the
recorded spend, the provider is called, and the call's row (tokens, cost,
request id, latency) is attached to the step, so the row is written in the
step's own completion transaction: once, never fire-and-forget. A replay
returns the recorded result and calls no provider.

A budget stop is itself the step's recorded result, so a replay takes the
same path: it fails the run again, or waits for the same ``budget.raise``
signal, and the call then runs as the step's next occurrence (``name#2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from .._attach import attach
from ..clock import Clock, SystemClock
from ..errors import InvalidArgumentError, RunCancelledError, StoreError
from ..retry import RetryPolicy
from ..store import Fence, NewAICall, NewEvent
from ._admission import Admissions, Ticket
from ._budget import Budget, Spend, latest_raise, raises_told
from ._cooldown import RATE_LIMITED, Cooldowns, Turn, limited_until
from ._errors import (
    BudgetExceededError,
    ObjectValidationError,
    ProviderError,
    validation_message,
)
from ._port import RUN_CREATED, UNREADABLE_LINE, Provider
from ._prices import Priced
from ._providers import Providers
from ._results import BatchOutcome, BatchResult, EmbedResult, ObjectResult, TextResult
from ._types import BatchItem, BatchStatus, Message, ModelReply, TextRequest, Usage

__all__ = [
    "AI_RETRY",
    "COOLDOWNS",
    "COOLDOWN_SCOPE",
    "WorkflowAI",
    "batches_out",
    "cancel_open_batches",
    "stop_batches",
]

log = logging.getLogger("tether.ai")

R = TypeVar("R")
T = TypeVar("T")

#: the calls of this process, admitted per budget scope (see `_admission`)
ADMISSIONS = Admissions()
#: the providers' cooldowns of this process, shared by its runs (see `_cooldown`)
COOLDOWNS = Cooldowns()
#: where a cooldown is recorded for other processes: a lock of this scope, keyed by the
#: provider's name, expiring when the cooldown ends
COOLDOWN_SCOPE = "ai.cooldown"
_COOLDOWN_HOLDER = "tether.ai"  # every process the same: each may extend it
# `Usage` counts the call log has no column for: they are priced, not logged
_UNLOGGED_COUNTS = frozenset(
    {"cache_write_1h_tokens", "web_search_requests", "input_audio_tokens", "output_audio_tokens"}
)
# the admissions of the call running in this context, one per budget that covers it:
# its recorded costs count at once
_TICKETS: ContextVar[tuple[_Held, ...]] = ContextVar("tether_ai_tickets", default=())
# the batches `WorkflowAI.batch` calls have out in this context (see `batches_out`)
_OUT: ContextVar[dict[str, tuple[WorkflowAI, str]] | None] = ContextVar(
    "tether_ai_batches_out", default=None
)


@contextlib.contextmanager
def batches_out() -> Iterator[dict[str, tuple[WorkflowAI, str]]]:
    """While the block runs (and in the tasks it starts), each batch a `WorkflowAI.batch`
    call has out is listed here (its id -> the client and the provider's name) until
    the call returns or fails. For code that stops such a call for good (a stage whose
    sibling failed): `stop_batches` cancels what it had out. A call cancelled to be
    resumed (a clean exit hands the run back) is no such stop: its batch runs on."""
    found: dict[str, tuple[WorkflowAI, str]] = {}
    token = _OUT.set(found)
    try:
        yield found
    finally:
        _OUT.reset(token)


async def stop_batches(out: dict[str, tuple[WorkflowAI, str]]) -> int:
    """Cancel at their providers the batches `out` lists (`batches_out`); how many. A
    cancel that fails is logged and recorded as the run's ``ai.batch.cancel_failed``."""
    cancelled = 0
    for batch_id, (client, pname) in list(out.items()):
        cancelled += await client.stop_batch(batch_id, pname)
        out.pop(batch_id, None)
    return cancelled


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


# what a pause of a budget with a period waits for besides a raise: the next period
_NEXT_PERIOD = object()

#: rate limits, server errors and timeouts are retried with back-off (and at
#: least the provider's retry-after), counted durably; other errors fail at once
AI_RETRY = RetryPolicy(attempts=6, backoff=1.0, max_delay=60.0, should_retry=_retryable)


class Flow(Protocol):
    """What `wf.ai` needs from the workflow it runs in."""

    @property
    def workflow_id(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    async def step(
        self,
        name: str,
        fn: Any,
        *,
        retry: int | RetryPolicy | None = ...,
        result_type: Any = ...,
    ) -> Any: ...

    async def wait_for_signal(
        self, name: str, *, timeout: float | None = ..., default: Any = ..., key: str | None = ...
    ) -> Any: ...

    async def record_event(
        self, type: str, message: str | None = ..., detail: Any = ...
    ) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


class SpendLog(Protocol):
    """The recorded spend (the store answers it from the call log), the runs (whose
    budgets cover the runs they started), and the run's events (the batches it
    submitted)."""

    async def ai_spend(
        self,
        workflow_id: str,
        budget_key: str | None,
        *,
        tree: bool = ...,
        since: datetime | None = ...,
    ) -> Spend: ...

    async def get_run(self, workflow_id: str) -> Any: ...

    async def budget_warned(
        self, workflow_id: str, limits: Mapping[str, Any] | None = None
    ) -> bool: ...

    async def list_events(self, workflow_id: str) -> Sequence[Any]: ...

    async def get_lock(self, scope: str, key: str) -> Any: ...

    async def acquire_lock(
        self, scope: str, key: str, holder: str, *, ttl: float, now: datetime | None, at: datetime
    ) -> Any: ...


class _Stop(BaseModel):
    """A call the budget stopped, recorded as its step's result."""

    spent_usd: float
    tokens: int
    message: str
    # the budget.raise signals the run had taken when the call stopped: calls stopped
    # together (for_each branches) wait for the same next raise, and one raise wakes all
    raises: int = 0
    step: str | None = None  # the stopped step's key (a stage's ``stage-id/...``), to rerun from
    # the run whose budget stopped it: this run, or one that started it (at any depth);
    # None: recorded by an older tether, when only the run's own budget was checked
    of: str | None = None


class _Unfetched(BaseModel):
    """A results fetch that failed transiently, recorded as its step's result so the
    run waits on the durable timer and fetches again; `step` is that step's key (to
    rerun from)."""

    unfetched: str
    step: str


class _Read(BatchStatus):
    """A status poll's answer with when it was read (the App's clock), recorded with
    its step: `max_wait` counts from the first poll's time, the process down in
    between included, and a replay reads the same times (None: an older tether's)."""

    read_at: datetime | None = None


class _Spent(Exception):
    """The budget ran out between two provider calls of one step (`generate_object`
    asking again): the step records it as stopped, with the calls it made."""

    def __init__(self, limit: _Limit, spend: Spend) -> None:
        super().__init__("budget exceeded")
        self.limit = limit
        self.spend = spend


@dataclass(frozen=True)
class _Limit:
    """A budget a call of the run is checked against: the run's own (`of` is the run)
    or that of a run that started it, at any depth. A budget covers the runs its run
    starts, so it counts their calls with its run's (`SpendLog.ai_spend`, `tree`)."""

    budget: Budget
    of: str
    via: str | None = None  # the run `of` started on the way down to this one


@dataclass(frozen=True)
class _Over:
    """A budget a call is over, and the spend it was judged on (`_gate`)."""

    limit: _Limit
    spend: Spend


@dataclass(frozen=True)
class _Held:
    """A call's admission under one of the budgets that cover it."""

    limit: _Limit
    ticket: Ticket


class _StepContext(Protocol):
    @property
    def name(self) -> str: ...  # the step's key in the run's record

    @property
    def attempt(self) -> int: ...  # 1 for the first; more after a failure or a crash


# the step the call runs in (a batch's submit tags the batch with it)
_STEP: ContextVar[_StepContext | None] = ContextVar("tether_ai_step", default=None)


@dataclass
class _Tries:
    """A `generate_object` step's answers so far: the conversation to send next (each
    refused answer and the error it had appended), and what the answers cost."""

    request: TextRequest
    answered: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: int = 0
    known: bool = True
    error: str = ""

    def ask_again(self, text: str) -> None:
        """Send the refused answer `text` back with the error, asking again."""
        # an empty turn is left out: Anthropic refuses a message without content
        said = [Message(role="assistant", content=text)] if text else []
        again = Message(
            role="user",
            content=f"That answer does not match the schema: {self.error}. "
            "Answer again with only JSON that matches it.",
        )
        messages = [*self.request.messages, *said, again]
        self.request = self.request.model_copy(update={"messages": messages})


@dataclass
class _Job:
    """A batch call: its step names' base, the provider and the requests; `accepted`, the
    id of the batch the provider accepted, from its answer on (before the step records it)."""

    base: str
    pname: str
    provider: Provider
    model_id: str
    model: str
    items: list[BatchItem]
    accepted: str | None = None


class _Outcome(BaseModel, Generic[R]):
    result: R | None = None
    stopped: _Stop | None = None


class WorkflowAI:
    """The AI calls of one run (``wf.ai``). Models are named ``provider:model``."""

    def __init__(
        self,
        flow: Flow,
        providers: Providers,
        log: SpendLog,
        budget: Budget | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        admissions: Admissions = ADMISSIONS,
        cooldowns: Cooldowns = COOLDOWNS,
        workflow_budget: Callable[[str], Budget | None] = lambda name: None,
    ) -> None:
        self._flow = flow
        self._providers = providers
        self._log = log
        self.budget = budget  # the run's own; those of the runs that started it also hold
        # the budgets of the runs that started this one (parent first), read once a drive;
        # a run recorded without a budget of its own has its workflow's (`workflow_budget`)
        self._above: list[_Limit] | None = None
        self._workflow_budget = workflow_budget
        # the limits (`_limits_key`) a budget.warning is known from the log to be recorded
        # for, or attached for by a call of this run still in flight: parallel branches
        # judged past the line before its step is written must not write one each; a
        # raised budget warns again at its own line
        self._warned_known: set[str] = set()
        self._warned_attached: set[str] = set()
        self._raises = 0  # budget.raise signals taken so far (see `_Stop.raises`)
        # raises taken this drive, (whose budget, which raise) -> the limits they gave, to
        # record as ``budget.raised`` (`_tell_raises`); those the run has recorded
        self._untold: dict[tuple[str, int], Budget] = {}
        self._told: set[tuple[str, int]] | None = None
        self._now = now  # the App's clock: a call's time, and the prices in force then
        self._admissions = admissions
        self._cooldowns = cooldowns
        self._unpriced_seen: set[tuple[str, str]] = set()  # models warned of (`_unpriced`)
        # the batches this drive's `batch` calls have out (id -> provider), from submit to
        # return or failure: one still here when the run ends was given up (`given_up`)
        self._following: dict[str, str] = {}

    # -- the calls ----------------------------------------------------------------------

    async def generate_text(
        self,
        model: str,
        prompt: str | None = None,
        *,
        messages: Sequence[Message | dict[str, Any]] | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        options: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> TextResult:
        """Generate text: one durable step (named `name`, else ``ai.text:MODEL``)."""
        pname, provider, model_id = self._providers.resolve(model)
        request = _request(
            prompt, messages, system, temperature, max_tokens, stop, tools, tool_choice, options
        )

        async def call() -> TextResult:
            reply, cost = await self._call("text", pname, provider, model_id, request)
            return TextResult(
                text=reply.text,
                tool_calls=reply.tool_calls,
                finish_reason=reply.finish_reason,
                usage=reply.usage,
                cost_usd=_usd(cost),
                model=model,
                request_id=reply.request_id,
            )

        return await self._durable(name or f"ai.text:{model}", call, TextResult)

    async def generate_object(
        self,
        model: str,
        schema: type[T],
        prompt: str | None = None,
        *,
        messages: Sequence[Message | dict[str, Any]] | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
        attempts: int = 3,
        name: str | None = None,
    ) -> ObjectResult[T]:
        """Generate an object of `schema` (a pydantic model or any type pydantic
        validates). An answer that does not validate is sent back with the error,
        up to `attempts` calls in all; every call is in the call log."""
        pname, provider, model_id = self._providers.resolve(model)
        adapter, json_schema = _schema_adapter(schema)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise InvalidArgumentError(f"attempts must be an integer >= 1, got {attempts!r}")
        request = _request(
            prompt, messages, system, temperature, max_tokens, None, None, None, options
        ).model_copy(update={"json_schema": json_schema, "schema_name": _schema_name(schema)})

        tries: dict[str, _Tries] = {}  # the step occurrence's answered attempts so far

        async def call() -> ObjectResult[T]:
            ctx = _STEP.get()
            so_far = tries.setdefault(ctx.name if ctx else "", _Tries(request))
            return await self._object_attempts(
                pname, provider, model_id, model, so_far, adapter, attempts
            )

        result_type: Any = ObjectResult[schema]  # type: ignore[valid-type]
        return await self._durable(name or f"ai.object:{model}", call, result_type)

    async def embed(
        self,
        model: str,
        inputs: str | Sequence[str],
        *,
        options: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> EmbedResult:
        """Embed one text or many: one durable step, one vector per text."""
        pname, provider, model_id = self._providers.resolve(model)
        try:
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
        except TypeError:  # not iterable
            texts = []
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidArgumentError(
                f"embed takes a str or a non-empty list of str, got {inputs!r}"
            )
        if options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(
                f"options must be a dict the provider gets as it is, got {options!r}; "
                "e.g. options={'dimensions': 256}"
            )
        for n, text in enumerate(texts):  # named before anything is sent or logged
            _encodable(
                text, "the text to embed" if isinstance(inputs, str) else f"text {n} to embed"
            )
        _encodable(options or {}, "the embed call's options")

        async def call() -> EmbedResult:
            sent = _Sent(self._now)
            prompt = json.dumps({"input": texts})
            try:
                reply = await self._reach(
                    pname,
                    sent.timed(
                        provider, lambda: provider.embed(model_id, texts, dict(options or {}))
                    ),
                )
            except ProviderError as exc:
                self._record_failure("embed", pname, model_id, prompt, exc, sent.at)
                raise
            except asyncio.CancelledError as exc:
                self._record_cut("embed", pname, model_id, prompt, sent, exc)
                raise
            cost = self._record(
                "embed",
                pname,
                model_id,
                prompt,
                reply.usage,
                sent.at,
                response=None,
                request_id=reply.request_id,
                usage_known=reply.usage_reported,
            )
            return EmbedResult(
                vectors=reply.vectors, usage=reply.usage, cost_usd=_usd(cost), model=model
            )

        return await self._durable(name or f"ai.embed:{model}", call, EmbedResult)

    async def batch(
        self,
        model: str,
        requests: Sequence[str | dict[str, Any]],
        *,
        name: str | None = None,
        poll_every: float = 60.0,
        max_wait: float = 24 * 3600.0,
    ) -> BatchResult:
        """Run `requests` as one provider batch (half price at OpenAI and Anthropic).

        The batch is submitted as a step (its id recorded), then the run parks
        on a durable timer and polls every `poll_every` seconds, freeing its
        worker in between; the last wait is cut so the last look is at
        `max_wait` (counted in time slept). A batch not done then is cancelled
        and `TimeoutError` raised (one found done after all is collected); one
        that ended failed, cancelled or expired raises `ProviderError`, whose
        `batch` holds its outcomes: the completed requests' results, the others
        not ok with their error. Either way the results of the requests it did
        complete (billed) are recorded first. Results are recorded once, each
        keyed by its `custom_id` (a request is a prompt, whose id is its index,
        or a dict with ``custom_id`` and ``prompt`` or ``messages``).

        A status read that fails transiently (429, 5xx, a timeout) is tried
        again at the next poll, up to `max_wait`; one refused for good (a
        revoked key) cancels the batch and fails the run. A cancel the provider
        refuses is logged and recorded as the run's ``ai.batch.cancel_failed``
        (not one refused as the batch had ended: it is collected). Results that
        cannot be fetched for a while (the endpoint down) are fetched again on
        the durable timer for up to an hour after the batch ended; then the run
        fails, naming the step that `app.rerun_from` fetches them again from.

        A submit retried after a crash takes the batch the crashed attempt left
        at the provider, found by the run and step it is tagged with, instead
        of paying for a second (OpenAI; Anthropic keeps no tag, see `Anthropic`).
        """
        pname, provider, model_id = self._providers.resolve(model)
        items = _batch_items(requests)
        check = getattr(provider, "batch_check", None)  # ids the provider refuses
        if check is not None:
            check(items)
        job = _Job(name or f"ai.batch:{model}", pname, provider, model_id, model, items)
        every, limit = _positive("poll_every", poll_every), _positive("max_wait", max_wait)
        await self._covering()  # its results are logged under the key that covers it
        out = _OUT.get()
        try:
            batch_id: str = await self._durable(job.base, lambda: self._submit(job), str)
        except asyncio.CancelledError as exc:
            if job.accepted is not None:  # accepted, but no record names it
                await self._unrecorded(job, job.accepted, out, exc)
            raise
        if out is not None:
            out[batch_id] = (self, pname)
        self._following[batch_id] = pname
        try:
            result = await self._follow(job, batch_id, every, limit, max_wait)
        except Exception:
            self._ended_call(out, batch_id)
            raise
        # parked on its poll timer, or cancelled: still out, and whoever stops the call
        # knows whether for good (`stop_batches`, `given_up`)
        self._ended_call(out, batch_id)
        return result

    async def _unrecorded(
        self,
        job: _Job,
        batch_id: str,
        out: dict[str, tuple[WorkflowAI, str]] | None,
        exc: asyncio.CancelledError,
    ) -> None:
        """The batch the provider accepted as the submit step was cut short, before its
        record: `open_batches` cannot name it, and it ran on, billed. A run cancelled (the
        record refused; `app.cancel` found no batch) cancels it now, as `cancel_open_batches`
        would have. A call cancelled lists it as out, as one parked on its poll timer, for
        whoever stops it for good (`stop_batches`, `given_up`); a run handed back leaves it
        to the retried submit, which finds it by its tag."""
        if isinstance(exc, RunCancelledError):
            wid, clock = self._flow.workflow_id, self._flow.clock
            try:
                await _cancel_soon(job.provider, batch_id, clock)
            except Exception as err:  # the run is cancelled either way
                await _record_cancel_failed(self._log, clock.now(), wid, batch_id, job.pname, err)
            return
        if out is not None:
            out[batch_id] = (self, job.pname)
        self._following[batch_id] = job.pname

    def _ended_call(self, out: dict[str, tuple[WorkflowAI, str]] | None, batch_id: str) -> None:
        if out is not None:
            out.pop(batch_id, None)
        self._following.pop(batch_id, None)

    async def given_up(self) -> int:
        """Cancel the batches whose `batch` calls this drive left parked or cancelled, now
        that the run ends (completed or failed): nothing will poll them again, and they ran
        on, billed. An item of ``for_each(stop_on_error=True)`` parked on its batch when a
        sibling failed is one; a call the workflow cancelled itself is another. How many."""
        cancelled = 0
        for batch_id, pname in list(self._following.items()):
            cancelled += await self.stop_batch(batch_id, pname)
        return cancelled

    async def _follow(
        self, job: _Job, batch_id: str, every: float, limit: float, max_wait: float
    ) -> BatchResult:
        """Poll the submitted batch until it ends, then collect it (see `batch`)."""
        try:
            status = await self._until_ended(job, batch_id, every, limit)
        except StoreError:
            raise  # tether's database, not the batch: the run resumes and polls on
        except Exception:  # a read refused for good: the batch must not run on, unwatched
            await self._cancel(job, batch_id)
            raise
        if status.state == "pending":
            return await self._past_max_wait(job, batch_id, every, f"max_wait={max_wait:g} s")
        result = await self._results(job, batch_id, every)
        if status.state != "done":
            raise _ended_short(job, batch_id, status, result)
        return result

    async def _past_max_wait(
        self, job: _Job, batch_id: str, every: float, limit: str
    ) -> BatchResult:
        """Cancel the batch; once the provider finished cancelling it, record the results
        of the requests it completed (billed) and raise `TimeoutError` saying so. One
        that turns out done (its last look failed, or it ended as it was cancelled)
        is collected and returned, as one done by the last look is."""
        said = f"batch {batch_id} did not finish within {limit}"
        failed = await self._cancel(job, batch_id)
        if failed is None:
            status = await self._until_cancelled(job, batch_id, every)
        else:  # one look: it may have ended meanwhile, its results to collect
            status = await self._poll(job, batch_id)
            if status.state == "pending":
                raise TimeoutError(
                    f"{said}, and tether could not cancel batch {batch_id} at {job.pname} "
                    f"({failed}), so it may still be running, billed: cancel it there"
                )
        if status.state == "pending":
            raise TimeoutError(
                f"{said} and was cancelled, but {job.pname} had not finished cancelling it "
                f"{_CANCEL_WAIT / 60:g} minutes later, so the results of the requests it "
                f"completed (billed) are not in the call log; see them at {job.pname}"
            )
        result = await self._results(job, batch_id, every)
        if status.state == "done":
            return result
        cancelled = failed is None and status.state == "cancelled"
        how = "it was cancelled" if cancelled else f"it ended {status.provider_status}"
        raise TimeoutError(
            f"{said}; {how} and {_completed(result, job.items)}; pass a larger max_wait to "
            "wait longer"
        )

    # -- the steps of a batch --------------------------------------------------------------

    async def _submit(self, job: _Job) -> str:
        """Submit the batch, tagged with the run and step. The exchange with the provider
        is seen through even if the call is cancelled meanwhile: cut off, a batch the
        provider accepted ran on, its id never read (see `batch`)."""
        ctx = _STEP.get()
        assert ctx is not None  # called inside its step
        batch_id = await _seen_through(asyncio.ensure_future(self._accepted(job, ctx)))
        # the step that submitted it: a stage stopped before its replay listed the batch
        # as out finds it by its key (`stop_open_batches`)
        attach(_batch_event("ai.batch.submitted", batch_id, job.pname, len(job.items), ctx.name))
        return batch_id

    async def _accepted(self, job: _Job, ctx: _StepContext) -> str:
        """The id of the batch submitted, kept on `job`. A retried attempt first looks for a
        batch with its tag the run does not know: an earlier attempt's, accepted by the
        provider before a crash kept the step from being recorded."""
        batch_id: str | None = None
        if getattr(job.provider, "batch_find", None) is None:  # it keeps no tag
            batch_id = await job.provider.batch_submit(job.model_id, job.items)
        else:
            run = await self._log.get_run(self._flow.workflow_id)
            created = getattr(run, "created_at", None)
            tag = _batch_tag(self._flow.workflow_id, ctx.name, created)
            if ctx.attempt > 1:
                batch_id = await self._left_behind(job.provider, tag, created)
            if batch_id is None:
                submit: Any = job.provider.batch_submit
                batch_id = str(await submit(job.model_id, job.items, tag=tag))
        job.accepted = batch_id
        return batch_id

    async def _left_behind(
        self, provider: Any, tag: dict[str, str], created: datetime | None
    ) -> str | None:
        """The newest batch tagged `tag` that no submit of this run recorded (an earlier
        run of the step, before `rerun_from`, recorded its own). One an older tether
        submitted, without the run's creation, is looked for among those created since
        the run was (`tagged`), by a provider that can tell; never by the run's id
        alone: a run pruned under that id left its batches, answers to other prompts."""
        find = provider.batch_find
        since = "since" in inspect.signature(find).parameters and created is not None
        found: list[str] = await (find(tag, since=created) if since else find(tag))
        if not found:
            return None
        known = {
            json.loads(e.detail)["batch_id"]
            for e in await self._log.list_events(self._flow.workflow_id)
            if e.type == "ai.batch.submitted" and e.detail
        }
        return next((b for b in found if b not in known), None)

    async def _poll(self, job: _Job, batch_id: str) -> _Read:
        """The batch's status, with when it was read. A read that fails transiently (a
        rate limit, a server error, a timeout, a dropped connection) is recorded as
        pending, with its error, and read again at the next poll: the durable timer
        waits an outage out, where the step's back-off would fail the run within a
        minute and leave the batch running, billed."""

        async def status() -> _Read:
            at = self._now()
            try:
                read = await job.provider.batch_status(batch_id)
                return _Read(**read.model_dump(), read_at=at)
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                log.warning(
                    "could not read batch %s at %s (%s); looking again at the next poll",
                    batch_id,
                    job.pname,
                    exc,
                )
                return _Read(state="pending", provider_status="unknown", error=str(exc), read_at=at)

        # AI_RETRY still: a poll an older tether left failed mid-retry resumes, not fails
        return await self._flow.step(  # type: ignore[no-any-return]
            f"{job.base}.poll", status, retry=AI_RETRY, result_type=_Read
        )

    async def _until_ended(
        self, job: _Job, batch_id: str, every: float, limit: float
    ) -> BatchStatus:
        """Poll every `every` seconds until the batch ended or `limit` seconds passed
        since the first poll (by the recorded poll times: a process down past `limit`
        looks once more, then gives up, where counting only the time slept kept the
        batch running, billed, up to `limit` longer); the last status. The last wait is
        cut to what is left, so the last look is at `limit`: a batch done by then is
        collected, not cancelled."""
        slept, first = 0.0, None  # first: (slept, read_at) at the first timed poll
        while True:
            status = await self._poll(job, batch_id)
            elapsed = slept
            if status.read_at is not None:
                first = first or (slept, status.read_at)
                since = (status.read_at - first[1]).total_seconds()
                elapsed = max(slept, first[0] + since)
            left = limit - elapsed
            if status.state != "pending" or left <= 0:
                return status
            wait = min(every, left)
            await self._flow.sleep(wait)
            slept = limit if wait == left else slept + wait

    async def stop_batch(self, batch_id: str, pname: str) -> int:
        """Cancel this run's batch `batch_id` at provider `pname` now, its call stopped
        for good (`stop_batches`): 1 if cancelled, 0 if it had ended or the cancel failed
        (then logged and recorded as ``ai.batch.cancel_failed``)."""
        self._following.pop(batch_id, None)  # stopped once, not again at the run's end
        try:
            provider = self._providers.resolve(f"{pname}:batch")[1]
            return int(await _cancel_or_ended(provider, batch_id))
        except Exception as exc:
            await self._cancel_failed(batch_id, pname, str(exc))
            return 0

    async def stop_open_batches(
        self, which: Callable[[str], bool], *, besides: Iterable[str] = ()
    ) -> int:
        """Cancel at their providers this run's batches, not ended, submitted by the steps
        whose keys `which` picks (but those in `besides`, stopped already); how many. A
        call cut short before its replay listed its batch as out (`batches_out`): a stage
        stopped as its sibling failed, early in a drive, left it running, billed."""
        skip = set(besides)
        cancelled = 0
        for batch_id, detail in (await _open_batches(self._log, self._flow.workflow_id)).items():
            if batch_id not in skip and "step" in detail and which(detail["step"]):
                cancelled += await self.stop_batch(batch_id, detail["provider"])
        return cancelled

    async def _cancel(self, job: _Job, batch_id: str) -> str | None:
        """Cancel the batch, best effort, as a step (a transient failure retried); the
        error if that failed, then logged and recorded as the run's
        ``ai.batch.cancel_failed`` event rather than raised over why the run ends. A
        batch that had ended (the provider refused: see `_cancel_or_ended`) is no
        failure: the looks that follow find it ended and collect it."""

        async def cancel() -> None:
            await _cancel_or_ended(job.provider, batch_id)

        try:
            await self._flow.step(f"{job.base}.cancel", self._timed(cancel), retry=AI_RETRY)
            return None
        except Exception as exc:
            error = str(exc)
        await self._cancel_failed(batch_id, job.pname, error)
        return error

    async def _cancel_failed(self, batch_id: str, pname: str, error: str) -> None:
        """Log a cancel that failed and record it as the run's ``ai.batch.cancel_failed``:
        the batch may still be running, billed."""
        wid = self._flow.workflow_id
        log.warning("could not cancel batch %s of run %s at %s: %s", batch_id, wid, pname, error)
        detail = {"batch_id": batch_id, "provider": pname, "error": error}
        await self._flow.record_event("ai.batch.cancel_failed", batch_id, detail)

    async def _until_cancelled(self, job: _Job, batch_id: str, every: float) -> BatchStatus:
        """Poll the cancelled batch (backing off, up to `_CANCEL_WAIT`) until the
        provider has finished cancelling: only then are the results of the requests
        it completed there (OpenAI: up to 10 minutes)."""
        slept, wait = 0.0, min(every, _CANCEL_POLL)
        while True:
            status = await self._poll(job, batch_id)
            if status.state != "pending" or slept >= _CANCEL_WAIT:
                return status
            await self._flow.sleep(wait)
            slept, wait = slept + wait, min(wait * 2, _CANCEL_POLL)

    async def _results(self, job: _Job, batch_id: str, every: float) -> BatchResult:
        """The results the ended batch has, recorded in the call log by the step that
        fetched them. A fetch that fails transiently (the endpoint down) is tried again
        on the durable timer, the wait doubling from `every` (at most `_RESULTS_POLL`)
        to `_RESULTS_POLL`, until `_RESULTS_WAIT` was slept: the step's back-off alone
        failed the run within a minute, the completed requests' results (billed) never
        recorded. Past that the run fails naming the step to rerun from: the provider
        keeps the results (Anthropic for 29 days)."""
        slept, wait, first = 0.0, min(every, _RESULTS_POLL), ""
        while True:
            got = await self._fetch(job, batch_id)
            if isinstance(got, BatchResult):
                return got
            first = first or got.step  # rerun from it: the whole window again
            if slept >= _RESULTS_WAIT:
                wid = self._flow.workflow_id
                raise ProviderError(
                    f"batch {batch_id} ended, but its results could not be fetched from "
                    f"{job.pname} for {_RESULTS_WAIT / 60:g} minutes ({got.unfetched}); "
                    f"{job.pname} keeps them: once it answers again, fetch and record them "
                    f"with app.rerun_from({wid!r}, {first!r})"
                )
            wait = min(wait, _RESULTS_WAIT - slept)  # the last fetch at _RESULTS_WAIT
            await self._flow.sleep(wait)
            slept, wait = slept + wait, min(wait * 2, _RESULTS_POLL)

    async def _fetch(self, job: _Job, batch_id: str) -> BatchResult | _Unfetched:
        """One fetch of the results, as a step: a transient failure is its result, not
        its error (the caller waits on the durable timer). Nothing is recorded before
        the provider handed over all the results, so each is recorded once."""

        async def collect(ctx: _StepContext) -> BatchResult | _Unfetched:
            try:
                found = await self._collect(
                    job.pname, job.provider, job.model_id, job.model, batch_id, job.items
                )
            except ProviderError as exc:
                if not exc.retryable:
                    raise _unfetchable(
                        job, batch_id, self._flow.workflow_id, ctx.name, exc
                    ) from exc
                log.warning(
                    "could not fetch the results of batch %s at %s (%s); fetching them again",
                    batch_id,
                    job.pname,
                    exc,
                )
                return _Unfetched(unfetched=str(exc), step=ctx.name)
            attach(_batch_event("ai.batch.ended", batch_id, job.pname, len(job.items)))
            return found

        # AI_RETRY still: a fetch an older tether left failed mid-retry resumes, not fails;
        # what an older tether recorded (a BatchResult) is read as such
        return await self._flow.step(  # type: ignore[no-any-return]
            f"{job.base}.results", collect, retry=AI_RETRY, result_type=BatchResult | _Unfetched
        )

    # -- one durable call ------------------------------------------------------------------

    async def _durable(self, name: str, call: Callable[[], Awaitable[R]], rtype: Any) -> R:
        while True:
            outcome = await self._admitted(name, call, rtype)
            if outcome.stopped is None:
                return outcome.result  # type: ignore[return-value]
            limit = await self._stopper(outcome.stopped)
            if limit.budget.on_exceed == "fail":
                raise self._exceeded(limit, outcome.stopped, name)
            raised = await self._raised(limit.budget, outcome.stopped.raises)
            if raised is not limit.budget:
                self._replace(limit, _Limit(raised, limit.of, limit.via))
                self._untold[(limit.of, self._raises)] = raised

    async def _admitted(
        self, name: str, call: Callable[[], Awaitable[R]], rtype: Any
    ) -> _Outcome[Any]:
        """One occurrence of the step: the call runs once the budget admits it, and its
        cost counts from its answer until the step (or a failed attempt) is logged."""
        tickets: list[Ticket] = []
        call = self._timed(call)

        async def gated(ctx: _StepContext) -> _Outcome[Any]:
            for earlier in tickets:  # an attempt before: logged with its failure
                earlier.logged()
            gate = await self._gate(ctx.name)
            if isinstance(gate, _Stop):
                return _Outcome(stopped=gate)
            step = _STEP.set(ctx)
            try:
                if not gate:  # no budget
                    return _Outcome(result=await call())
                tickets.extend(held.ticket for held in gate)
                await self._tell_raises()
                token, ok, warned = _TICKETS.set(gate), False, []
                try:
                    for held in gate:
                        warned += await self._warn(held.limit, held.ticket.judged)
                    result = await call()
                    ok = True
                except _Spent as spent:
                    ok = True  # its calls answered: their costs are known
                    return _Outcome(stopped=self._stop(spent.limit, spent.spend, ctx.name))
                except BaseException as exc:
                    if not isinstance(exc, Exception):  # cut short: not written
                        self._warned_attached.difference_update(warned)
                    raise
                finally:
                    _TICKETS.reset(token)
                    for held in gate:
                        held.ticket.returned(ok)
                return _Outcome(result=result)
            finally:
                _STEP.reset(step)

        try:
            return await self._flow.step(  # type: ignore[no-any-return]
                name, gated, retry=AI_RETRY, result_type=_Outcome[rtype]
            )
        finally:
            for ticket in tickets:
                ticket.logged()

    def _timed(self, call: Callable[[], Awaitable[R]]) -> Callable[[], Awaitable[R]]:
        """`call`, a provider's ``retry-after`` date read as seconds by the App's clock
        (the step's back-off waits at least that long)."""

        async def timed() -> R:
            try:
                return await call()
            except ProviderError as exc:
                exc.wait_from(self._now())
                raise

        return timed

    def _exceeded(self, limit: _Limit, stopped: _Stop, name: str) -> BudgetExceededError:
        budget, wid = limit.budget, self._flow.workflow_id
        # the budget given replaces the run's: a key left out would log the calls made
        # from then on under no key, outside the spend the key shares
        fields = [f"{k}=..." for k, v in _limits(budget).items() if v is not None]
        fields += [f"key={budget.key!r}"] if budget.key else []
        fields += [f"period={budget.period!r}"] if budget.period else []
        larger = f"ai.Budget({', '.join(fields)})"
        if limit.of != wid:  # the budget of a run that started this one
            how = (
                f"the budget of run {limit.of!r} covers the runs it starts: go on with a "
                f"larger one there, app.rerun_from({limit.of!r}, 'child:{limit.via}', "
                f"budget={larger}) from its wait for the run it started on the way here "
                "(or from a step before it started that run), or give it "
                "on_exceed='pause' to raise it while this run waits"
            )
        else:
            if stopped.step is not None:
                rerun = f"app.rerun_from({wid!r}, {stopped.step!r}, budget="
            else:  # recorded by an older tether, without the step's key
                rerun = (
                    f"step {name!r} or its latest #n in the run's steps: "
                    "app.rerun_from(run_id, step, budget="
                )
            how = (
                f"go on with a larger one from the stopped call: {rerun}{larger}), or use "
                "on_exceed='pause' to raise it while the run waits"
            )
        until = budget.until(self._now())
        if until is not None:  # or the same one, once it counts from nothing again
            how += f" (or rerun it as it is once the next {budget.period} begins, at {until.isoformat()})"
        return BudgetExceededError(
            f"AI budget exceeded: {stopped.message}; {how}",
            spent_usd=stopped.spent_usd,
            limit_usd=budget.max_usd,
        )

    async def _raised(self, budget: Budget, taken: int) -> Budget:
        """The budget the next ``budget.raise`` signal gives. All calls stopped before
        it wait for the same one (a waitpoint keyed by how many came before); one that
        carries no valid limits is recorded as refused and the run waits on. A raise
        of the budget of a run that started this one holds for this run (the signal
        is sent to the run that waits). A budget with a period is back, as it is, when
        the next period begins (a durable timer: the wait's timeout)."""
        while True:
            taken += 1
            key = f"signal:budget.raise#{taken}"
            now = self._now()
            until = budget.until(now)
            timeout = None if until is None else (until - now).total_seconds()
            payload = await self._flow.wait_for_signal(
                "budget.raise", key=key, timeout=timeout, default=_NEXT_PERIOD
            )
            self._raises = max(self._raises, taken)
            if payload is _NEXT_PERIOD:
                return budget
            try:
                return budget.raised(payload)
            except InvalidArgumentError as exc:
                await self._flow.record_event("budget.raise_refused", str(exc))

    # -- the budgets that cover a call ------------------------------------------------------

    async def _covering(self) -> list[_Limit]:
        """The budgets a call of this run is checked against: its own, then those of
        the runs that started it, parent first (read once a drive: the same on a replay
        as on the first run, as the runs' recorded budgets are)."""
        if self._above is None:
            self._above = await self._ancestors()
        return self._covering_now()

    async def _ancestors(self) -> list[_Limit]:
        """The budgets of the runs that started this one, parent first, each with the
        limits the latest ``budget.raise`` of it gave (`latest_raise`). A raise is
        recorded by the run that took it: the budget's run or any run it covers, so
        the events of each run up to the topmost budget that pauses (only such a
        budget is raised) are read, once a drive."""
        path = await self._path_up()
        top = max((i for i, (_, budget, _) in enumerate(path) if _pauses(budget)), default=-1)
        events = [await self._log.list_events(run) for run, _, _ in path[: top + 1]]
        found: list[_Limit] = []
        for i, (run, budget, below) in enumerate(path):
            if budget is None:
                continue
            limits = latest_raise(events[: i + 1], run) if _pauses(budget) else None
            found.append(
                _Limit(budget if limits is None else budget.with_limits(limits), run, below)
            )
        return found

    async def _path_up(self) -> list[tuple[str, Budget | None, str]]:
        """The runs that started this one, parent first: (run, its budget as recorded,
        else its workflow's, the run below it on the way here)."""
        path: list[tuple[str, Budget | None, str]] = []
        seen = {self._flow.workflow_id}
        run = await self._log.get_run(self._flow.workflow_id)
        parent = None if run is None else run.parent_id
        below = self._flow.workflow_id
        while parent is not None and parent not in seen:
            seen.add(parent)
            row = await self._log.get_run(parent)
            if row is None:  # deleted: its budget went with it
                break
            budget = (
                Budget.of(json.loads(row.budget))
                if row.budget is not None
                else self._workflow_budget(row.workflow_name)
            )
            path.append((parent, budget, below))
            below, parent = parent, row.parent_id
        return path

    async def _tell_raises(self, still: _Over | None = None) -> None:
        """Record each ``budget.raise`` taken this drive once, as ``budget.raised`` with
        the limits it gave, written with the first call that runs after it, or that the
        budget stops again (`still`: a raise that left the run over a limit says which,
        and what raise lets it go on). A replay takes it again: told once, by the run's
        events since its last rerun."""
        if not self._untold:
            return
        if self._told is None:
            self._told = set(raises_told(await self._log.list_events(self._flow.workflow_id)))
        for (of, n), budget in self._untold.items():
            if (of, n) in self._told:
                continue
            self._told.add((of, n))
            limits = _limits(budget)
            said = ", ".join(f"{k}={v}" for k, v in limits.items() if v is not None)
            whose = (
                "the run's budget" if of == self._flow.workflow_id else f"the budget of run {of!r}"
            )
            fields: dict[str, Any] = {"budget_of": of, "raise": n, **limits}
            message = f"{whose} raised by signal: {said}"
            if still is not None and still.limit.of == of and still.limit.budget == budget:
                over = still.limit.budget.reached(still.spend)
                fields["still_over"] = over
                message += f"; not enough: {self._not_enough(still, over)}"
            attach(NewEvent("budget.raised", message, json.dumps(fields)))
        self._untold.clear()

    def _not_enough(self, still: _Over, over: list[str]) -> str:
        """What a raise that did not lift the run past its budget left: the spend, the
        limits it is still over, the raise that would let it go on."""
        budget, spend = still.limit.budget, still.spend
        since = budget.since(self._now())
        what = f"still over {' and '.join(over)}" if over else "calls in flight still stop it"
        return (
            f"{budget.describe(spend, of=self._whose(still.limit), since=since)}, {what}; "
            f"the run waits for another budget.raise, e.g. {budget.raise_hint(spend)}"
        )

    async def _stopper(self, stopped: _Stop) -> _Limit:
        """The budget that stopped a call: the one of the run `stopped.of` names (its
        latest limits, raised since), else (an older tether's record) the run's own."""
        covering = await self._covering()
        of = stopped.of or self._flow.workflow_id
        found = next((lim for lim in covering if lim.of == of), None)
        if found is None:  # that run no longer covers this one (deleted): fail as its own
            own = self.budget or Budget(max_usd=stopped.spent_usd or 1.0)
            found = _Limit(own, self._flow.workflow_id)
        return found

    def _replace(self, old: _Limit, new: _Limit) -> None:
        """Take `new` (raised limits) as the budget `old` was, for the rest of the drive."""
        if old.of == self._flow.workflow_id:
            self.budget = new.budget
        elif self._above is not None:
            self._above = [new if lim.of == old.of else lim for lim in self._above]

    def _log_key(self) -> str | None:
        """The budget key a call is logged under: the nearest keyed budget's that covers
        it (the run's own, else that of the run that started it, ...): a key shared by
        runs counts the calls of the runs they start."""
        return next((lim.budget.key for lim in self._covering_now() if lim.budget.key), None)

    async def _gate(self, step: str) -> _Stop | tuple[_Held, ...]:
        """The call's admissions, one per budget that covers it (none: no budget), or
        what stops it: a budget is exceeded (the step records it). Calls in flight of
        the same budget are admitted together only as far as it goes (see
        `_admission`); the budgets are taken in one order in every run, so two calls
        never wait on each other's.

        A call is judged on the limits read as its admission began: a ``budget.raise``
        (or a new period) a sibling branch took while it waited or read the spend is
        not in them, so a stop then is judged again on the raised limits. Taken as
        after that raise, the stop waited for the next one, the run parked again with
        its budget already raised."""
        while True:
            raises = self._raises
            gate = await self._admit_all()
            if not isinstance(gate, _Over):
                return gate
            if self._raises == raises:
                await self._tell_raises(gate)  # a raise that did not lift it: said so
                return self._stop(gate.limit, gate.spend, step)

    async def _admit_all(self) -> _Over | tuple[_Held, ...]:
        """`_gate` on the budgets as they are now: the admissions, or the budget that
        stops the call and the spend it was judged on."""
        held: list[_Held] = []
        log_id = id(self._log)  # the log's: one process, two databases
        covering = sorted(
            await self._covering(),
            key=lambda lim: ("key", lim.budget.key) if lim.budget.key else ("run", lim.of),
        )
        admitted: dict[tuple[Any, ...], Ticket] = {}
        try:
            for limit in covering:
                budget, of = limit.budget, limit.of
                scope: tuple[Any, ...] = (
                    (log_id, "key", budget.key) if budget.key else (log_id, "run", of)
                )
                scope += (budget.since(self._now()),)  # a new period: a new scope
                ticket: Ticket | None = admitted.get(scope)
                if ticket is not None:  # a key a run and one that started it both have
                    spend = ticket.judged  # admitted once, judged by each budget of it
                    if budget.judge(spend) == "exceeded":
                        return _Over(limit, spend)
                else:
                    spend, ticket = await self._admissions.admit(
                        scope, budget, self._spend_of(limit)
                    )
                    if ticket is None:
                        return _Over(limit, spend)
                    admitted[scope] = ticket
                held.append(_Held(limit, ticket))
            done, held = tuple(held), []
            return done
        finally:
            for cut in held:  # stopped by a later budget: these calls never ran
                cut.ticket.returned(False)
                cut.ticket.logged()

    def _spend_of(self, limit: _Limit) -> Callable[[], Awaitable[Spend]]:
        """The read of what `limit` counts: its run's calls and those of the runs it
        started (with its key's, if it has one)."""
        since = limit.budget.since(self._now())
        return lambda: self._log.ai_spend(limit.of, limit.budget.key, tree=True, since=since)

    def _stop(self, limit: _Limit, spend: Spend, step: str) -> _Stop:
        """What a call the budget stopped records as its step's result, and the run's
        ``budget.exceeded`` written with it: spend, limit and what comes next, so a run
        parked on ``budget.raise`` says why and by how much."""
        budget = limit.budget
        now = self._now()
        stopped = _Stop(
            spent_usd=spend.usd,
            tokens=spend.tokens,
            message=budget.describe(spend, of=self._whose(limit), since=budget.since(now)),
            raises=self._raises,
            step=step,
            of=limit.of,
        )
        wid = self._flow.workflow_id
        # a budget of a run that started this one: the raise goes to this run, which waits
        who = "the run" if limit.of == wid else f"run {wid!r} (not {limit.of!r})"
        then = (
            f"{who} waits for signal budget.raise with new limits, e.g. {budget.raise_hint(spend)}"
            if budget.on_exceed == "pause"
            else "the run fails"
        )
        until = budget.until(now)
        if until is not None:
            then += f"; the budget's next {budget.period} begins at {until.isoformat()}"
            then += ", when the run goes on" if budget.on_exceed == "pause" else ""
        detail = {"step": step, "spent_usd": stopped.spent_usd, "tokens": stopped.tokens,
                  "key": budget.key, "on_exceed": budget.on_exceed,
                  **_said(budget, limit.of, now)}  # fmt: skip
        attach(NewEvent("budget.exceeded", f"{stopped.message}; {then}", json.dumps(detail)))
        return stopped

    def _whose(self, limit: _Limit) -> str | None:
        """Whose spend a budget counts, said (None: this run's)."""
        if limit.of == self._flow.workflow_id:
            return None
        return f"run {limit.of!r} (which started this one), with the runs it started,"

    def _covering_now(self) -> list[_Limit]:
        """`_covering` as read this drive (a call's gate reads it first)."""
        own = [] if self.budget is None else [_Limit(self.budget, self._flow.workflow_id)]
        return own + (self._above or [])

    def _still_within(self) -> None:
        """Before a step's next provider call (`generate_object` asking again): stop
        once a budget is spent, as the next step's check would, so only the call that
        crossed the limit is over it."""
        for held in _TICKETS.get():
            if held.limit.budget.judge(held.ticket.spend) == "exceeded":
                raise _Spent(held.limit, held.ticket.spend)

    async def _warn(self, limit: _Limit, spend: Spend) -> list[str]:
        """Past `warn_at`, the run's ``budget.warning``, written with the step once per
        budget and limits (a budget raised since warns again at its new line); the
        limits (`_limits_key`) if this call attached it."""
        budget = limit.budget
        if budget.judge(spend) != "warn" or await self._warned(limit):
            return []
        now = self._now()
        limits = _limits_key(budget, limit.of, now)
        self._warned_attached.add(limits)
        detail = {"spent_usd": spend.usd, "tokens": spend.tokens,
                  **_said(budget, limit.of, now)}  # fmt: skip
        message = budget.describe(spend, of=self._whose(limit), since=budget.since(now))
        attach(NewEvent("budget.warning", message, json.dumps(detail)))
        return [limits]

    async def _warned(self, limit: _Limit) -> bool:
        """Whether the run recorded its warning for the budget's limits, or a call in
        flight attached it; once it has, not asked again. Read after the log, so a call
        that attached it during the read is seen."""
        now = self._now()
        limits = _limits_key(limit.budget, limit.of, now)
        asked = limits not in self._warned_known and limits not in self._warned_attached
        said = _said(limit.budget, limit.of, now)
        if asked and await self._log.budget_warned(self._flow.workflow_id, said):
            self._warned_known.add(limits)
        return limits in self._warned_known or limits in self._warned_attached

    async def _call(
        self, call_type: str, pname: str, provider: Provider, model_id: str, request: TextRequest
    ) -> tuple[ModelReply, int | None]:
        sent = _Sent(self._now)
        prompt = request.model_dump_json(exclude_defaults=True)
        try:
            reply = await self._reach(
                pname, sent.timed(provider, lambda: provider.generate(model_id, request))
            )
        except ProviderError as exc:
            self._record_failure(call_type, pname, model_id, prompt, exc, sent.at)
            raise
        except asyncio.CancelledError as exc:
            self._record_cut(call_type, pname, model_id, prompt, sent, exc)
            raise
        cost = self._record(
            call_type,
            pname,
            model_id,
            prompt,
            reply.usage,
            sent.at,
            response=reply.model_dump_json(exclude={"raw"}),
            request_id=reply.request_id,
            service_tier=reply.service_tier,
            usage_known=reply.usage_reported,
        )
        return reply, cost

    async def _reach(self, pname: str, call: Callable[[], Awaitable[R]]) -> R:
        """`call` to provider `pname`, once its cooldown allows (`_cooldown`). A rate
        limit that says until when sets the cooldown, taken with the one other
        processes recorded if that ends later (`_shared_until`), and the step's
        back-off waits until then."""
        clock = self._flow.clock
        turn = await self._cooldowns.enter(self._providers, pname, clock)
        try:
            try:
                result = await call()
            except ProviderError as exc:
                await self._limited(pname, exc, clock, turn)
                raise
            turn.end()
            return result
        finally:
            turn.cut()  # cut short on the way (not ended above): the next call tries

    async def _limited(self, pname: str, exc: ProviderError, clock: Clock, turn: Turn) -> None:
        """End `turn` on the failure `exc`; a rate limit with a retry-after sets the
        cooldown and makes `exc` ask for the wait to its (perhaps later, shared) end."""
        now = clock.now()
        until = limited_until(exc.wait_from(now), now)
        if until is not None:
            until = await self._shared_until(pname, until, clock)
            wait = (until - now).total_seconds()
            exc.retry_after = max(exc.retry_after or 0.0, wait)
            if exc.retry_at is not None:  # read again from it by `_timed`
                exc.retry_at = until
        turn.end(limited=exc.status in RATE_LIMITED, until=until)

    async def _shared_until(self, pname: str, until: datetime, clock: Clock) -> datetime:
        """The later of `until` and the cooldown other processes recorded for
        `pname` (a lock of `COOLDOWN_SCOPE`, expiring at its end); `until` is recorded
        if it is the later. Read only here, on a rate limit this process met: the calls
        it makes otherwise read nothing more. A database that fails here costs the
        sharing, never the call's own error."""
        try:
            row = await self._log.get_lock(COOLDOWN_SCOPE, pname)
            if row is not None and row.released_at is None and row.expires_at >= until:
                return row.expires_at  # type: ignore[no-any-return]
            ttl = (until - clock.now()).total_seconds()
            await self._log.acquire_lock(
                COOLDOWN_SCOPE, pname, _COOLDOWN_HOLDER, ttl=ttl, now=clock.store_time(),
                at=clock.now(),
            )  # fmt: skip
        except Exception as err:
            log.warning("could not share the cooldown of provider %s: %s", pname, err)
        return until

    async def _object_attempts(
        self,
        pname: str,
        provider: Provider,
        model_id: str,
        model: str,
        tries: _Tries,
        adapter: _Answer,
        attempts: int,
    ) -> ObjectResult[Any]:
        """Ask until an answer validates, `attempts` answers at most. `tries` holds the
        answers the step's earlier attempts got (a 5xx after a refused answer retries
        the step): the retry goes on from them, not from the first question again,
        which was paid and logged already and was asked once more, its answer
        thrown away, with `attempts` counted afresh."""
        while tries.answered < attempts:
            if tries.answered:
                self._still_within()
            reply, one = await self._call("object", pname, provider, model_id, tries.request)
            tries.answered += 1
            tries.usage = tries.usage + reply.usage
            tries.known = tries.known and one is not None
            tries.cost += one or 0
            try:
                value = adapter.validate_json(reply.text)
            except ValidationError as exc:
                tries.error = _no_object(reply, tries.request.max_tokens, validation_message(exc))
                tries.ask_again(reply.text)
                continue
            return ObjectResult[Any](
                object=value,
                text=reply.text,
                usage=tries.usage,
                cost_usd=_usd(tries.cost if tries.known else None),
                model=model,
                attempts=tries.answered,
            )
        raise ObjectValidationError(
            f"{model} gave no answer matching the schema in {attempts} attempts; "
            f"last error: {tries.error}"
        )

    async def _collect(
        self,
        pname: str,
        provider: Provider,
        model_id: str,
        model: str,
        batch_id: str,
        items: list[BatchItem],
    ) -> BatchResult:
        asked = {item.custom_id: item for item in items}
        found: dict[str, BatchOutcome] = {}
        total, cost, known = Usage(), 0, True
        for res in await provider.batch_results(batch_id):
            if res.custom_id in found:  # a line repeated: logged once (by the log's key)
                continue  # and so counted once, in the batch's usage and cost as there
            item = asked.get(res.custom_id)
            prompt = item.request.model_dump_json(exclude_defaults=True) if item else "{}"
            # a failed result with a reply was answered (billed) but unreadable
            reply = res.reply.model_dump_json(exclude={"raw"}) if res.ok and res.reply else None
            usage = res.reply.usage if res.reply else Usage()
            one = self._record(
                "batch",
                pname,
                model_id,
                prompt,
                usage,
                None,
                response=reply,
                request_id=res.reply.request_id if res.reply else None,
                service_tier="batch",
                error=res.error,
                batch=(batch_id, res.custom_id),
                usage_known=res.reply.usage_reported if res.reply else True,
                billed=res.ok or res.reply is not None,  # a failed one, if answered
            )
            total = total + usage
            known = known and (one is not None or res.reply is None)
            cost += one or 0
            found[res.custom_id] = BatchOutcome(
                custom_id=res.custom_id,
                ok=res.ok,
                text=res.reply.text if res.ok and res.reply else None,
                error=res.error,
                usage=usage,
                cost_usd=_usd(one),
                model=model,
            )
        return BatchResult(
            batch_id=batch_id,
            provider=pname,
            items=_as_asked(found, items, f"batch {batch_id} at {pname}", model),
            usage=total,
            cost_usd=_usd(cost if known else None),
        )

    # -- the call log -----------------------------------------------------------------------

    def _record(
        self,
        call_type: str,
        pname: str,
        model_id: str,
        prompt: str,
        usage: Usage,
        sent: datetime | None,
        *,
        response: str | None,
        request_id: str | None = None,
        service_tier: str | None = None,
        error: str | None = None,
        batch: tuple[str, str] | None = None,
        usage_known: bool = True,
        billed: bool = True,
    ) -> int | None:
        """Attach the call's row (`NewAICall`; `billed`: the provider took the request,
        False for a refused one) and count it for the budgets; its cost."""
        now = self._now()
        tier = None if batch else service_tier
        priced = self._price(
            pname, model_id, usage, now, batch is not None, tier, usage_known, error
        )
        # a call that may have been billed at an unknown cost is unseen by a dollar limit
        if priced.micro_usd is None and (billed or error is None):
            audio = bool(usage.input_audio_tokens or usage.output_audio_tokens)
            self._unpriced(pname, model_id, usage_known, error, audio=audio)
        attach(
            NewAICall(
                call_type=call_type,
                provider=pname,
                model=model_id,
                prompt=prompt,
                response=response,
                # the token counts, under the same names (1 h writes, searches, audio
                # parts: the store has no columns for them; they are in the cost)
                **usage.model_dump(exclude=set(_UNLOGGED_COUNTS)),
                cost_micro_usd=priced.micro_usd,
                price_source=priced.source,
                service_tier=service_tier,
                request_id=request_id,
                latency_ms=_took_ms(sent, now),
                at=now,
                error=error,
                budget_key=self._log_key(),
                batch_id=batch[0] if batch else None,
                custom_id=batch[1] if batch else None,
                billed=billed,
            )
        )
        # counts for the budgets now, before the step is logged (a ticket two budgets of
        # one key share, once)
        for ticket in {id(held.ticket): held.ticket for held in _TICKETS.get()}.values():
            ticket.cost(priced.micro_usd, usage.total_tokens)
        return priced.micro_usd

    def _price(
        self,
        pname: str,
        model_id: str,
        usage: Usage,
        at: datetime,
        batch: bool,
        service_tier: str | None,
        usage_known: bool,
        error: str | None = None,
    ) -> Priced:
        """The call's cost; unknown (not $0) for one billed for tokens it did not tell."""
        if not usage_known:
            log.warning(
                "%s:%s %s; its cost is unknown",
                pname,
                model_id,
                "answered without usage (or without its input or output count, or with "
                "parts above them)"
                if error is None
                else f"failed after the provider took the request ({error})",
            )
            return Priced(None, None)
        return self._providers.price(
            pname, model_id, usage, at=at, batch=batch, service_tier=service_tier
        )

    def _unpriced(
        self,
        pname: str,
        model_id: str,
        usage_known: bool,
        error: str | None = None,
        *,
        audio: bool = False,
    ) -> None:
        """Warn, once per model and run, that a call no dollar limit can see was made:
        one to a model of no known price (or of a table price with no rate for some of
        its counts, or with `audio` tokens of no known rate: its advice is not "price
        it"), an answer that told no usage, or a failure (`error`) after the provider
        took the request."""
        budget = next((lim.budget for lim in self._covering_now() if lim.budget.max_usd), None)
        if budget is None or budget.max_usd is None or (pname, model_id) in self._unpriced_seen:
            return
        self._unpriced_seen.add((pname, model_id))
        model = f"{pname}:{model_id}"
        limit = f"max_usd={budget.max_usd:g}"
        # its tokens count against a max_tokens the budget has: then that is no advice
        tokens = (
            " or set max_tokens"
            if budget.max_tokens is None
            else f" (its tokens count against the budget's max_tokens={budget.max_tokens})"
        )
        own = self._providers.prices.own(pname, model_id) if usage_known else None
        message = (
            f"{model}'s price in ai.Prices does not price all of a call (audio tokens, "
            "which a Price has no rate for, or web searches of no known price), so its "
            f"cost is unknown and does not count against the budget's {limit}; leave "
            f"the model to genai-prices or set web_search_per_thousand{tokens}"
            if own is not None
            else f"{model} has no known rate for the audio tokens a call told (audio is "
            "billed many times the text rate, not priced as text), so its cost is unknown "
            f"and does not count against the budget's {limit}"
            + ("; set max_tokens to bound such calls" if budget.max_tokens is None else tokens)
            if usage_known and audio
            else f"{model} has no known price, so its calls do not count against the budget's "
            f"{limit}; price it in ai.Prices({{{model!r}: {{...}}}}){tokens}"
            if usage_known
            else f"{model} answered without usage (or without its input or output tokens, "
            "or with parts of them above them), "
            f"so its cost is unknown and does not count against the budget's {limit}; "
            "have the server report usage"
            if error is None
            else f"a call to {model} failed after the provider took the request ({error}): "
            f"it may have been billed, so its cost is unknown and does not count against "
            f"the budget's {limit}"
        )
        log.warning("run %s: %s", self._flow.workflow_id, message)
        detail = {"provider": pname, "model": model_id, "max_usd": budget.max_usd}
        attach(NewEvent("budget.unpriced", message, json.dumps(detail)))

    def _record_failure(
        self,
        call_type: str,
        pname: str,
        model_id: str,
        prompt: str,
        exc: ProviderError,
        sent: datetime,
    ) -> None:
        """Log a failed call: free if refused, but one the provider took (answered 200,
        or lost after the request went out) may have been billed (`ProviderError.billed`):
        priced from the usage its body told, else of unknown cost, never $0."""
        self._record(
            call_type,
            pname,
            model_id,
            prompt,
            exc.usage or Usage(),
            sent,
            response=None,
            request_id=exc.request_id,
            error=str(exc),
            usage_known=not exc.billed or exc.usage is not None,
            billed=exc.billed,
        )

    def _record_cut(
        self,
        call_type: str,
        pname: str,
        model_id: str,
        prompt: str,
        sent: _Sent,
        exc: asyncio.CancelledError,
    ) -> None:
        """Log a call cut short while its answer was awaited (its run cancelled, its step
        past a timeout): the provider took the request and may bill it, for tokens no
        answer told, so it is of unknown cost, as a request that timed out is (before:
        not logged at all). None is logged for a call cut before it was sent (in a
        cooldown), which cost nothing."""
        if not sent.out:
            return
        why = f" ({exc.args[0]})" if exc.args and isinstance(exc.args[0], str) else ""
        self._record(
            call_type,
            pname,
            model_id,
            prompt,
            Usage(),
            sent.at,
            response=None,
            error=f"cut short before {pname} answered: its step was cancelled{why}",
            usage_known=False,
        )


class _Sent:
    """When a request left for its provider, on the App's clock: after any cooldown
    let it go and after the provider's client was built (its optional `ready`), so
    that a call's `latency_ms` is the provider's time, not the wait before it nor the
    first call's SDK import. `out`: it left (so the provider may have taken it)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self.at = now()
        self.out = False

    def timed(
        self, provider: Provider, call: Callable[[], Awaitable[R]]
    ) -> Callable[[], Awaitable[R]]:
        ready = getattr(provider, "ready", None)

        async def send() -> R:
            if ready is not None:
                ready()
            self.at = self._now()
            self.out = True
            return await call()

        return send


def _took_ms(sent: datetime | None, now: datetime) -> int:
    """Milliseconds from `sent` to `now` (0 for a batch's results, or a clock set back)."""
    return 0 if sent is None else max(0, int((now - sent).total_seconds() * 1000))


# after max_wait: how long a cancelled batch is waited for (OpenAI takes up to 10
# minutes to cancel one) and the longest wait between looks
_CANCEL_WAIT = 15 * 60.0
_CANCEL_POLL = 60.0
# an ended batch's results not to be had: fetched again for this long, at most this
# long apart (on the durable timer)
_RESULTS_WAIT = 60 * 60.0
_RESULTS_POLL = 5 * 60.0
# a run's cancel (inside app.cancel, which waits for it): a batch's cancel failing
# transiently is tried this many times, waiting this long in all at most
_CANCEL_NOW_TRIES = 4
_CANCEL_NOW_WAIT = 5.0
# a cancel refused with one of these may be refused as the batch had ended (OpenAI:
# 409 "Cannot cancel a batch with status 'completed'")
_REFUSED_AS_ENDED = frozenset({400, 409})
_TAG_VALUE = 512  # the longest metadata value OpenAI keeps
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _batch_tag(workflow_id: str, step: str, created: datetime | None) -> dict[str, str]:
    """The metadata naming the run, its creation (in microseconds since the epoch, as
    the outbox's delivery ids: a run id is reused once its run was pruned) and the step
    that submit a batch (a value too long for the provider is kept as its digest)."""

    def fit(value: str) -> str:
        if len(value) <= _TAG_VALUE:
            return value
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()

    tag = {"tether_run": fit(workflow_id), "tether_step": fit(step)}
    if created is not None:
        aware = created if created.tzinfo else created.replace(tzinfo=UTC)
        tag[RUN_CREATED] = str((aware - _EPOCH) // timedelta(microseconds=1))
    return tag


def _completed(result: BatchResult, items: list[BatchItem]) -> str:
    """How many requests of a batch that ended short completed, and where they are."""
    ok = sum(1 for outcome in result.items.values() if outcome.ok)
    if not ok:
        return f"none of its {len(items)} requests completed"
    return (
        f"{ok} of its {len(items)} requests completed (their results, billed, are in the "
        "call log and the run's usage: app.list_ai_calls(run_id))"
    )


def _as_asked(
    found: dict[str, BatchOutcome], items: list[BatchItem], batch: str, model: str
) -> dict[str, BatchOutcome]:
    """The outcomes in the order asked (providers answer in any order), any the
    provider answered under an id not asked last (a line whose custom_id could not be
    read among them, `UNREADABLE_LINE`). A request the results hold no line for is an
    outcome that says so: left out, the run went on without it and ``items[custom_id]``
    raised KeyError. Nothing is logged for it in the call log: the provider told
    neither usage nor error (its line may be one that could not be read, logged)."""
    missing = [i.custom_id for i in items if i.custom_id not in found]
    if missing:
        named = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        log.warning("%s ended with no result for %d requests: %s", batch, len(missing), named)
    lost = sum(1 for k in found if k.startswith(UNREADABLE_LINE))
    maybe = (
        f" ({lost} of its result lines could not be read, billed at an unknown cost: "
        f"this request's may be one, see the items keyed {UNREADABLE_LINE}...)"
        if lost
        else ""
    )
    error = f"{batch} ended with no result for this request{maybe}; submit it again"
    gone = {m: BatchOutcome(custom_id=m, ok=False, error=error, model=model) for m in missing}
    return {i.custom_id: found.get(i.custom_id) or gone[i.custom_id] for i in items} | found


def _ended_short(
    job: _Job, batch_id: str, status: BatchStatus, result: BatchResult
) -> ProviderError:
    """The error of a batch that ended failed, cancelled or expired, naming provider
    and model, its outcomes (`result`) as its `batch`. One the provider failed as a
    whole says why (an input file refused at validation): submitted again as it is,
    it would fail again."""
    ended = f"batch {batch_id} at {job.pname} ({job.model}) ended {status.provider_status}"
    done = _completed(result, job.items)
    if status.reason:
        return ProviderError(
            f"{ended}: {status.reason}; {done}; fix what it names and submit the requests "
            "in a new batch",
            model=job.model,
            batch=result,
        )
    return ProviderError(
        f"{ended}: {done}; submit any that did not complete again in a new batch",
        model=job.model,
        batch=result,
    )


def _unfetchable(
    job: _Job, batch_id: str, wid: str, step: str, exc: ProviderError
) -> ProviderError:
    """The error of an ended batch whose results the provider refused to hand over (a
    revoked key, a file or URL not found): the provider's words alone ("answered 404:
    not found: 'file-…'") named neither the batch nor that its completed requests were
    billed and not recorded, nor the step that fetches them again."""
    return ProviderError(
        f"batch {batch_id} at {job.pname} ({job.model}) ended, but {job.pname} refused its "
        f"results ({exc}), so the requests it completed (billed) are not in the call log; "
        f"fix what it says, then fetch and record them with app.rerun_from({wid!r}, {step!r})",
        status=exc.status,
        request_id=exc.request_id,
        model=job.model,
    )


async def _seen_through(exchange: asyncio.Future[R]) -> R:
    """`exchange`'s result. The awaiting task cancelled, the exchange still runs to its end
    (a cancel again waits on) before the cancellation goes on: what it had the provider
    do is then known, not cut off between the provider's answer and tether reading it."""
    try:
        return await asyncio.shield(exchange)
    except asyncio.CancelledError:
        while not exchange.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([exchange])
        if not exchange.cancelled():
            exchange.exception()  # retrieved: the cancellation goes on, not its failure
        raise


def _batch_event(
    kind: str, batch_id: str, provider: str, size: int, step: str | None = None
) -> NewEvent:
    detail: dict[str, Any] = {"batch_id": batch_id, "provider": provider, "requests": size}
    if step is not None:
        detail["step"] = step
    return NewEvent(kind, batch_id, json.dumps(detail))


async def open_batches(store: Any, workflow_id: str) -> dict[str, str]:
    """The provider batches the run submitted that have not ended: id -> provider."""
    return {bid: d["provider"] for bid, d in (await _open_batches(store, workflow_id)).items()}


async def _open_batches(store: Any, workflow_id: str) -> dict[str, dict[str, Any]]:
    """The run's batches that have not ended: id -> its ``ai.batch.submitted`` detail."""
    found: dict[str, dict[str, Any]] = {}
    for event in await store.list_events(workflow_id):
        if event.type == "ai.batch.submitted" and event.detail:
            detail = json.loads(event.detail)
            found[detail["batch_id"]] = detail
        elif event.type == "ai.batch.ended" and event.detail:
            found.pop(json.loads(event.detail)["batch_id"], None)
    return found


async def cancel_open_batches(
    providers: Providers, store: Any, workflow_ids: list[str], *, clock: Clock | None = None
) -> int:
    """Cancel the provider batches these (cancelled) runs submitted and did not finish;
    how many. The caller (`app.cancel`) waits for this, so a cancel failing
    transiently is tried again only briefly (`_cancel_soon`, on `clock`); one that
    still fails never fails the cancel: it is logged and recorded on the run as
    ``ai.batch.cancel_failed``, as `WorkflowAI.batch` records one, so the run's
    record shows the batch may still be running, billed. A batch that had ended
    (the provider refused to cancel it as such) needs no cancel.

    The results of requests such a batch completed are not recorded: the provider
    has them only once it finished cancelling, and a cancelled run records no
    more steps (a batch cancelled at `max_wait` is waited for and recorded)."""
    clock = SystemClock() if clock is None else clock
    cancelled = 0
    for wid in workflow_ids:
        for batch_id, pname in (await open_batches(store, wid)).items():
            try:
                provider = providers.resolve(f"{pname}:batch")[1]
                cancelled += await _cancel_soon(provider, batch_id, clock)
            except Exception as exc:  # the run is cancelled either way
                await _record_cancel_failed(store, clock.now(), wid, batch_id, pname, exc)
    return cancelled


async def _cancel_soon(provider: Provider, batch_id: str, clock: Clock) -> bool:
    """Cancel the batch (True), or find it ended (False). A transient failure (429,
    5xx, a timeout) is tried again up to `_CANCEL_NOW_TRIES` times, waiting 0.5 s,
    1 s, 2 s or the provider's retry-after if longer, each cut to what is left of
    `_CANCEL_NOW_WAIT`: a cancel call must not hang on a provider's outage."""
    waited, backoff, attempt = 0.0, 0.5, 1
    while True:
        try:
            return await _cancel_or_ended(provider, batch_id)
        except ProviderError as exc:
            left = _CANCEL_NOW_WAIT - waited
            if not exc.retryable or attempt >= _CANCEL_NOW_TRIES or left <= 0:
                raise
            wait = min(max(backoff, exc.wait_from(clock.now()).retry_after or 0.0), left)
        await clock.sleep(wait)
        waited, backoff, attempt = waited + wait, backoff * 2, attempt + 1


async def _cancel_or_ended(provider: Provider, batch_id: str) -> bool:
    """Cancel the batch: True; False if the provider refused because it had already
    ended (OpenAI answers 409 for a completed batch). That refusal is no failure:
    the batch bills no more and its results are there, so it is not retried nor
    recorded as ``ai.batch.cancel_failed``."""
    try:
        await provider.batch_cancel(batch_id)
        return True
    except ProviderError as exc:
        if exc.status not in _REFUSED_AS_ENDED:
            raise
        refused = exc
    try:
        ended = (await provider.batch_status(batch_id)).state != "pending"
    except ProviderError:
        ended = False  # not known: the refusal stands
    if not ended:
        raise refused
    log.info("batch %s had ended when tether cancelled it (%s)", batch_id, refused)
    return False


async def _record_cancel_failed(
    store: Any, at: datetime, wid: str, batch_id: str, pname: str, exc: Exception
) -> None:
    """Log the cancel that failed and record it on the cancelled run, unfenced (a
    fenced write to a cancelled run is refused), as a cancelled batch stage records
    ``stage.cancelled``. A record that fails is logged: the run is cancelled."""
    log.warning(
        "could not cancel batch %s of run %s at %s: %s; it may still be running, billed: "
        "cancel it there",
        batch_id,
        wid,
        pname,
        exc,
    )
    detail = json.dumps({"batch_id": batch_id, "provider": pname, "error": str(exc)})
    event = NewEvent("ai.batch.cancel_failed", batch_id, detail)
    try:
        await store.append_events(Fence(wid), [event], at)
    except Exception as err:
        log.warning("could not record on run %s that batch %s may bill on: %s", wid, batch_id, err)


def _request(
    prompt: str | None,
    messages: Sequence[Message | dict[str, Any]] | None,
    system: str | None,
    temperature: float | None,
    max_tokens: int | None,
    stop: str | Sequence[str] | None,
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    options: dict[str, Any] | None,
) -> TextRequest:
    """The request the arguments make, or `InvalidArgumentError` saying what to pass
    instead (before any provider is called)."""
    if (prompt is None) == (messages is None):
        raise InvalidArgumentError(
            "pass the prompt as prompt='...' or the conversation as messages=[...], one of them"
        )
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidArgumentError(f"prompt must be a str, got {type(prompt).__name__} {prompt!r}")
    fields = {
        "messages": [{"role": "user", "content": prompt}] if prompt is not None else messages,
        "system": system,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "stop": [stop] if isinstance(stop, str) else stop,
        "tools": tools,
        "tool_choice": tool_choice,
        "options": {} if options is None else options,
    }
    try:
        request = TextRequest.model_validate(fields)
    except ValidationError as exc:
        raise InvalidArgumentError(f"bad AI call arguments: {_argument_errors(exc)}") from None
    _encodable(request.model_dump(exclude_defaults=True), "the request's")
    return request


def _encodable(value: Any, where: str, path: str = "") -> None:
    """`InvalidArgumentError` naming the text in `value` UTF-8 cannot encode (a lone
    surrogate such as "\\ud800", left by a bad decode or a split emoji), before
    anything is sent: the call log's JSON raised a raw PydanticSerializationError."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"{where}{' ' + path if path else ''} holds {value[exc.start]!r} at "
                f"character {exc.start}, a lone surrogate UTF-8 cannot encode (no provider "
                "takes it); remove or replace it, e.g. text.encode('utf-8', 'replace').decode()"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _encodable(key, where, f"{path} key" if path else "a key")
            _encodable(item, where, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            _encodable(item, where, f"{path}[{n}]")


# what to pass instead, by argument
_HINTS = {
    "messages": "messages=[{'role': 'user', 'content': '...'}, ...], one message at least, "
    "each with a role (system, user, assistant or tool) and a content",
    "system": "a str, e.g. system='Be brief.'",
    "temperature": "a finite number from 0 to 2, e.g. temperature=0.2",
    "max_tokens": "an integer >= 1, e.g. max_tokens=500",
    "stop": "a str or a list of str, e.g. stop=['END']",
    "tools": "a list of tool definitions (dicts)",
    "options": "a dict the provider gets as it is, e.g. options={'top_p': 0.9}",
}


def _argument_errors(exc: ValidationError) -> str:
    said: list[str] = []
    hinted: set[str] = set()
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "value"
        arg = str(err["loc"][0]) if err["loc"] else ""
        hint = _HINTS.get(arg) if arg not in hinted else None
        hinted.add(arg)
        msg = err["msg"].removeprefix("Value error, ")  # a validator's own words
        said.append(f"{where}: {msg}" + (f"; pass {hint}" if hint else ""))
    return "; ".join(said)


def _batch_items(requests: Sequence[str | dict[str, Any]]) -> list[BatchItem]:
    if isinstance(requests, str) or not requests:
        raise InvalidArgumentError("batch takes a non-empty list of prompts or request dicts")
    items = []
    for i, req in enumerate(requests):
        if isinstance(req, str):
            req = {"custom_id": str(i), "prompt": req}
        if not isinstance(req, dict) or not isinstance(req.get("custom_id"), str):
            raise InvalidArgumentError(
                f"batch request {i} must be a prompt or a dict with a str 'custom_id' and "
                f"'prompt' or 'messages', got {req!r}"
            )
        fields = _batch_options(i, {k: v for k, v in req.items() if k != "custom_id"})
        try:
            request = _request(
                fields.pop("prompt", None),
                fields.pop("messages", None),
                fields.pop("system", None),
                fields.pop("temperature", None),
                fields.pop("max_tokens", None),
                None,
                None,
                None,
                fields,
            )
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"batch request {i}: {exc} (the request with custom_id {req['custom_id']!r})"
            ) from None
        _encodable(req["custom_id"], f"batch request {i}'s custom_id")
        items.append(BatchItem(custom_id=req["custom_id"], request=request))
    _unique_ids(items)
    return items


def _batch_options(i: int, fields: dict[str, Any]) -> dict[str, Any]:
    """A batch request's fields with `extra_body` merged in, as the SDK merges it
    into a call's body: left as it was, it went into the batch's request as a field
    named "extra_body", which the provider refuses. The SDK's per-request options
    (headers, query, timeout) have no request of tether's to apply to: refused."""
    own = sorted(k for k in ("extra_headers", "extra_query", "timeout") if k in fields)
    if own:
        raise InvalidArgumentError(
            f"batch request {i} sets {', '.join(own)}, which apply to an HTTP request "
            "tether sends; a batch's requests are sent by the provider: leave them out"
        )
    extra = fields.pop("extra_body", None)
    if extra is not None and not isinstance(extra, dict):
        raise InvalidArgumentError(
            f"batch request {i}: extra_body must be a dict of body fields, got {extra!r}"
        )
    return {**fields, **(extra or {})}


def _unique_ids(items: list[BatchItem]) -> None:
    """Refuse a custom_id used twice, naming it and its requests: results are keyed by
    it, so one of the two answers would be lost."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        j = first.setdefault(item.custom_id, i)
        if j != i:
            raise InvalidArgumentError(
                f"batch requests {j} and {i} share custom_id {item.custom_id!r}; results are "
                "keyed by it, so give each request its own"
            )


def _schema_adapter(schema: Any) -> tuple[_Answer, dict[str, Any]]:
    """The validator of `schema` and the JSON Schema the model is asked to follow."""
    value = _not_a_type(schema)
    if value is not None:
        raise InvalidArgumentError(f"schema must be a type, got {value}")
    try:
        adapter = TypeAdapter(schema)
    except Exception as exc:  # pydantic raises several kinds for a non-type
        raise InvalidArgumentError(
            f"schema must be a pydantic model or a type pydantic can validate, got {schema!r} "
            f"({exc})"
        ) from None
    try:
        json_schema = adapter.json_schema()
        if json_schema.get("type") == "object":
            return _Answer(adapter, wrapped=False), json_schema
        # OpenAI's structured outputs and Anthropic's tool input take an object at the
        # top: a list, a scalar or a union is asked for as {"value": ...}
        answer = _TYPED_DICT(_schema_name(schema), {"value": schema})
        wrapper: TypeAdapter[Any] = TypeAdapter(answer)
        return _Answer(wrapper, wrapped=True, bare=adapter), wrapper.json_schema()
    except Exception as exc:  # a field pydantic validates but cannot describe (a callable)
        raise InvalidArgumentError(
            f"schema {schema!r} has no JSON Schema to send to the model ({exc}); use fields "
            "of JSON types (str, int, float, bool, lists, dicts, nested models)"
        ) from None


def _not_a_type(schema: Any) -> str | None:
    """What a value passed as `schema` is, and what to pass instead; None for a type.
    pydantic takes a str as a forward reference and says to call `.rebuild()`, and
    a dict or an instance fails with its own internals."""
    if isinstance(schema, str):
        return f"the str {schema!r}: pass the class itself (schema={schema}), not its name"
    if isinstance(schema, BaseModel):
        name = type(schema).__name__
        return f"an instance {schema!r}: pass the class (schema={name}), not an object of it"
    if isinstance(schema, dict):
        return (
            f"a dict {schema!r}: declare a pydantic model with those fields "
            "(class Answer(BaseModel): label: str) and pass schema=Answer"
        )
    if isinstance(schema, list | tuple | set):
        return f"a {type(schema).__name__} {schema!r}: for a list of X pass schema=list[X]"
    return None


_TYPED_DICT: Any = TypedDict  # its functional form, called with a name made at run time


class _Answer:
    """Reads a model's answer as the schema asked for (unwrapped if it was wrapped).

    A list, scalar or union asked for inside ``{"value": ...}`` is also taken bare
    when that is what came back: a model without structured outputs (an
    OpenAI-compatible server, JSON mode) or a scripted `FakeModel` answers
    ``[...]`` for a list, and every attempt was refused (and billed) for a
    missing wrapper, as "value: Input should be an object"."""

    def __init__(
        self, adapter: TypeAdapter[Any], *, wrapped: bool, bare: TypeAdapter[Any] | None = None
    ) -> None:
        self._adapter = adapter
        self._wrapped = wrapped
        self._bare = bare

    def validate_json(self, text: str) -> Any:
        try:
            value = self._adapter.validate_json(text)
        except ValidationError:
            if self._bare is None:
                raise
            try:
                return self._bare.validate_json(text)
            except ValidationError:
                pass
            raise  # as asked: the error says what the wrapped answer lacks
        return value["value"] if self._wrapped else value


def _no_object(reply: ModelReply, max_tokens: int | None, invalid: str) -> str:
    """Why `reply` gave no object, in the words that say what to do: a refusal, an
    answer cut off at max_tokens or an empty one read only as pydantic's "Invalid
    JSON: EOF while parsing", the model's words and the limit nowhere."""
    if reply.refusal or reply.finish_reason == "refusal":  # OpenAI's field, Anthropic's stop
        return f"the model refused: {reply.refusal or reply.text!r}"
    if reply.finish_reason in ("length", "max_tokens"):
        limit = f"max_tokens={max_tokens}" if max_tokens else "max_tokens (the provider's default)"
        return f"the answer was cut off at {limit}: raise it ({invalid})"
    if not reply.text.strip():
        return f"the answer was empty (finish_reason {reply.finish_reason!r})"
    return invalid


def _schema_name(schema: Any) -> str:
    """The schema's name as OpenAI (^[a-zA-Z0-9_-]+$) and Anthropic take it: ASCII
    only, as `str.isalnum` alone let 'Réponse' through, which both refused (400)."""
    name = getattr(schema, "__name__", "answer")
    kept = "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in name)
    return kept[:64] or "answer"


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000


def _limits(budget: Budget) -> dict[str, Any]:
    return {"max_usd": budget.max_usd, "max_tokens": budget.max_tokens}


def _pauses(budget: Budget | None) -> bool:
    """Whether a ``budget.raise`` can raise `budget` (it pauses the run at its line)."""
    return budget is not None and budget.on_exceed == "pause"


def _said(budget: Budget, of: str, now: datetime) -> dict[str, Any]:
    """What a budget event records of the budget: its limits, whose it is and, with a
    period, since when it counts (so each period warns once)."""
    since = budget.since(now)
    return {**_limits(budget), "budget_of": of,
            **({} if since is None else {"since": since.isoformat()})}  # fmt: skip


def _limits_key(budget: Budget, of: str, now: datetime) -> str:
    return json.dumps(_said(budget, of, now), sort_keys=True)


def _positive(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(f"{what} must be seconds > 0, got {value!r}")
    return float(value)
