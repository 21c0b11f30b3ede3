"""Running a pipeline on a `Workflow`: groups in order, stages as durable sections.

A stage's own code runs as workflow code under the name scope ``<stage id>/``
(its steps are ``extract/fetch``, its waits ``extract/signal:x#1``), so
stages side by side never share a step name. Around it, steps outside any
scope mark the stage's life:

- ``stage:<id>.start`` records the attempt and writes `stage.started`; a later
  drive that finds it recorded (the stage parked, or its process died) writes
  `stage.resumed` with the same detail, so each drive of a stage is visible
  (a tracer opens the stage's span on either);
- ``stage:<id>`` records the output (inline, or when large a blob key with the
  sha256 and size of the bytes written, checked when they are read back) and
  writes `stage.completed`: once it is recorded, the stage never runs again;
  an attempt that fails (its input does not fit, its code raises, or its
  recorded output cannot be read back) writes `stage.failed`;
- a batch stage adds ``stage:<id>.suspended`` (its state) and one
  ``stage:<id>.check`` per check, between durable sleeps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from .._attach import attach
from .._fanout import ITEM_PATH, ForEachError, ItemStatus
from .._run_state import NAME_SCOPE, name_scope
from ..errors import StoreError, explain_validation
from ..serde import to_json_data
from ..store import EventRow, NewEvent
from ._context import StageContext, stage_prefix
from ._errors import StageError, StageFailedError, StageTimeoutError, not_json
from ._outcomes import Failed, NotReady, Ready, Suspend
from ._run_input import PipelineRun
from ._stage import Stage

if TYPE_CHECKING:
    from .._workflow import Workflow


class Plan(Protocol):
    """What an execution reads of its pipeline (`Pipeline` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def input(self) -> type[BaseModel] | None: ...
    @property
    def output(self) -> type[BaseModel] | None: ...
    @property
    def inline_limit(self) -> int: ...
    @property
    def groups(self) -> tuple[tuple[Stage[Any, Any, Any], ...], ...]: ...


__all__ = ["Execution", "start_key"]

AnyStage = Stage[Any, Any, Any]


def start_key(stage_id: str) -> str:
    return f"stage:{stage_id}.start"


def _detail(s: AnyStage, group: int, attempt: int) -> dict[str, Any]:
    """What `stage.started` and `stage.resumed` say of a stage (a tracer's span attributes)."""
    return {"stage": s.id, "group": group, "attempt": attempt, "mode": s.mode}


def _event(kind: str, stage_id: str, **detail: Any) -> NewEvent:
    return NewEvent(kind, stage_id, json.dumps({"stage": stage_id, **detail}, default=str))


class _Check(BaseModel):
    """One recorded check of a batch stage."""

    kind: str  # ready | waiting | failed | expired
    output: Any = None
    error: str | None = None
    sleep: float = 0.0


class Execution:
    """One drive of one pipeline run."""

    def __init__(self, pipeline: Plan, wf: Workflow, run: PipelineRun) -> None:
        self.p = pipeline
        self.wf = wf
        self.run_input = run
        self.outputs: dict[str, Any] = {}  # stage id -> output, as stages complete
        self.attempts: dict[str, int] = {}  # stage id -> the attempt its record is from
        self.group_of = {s.id: n for n, g in enumerate(pipeline.groups, 1) for s in g}

    async def run(self) -> Any:
        plan: dict[str, Any] = await self.wf.step("pipeline.plan", self._plan)
        await self._replan(plan)
        value: Any = self._typed_input()
        for n, group in enumerate(self.p.groups, 1):
            value = await (self._stage(group[0], n, value) if len(group) == 1
                           else self._parallel(group, n, value))  # fmt: skip
        if self.p.output is None:
            if len(self.p.groups[-1]) > 1:
                return to_json_data(value, what=f"the output of pipeline {self.p.name!r}")
            return value
        return self._pipeline_output(value)

    def _pipeline_output(self, value: Any) -> Any:
        """The last group's output as the pipeline's declared output; a constraint only
        run time can check fails with an error that names the pipeline and its last group."""
        assert self.p.output is not None
        last = [s.id for s in self.p.groups[-1]]
        try:
            return self.p.output.model_validate(
                to_json_data(value, what=f"the output of pipeline {self.p.name!r}")
            )
        except ValidationError as exc:
            raise StageError(
                f"pipeline {self.p.name!r}: what its last group {last} gave does not fit its "
                f"output {self.p.output.__name__}: {explain_validation(exc)}; fix the stage, "
                f"then rerun from it: app.rerun_from({self.wf.workflow_id!r}, {last[0]!r})"
            ) from None

    def _typed_input(self) -> Any:
        raw = self.run_input.input
        return raw if self.p.input is None else self.p.input.model_validate(raw)

    async def _plan(self) -> dict[str, Any]:
        groups = [[s.id for s in g] for g in self.p.groups]
        attach(NewEvent("pipeline.planned", self.p.name, json.dumps({"groups": groups})))
        return {"groups": groups}

    async def _replan(self, plan: dict[str, Any]) -> None:
        """A run resumed by a compatible release whose stages differ from those it was
        planned with records the new plan once, so its record shows the stages it runs."""
        groups = [[s.id for s in g] for g in self.p.groups]
        if plan.get("groups") == groups:
            return
        digest = hashlib.sha256(json.dumps(groups).encode()).hexdigest()[:12]
        replanned: dict[str, Any] = await self.wf.step(f"pipeline.plan.{digest}", self._plan)
        del replanned

    async def _parallel(self, group: tuple[AnyStage, ...], n: int, value: Any) -> dict[str, Any]:
        async def one(s: AnyStage) -> Any:
            ITEM_PATH.set(())  # a stage names its steps by its own scope, not by item index
            return await self._stage(s, n, value)

        try:
            summary = await self.wf.for_each(group, one, max_parallel=len(group))
        except ForEachError as exc:
            await self._stopped(group, exc)
            raise exc.first_error from None
        return {s.id: out for s, out in zip(group, summary.values, strict=True)}

    async def _stopped(self, group: tuple[AnyStage, ...], exc: ForEachError) -> None:
        """Record `stage.cancelled` for the stages of the group that a sibling's failure
        stopped before they ended (one parked on a wait or a batch)."""
        failed = [s.id for s, r in zip(group, exc.summary.results, strict=True)
                  if r.status is ItemStatus.REJECTED]  # fmt: skip
        why = f"stage {failed[0]!r} of its group failed"
        for s, r in zip(group, exc.summary.results, strict=True):
            if r.status is not ItemStatus.SKIPPED or s.id not in self.attempts:
                continue
            sus = self.wf.recorded(f"stage:{s.id}.suspended")
            if sus is not None:  # its batch is out: stop it, or it runs on, billed
                await self._cancel_batch(s, sus["state"], why)
            else:
                detail = {"stage": s.id, "attempt": self.attempts[s.id], "reason": why}
                await self.wf.log_event_now("stage.cancelled", s.id, detail)

    # -- one stage -----------------------------------------------------------------------

    async def _stage(self, s: AnyStage, n: int, value: Any) -> Any:
        done = self.wf.recorded(f"stage:{s.id}")
        if done is not None:
            return await self._load_output(s, done)
        resumed = self.wf.recorded(start_key(s.id)) is not None
        started: dict[str, Any] = await self.wf.step(start_key(s.id), partial(self._start, s, n))
        attempt = int(started["attempt"])
        self.attempts[s.id] = attempt
        if resumed and not self.wf.compensating:
            await self.wf.log_event_now("stage.resumed", s.id, _detail(s, n, attempt))
        t0 = time.monotonic()
        try:  # a bad input fails the stage too: it is recorded as this stage's failure
            ctx = self._context(s, n, value, attempt, resumed)
            if s.mode == "batch":
                out = await self._batch(s, ctx)
            else:
                with name_scope(s.id):
                    out = await s.fn(ctx)
            out = self._validate_output(s, out)
        except StoreError:
            raise  # the run is not ours to write (fenced out) or the store is down
        except Exception as exc:
            await self._failed(s.id, attempt, exc)
            raise
        record: dict[str, Any] = await self.wf.step(
            f"stage:{s.id}", partial(self._finish, s, attempt, out, t0)
        )
        del record
        self.outputs[s.id] = out
        return out

    def _context(
        self, s: AnyStage, n: int, value: Any, attempt: int, resumed: bool
    ) -> StageContext[Any, Any]:
        return StageContext(
            self.wf,
            s,
            input=self._stage_input(s, value),
            config=self._stage_config(s),
            group=n,
            attempt=attempt,
            outputs=partial(self._output_of, n),
            attempts=self._attempt_of,
            written=self._written_counter(s.id, attempt, resumed),
        )

    async def _failed(self, stage_id: str, attempt: int, exc: Exception) -> None:
        await self.wf.log_event_now(
            "stage.failed", stage_id, {"stage": stage_id, "attempt": attempt, "error": repr(exc)}
        )

    async def _start(self, s: AnyStage, n: int) -> dict[str, Any]:
        attempt = self.wf.attempt
        attach(NewEvent("stage.started", s.id, json.dumps(_detail(s, n, attempt))))
        return {"attempt": attempt, "group": n}

    async def _finish(self, s: AnyStage, attempt: int, out: Any, t0: float) -> dict[str, Any]:
        data = to_json_data(out, what=f"the output of stage {s.id!r}")
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        record: dict[str, Any] = {"attempt": attempt}
        body = text.encode()
        if len(body) > self.p.inline_limit:
            key = f"{stage_prefix(self.wf.workflow_id, s.id, attempt)}output.json"
            await self.wf.blobs.put(key, body)  # before the record that names it
            record["blob"] = key
            # what was written, so a read gets these bytes or an error: a blob truncated,
            # damaged or overwritten (by a writer fenced out since) read back as a value
            record["sha256"] = hashlib.sha256(body).hexdigest()
            record["size"] = len(body)
        else:
            record["output"] = data
        seconds = round(time.monotonic() - t0, 6)
        attach(_event("stage.completed", s.id, attempt=attempt, seconds=seconds,
                      blob=record.get("blob"), bytes=len(body)))  # fmt: skip
        return record

    async def _load_output(self, s: AnyStage, done: dict[str, Any]) -> Any:
        attempt = int(done.get("attempt", 1))
        self.attempts[s.id] = attempt
        try:
            out = await self._read_output(s, done)
        except StageError as exc:
            await self._failed(s.id, attempt, exc)
            raise
        self.outputs[s.id] = out
        return out

    async def _read_output(self, s: AnyStage, done: dict[str, Any]) -> Any:
        """A completed stage's recorded output, typed; when it cannot be read back (its
        blob deleted or damaged, or its model changed since), a StageError that says
        where it is, what is wrong and how to recompute it, not a bare decode error.
        A blob is checked against the sha256 recorded when it was written (a record of
        an older tether has none: its blob is only decoded and validated)."""
        key = done.get("blob")
        where = "the run's record" if key is None else f"blob {key!r}"
        if key is None:
            data = done.get("output")
        else:
            body = await self.wf.blobs.get(key)
            if body is None:
                raise self._unreadable(s, where, "the blob store no longer has")
            body = bytes(body)
            damage = _damage(body, done.get("sha256"), done.get("size"))
            if damage is not None:
                raise self._unreadable(s, where, f"is damaged: {damage}")
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                why = f"is damaged: {len(body)} bytes that are not UTF-8 JSON ({exc})"
                raise self._unreadable(s, where, why) from None
        try:
            return s.output.model_validate(data)
        except ValidationError as exc:
            shown = explain_validation(exc)  # quotes the data: a large output is cut short
            shown = shown if len(shown) <= 400 else f"{shown[:400]}..."
            why = f"does not fit its output {s.output.__name__} ({shown})"
            raise self._unreadable(s, where, why) from None

    def _unreadable(self, s: AnyStage, where: str, why: str) -> StageError:
        run = self.wf.workflow_id
        return StageError(
            f"the output of stage {s.id!r} of run {run!r} is recorded at {where}, which {why}; "
            f"recompute it by rerunning from this stage: app.rerun_from({run!r}, {s.id!r}) "
            f"or `tether runs rerun {run} --from {s.id}`"
        )

    def _validate_output(self, s: AnyStage, out: Any) -> Any:
        """The output as it is recorded and as a replay reads it back: dumped to JSON data
        and validated, an instance of the model too. One mutated after it was built (or
        made by `model_construct`) skipped its checks; trusted, it was recorded as done,
        then failed the run unnamed, or its replay; one holding what JSON cannot hold
        failed inside the stage's output step, leaving no error on the stage."""
        try:
            data = to_json_data(out, what=f"the output of stage {s.id!r}")
        except TypeError as exc:  # NotSerializableError is one
            raise StageError(not_json(s.id, s.output.__name__, out, exc)) from None
        try:
            return s.output.model_validate(data)
        except ValidationError as exc:
            raise StageError(
                f"stage {s.id!r} returned a value that is not its output {s.output.__name__}: "
                f"{explain_validation(exc)}"
            ) from None

    def _stage_input(self, s: AnyStage, value: Any) -> Any:
        if s.input is None:
            return value
        try:
            return TypeAdapter(s.input).validate_python(
                to_json_data(value, what=f"the input of stage {s.id!r}")
            )
        except ValidationError as exc:
            raise StageError(
                f"the input of stage {s.id!r} does not fit {s.input.__name__}: "
                f"{explain_validation(exc)}"
            ) from None

    def _stage_config(self, s: AnyStage) -> Any:
        raw = self.run_input.config.get(s.id, {})
        return raw if s.config is None else s.config.model_validate(raw)

    def _output_of(self, group: int, stage_id: str) -> tuple[bool, Any]:
        """The output of `stage_id` as a stage of group `group` may read it: only from an
        earlier group (a sibling's would depend on which finished first)."""
        ran_in = self.group_of.get(stage_id)
        found = ran_in is not None and ran_in < group and stage_id in self.outputs
        return (found, self.outputs.get(stage_id) if found else None)

    def _attempt_of(self, stage_id: str) -> int:
        if stage_id in self.attempts:
            return self.attempts[stage_id]
        return self.wf.attempt

    def _written_counter(self, stage_id: str, attempt: int, resumed: bool) -> Any:
        """How many numbered log/progress events this stage attempt already wrote: none if
        it starts in this drive, else read once from the run's events."""
        cache: list[int] = []

        async def written() -> int:
            if not resumed:
                return 0
            if not cache:
                cache.append(await self._count_written(stage_id, attempt))
            return cache[0]

        return written

    async def _count_written(self, stage_id: str, attempt: int) -> int:
        return written_lines(await self.wf.list_events(), stage_id, attempt)

    # -- async-batch stages ------------------------------------------------------------------

    async def _batch(self, s: AnyStage, ctx: StageContext[Any, Any]) -> Any:
        key = f"stage:{s.id}.suspended"
        sus = self.wf.recorded(key)
        if sus is None:
            with name_scope(s.id):
                asked = await s.fn(ctx)
            if not isinstance(asked, Suspend):
                raise StageError(
                    f"batch stage {s.id!r}: submit must return tether.Suspend(state, ...), "
                    f"got {type(asked).__name__}"
                )
            sus = await self.wf.step(key, partial(self._suspended, s, ctx.attempt, asked))
        for k in itertools.count(1):
            check: _Check = await self.wf.step(
                f"stage:{s.id}.check",
                partial(self._check, s, ctx, sus, k, NAME_SCOPE.get()),
                result_type=_Check,
            )
            if check.kind == "ready":
                return check.output
            if check.kind == "failed":
                raise StageFailedError(f"batch stage {s.id!r} failed: {check.error}")
            if check.kind == "expired":
                await self._cancel_batch(s, sus["state"], "max_wait")
                raise StageTimeoutError(
                    f"batch stage {s.id!r} was not ready after max_wait={sus['max_wait']:g} s; "
                    "its batch was cancelled"
                )
            await self.wf.sleep(check.sleep)

    async def _suspended(self, s: AnyStage, attempt: int, asked: Suspend) -> dict[str, Any]:
        now = self._now()
        record = {
            "state": to_json_data(asked.state, what=f"the state of batch stage {s.id!r}"),
            "poll_every": asked.poll_every,
            "max_wait": asked.max_wait,
            "at": now.isoformat(),
        }
        attach(_event("stage.suspended", s.id, attempt=attempt, state=record["state"],
                      poll_every=asked.poll_every, max_wait=asked.max_wait))  # fmt: skip
        return record

    async def _check(
        self, s: AnyStage, ctx: StageContext[Any, Any], sus: dict[str, Any], k: int, scope: str
    ) -> _Check:
        assert s.check_fn is not None
        # the steps a check makes (ctx.ai calls) are named by the check they belong to:
        # under one name, a later check would be answered what the first one got; and
        # in the stage's scope, not under the step this runs in, so they count for it
        with name_scope(f"{s.id}/check#{k}", within=scope):
            answer = await s.check_fn(sus["state"], ctx)
        if isinstance(answer, Ready):
            out = self._validate_output(s, answer.output)
            return _Check(
                kind="ready", output=to_json_data(out, what=f"the output of stage {s.id!r}")
            )
        if isinstance(answer, Failed):
            return _Check(kind="failed", error=str(answer.error))
        if not isinstance(answer, NotReady):
            raise StageError(
                f"batch stage {s.id!r}: check must return tether.Ready, tether.NotReady or "
                f"tether.Failed, got {type(answer).__name__}"
            )
        deadline = datetime.fromisoformat(sus["at"]) + timedelta(seconds=sus["max_wait"])
        left = (deadline - self._now()).total_seconds()
        if left <= 0:
            return _Check(kind="expired")
        wait = answer.next_check_in or sus["poll_every"]
        attach(_event("stage.polled", s.id, attempt=ctx.attempt, next_check_in=min(wait, left)))
        return _Check(kind="waiting", sleep=min(wait, left))

    async def _cancel_batch(self, s: AnyStage, state: Any, reason: str) -> None:
        async def cancel() -> bool:
            if s.cancel_fn is not None:
                await s.cancel_fn(state)
            attach(_event("stage.cancelled", s.id, attempt=self.wf.attempt, reason=reason))
            return True

        done: bool = await self.wf.step(f"stage:{s.id}.cancel", cancel)
        del done

    def _now(self) -> datetime:
        return self.wf.clock.now()


def _damage(body: bytes, sha256: Any, size: Any) -> str | None:
    """How `body` differs from the bytes recorded as written (None: it is them)."""
    if not isinstance(sha256, str):
        return None  # recorded by an older tether
    got = hashlib.sha256(body).hexdigest()
    if got == sha256:
        return None
    shas = f"(sha256 {got[:16]}..., written {sha256[:16]}...)"
    if isinstance(size, int) and len(body) != size:
        return f"it holds {len(body)} bytes, not the {size} written {shas}"
    return f"its {len(body)} bytes are not those written {shas}"


def written_lines(events: Sequence[EventRow], stage_id: str, attempt: int) -> int:
    """The number of the last log/progress line of the stage attempt that still stands.
    A rerun from a step inside the stage keeps its attempt but forgets the lines
    written from that step on (they are written again as the code runs again):
    counted, they made the rerun's new lines look written and dropped them."""
    lines: list[tuple[int, int]] = []  # (event number, line number)
    starts: dict[str, list[tuple[int, int]]] = {}  # step -> (event number, round) of starts
    round_at = 0
    for e in events:  # in the order written
        if e.type == "step.started" and e.message:
            starts.setdefault(e.message, []).append((e.seq, round_at))
        elif e.type in ("stage.log", "stage.progress") and e.detail:
            d = json.loads(e.detail)
            if d.get("stage") == stage_id and d.get("attempt") == attempt:
                lines.append((e.seq, int(d.get("seq") or 0)))
        elif e.type == "run.rerun_from" and e.message in starts:
            seen = starts[e.message]  # from its first start in the round it last began
            first = min(seq for seq, r in seen if r == seen[-1][1])
            lines = [line for line in lines if line[0] < first]
            round_at = e.seq
    return max((n for _, n in lines), default=0)
