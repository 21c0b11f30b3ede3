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

import asyncio
import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from .._attach import attach
from .._durations import seconds_of
from .._failure import error_text
from .._fanout import ITEM_PATH, ForEachError, ItemStatus
from .._run_state import NAME_SCOPE, name_scope
from ..ai import batches_out, stop_batches
from ..errors import InvalidArgumentError, StoreError, explain_validation
from ..serde import dump_json, to_json_data, validate
from ..store import NewEvent
from ._context import StageContext, place_folder, stage_prefix
from ._errors import StageError, StageFailedError, StageTimeoutError, did_you_mean, not_json
from ._outcomes import Failed, NotReady, Ready, Suspend
from ._records import (
    Stopped,
    blob_damage,
    encoded,
    first_failure,
    own_scope,
    shape_of,
    written_lines,
)
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


__all__ = ["Execution", "start_key", "unread_key"]

# the for_each item path a step key ends with (``[0][2]``), before its occurrence (``#2``)
_ITEMS_AT_END = re.compile(r"((?:\[\d+\])*)(?:#\d+)?$")

AnyStage = Stage[Any, Any, Any]


def start_key(stage_id: str) -> str:
    return f"stage:{stage_id}.start"


def unread_key(stage_id: str) -> str:
    """The step a drive records when the output stage `stage_id` recorded cannot be read
    back: the point a rerun from a later stage (never started) goes on from."""
    return f"stage:{stage_id}.unread"


def _detail(s: AnyStage, group: int, attempt: int, at: dict[str, str]) -> dict[str, Any]:
    """What `stage.started` and `stage.resumed` say of a stage (a tracer's span attributes)."""
    return {"stage": s.id, "group": group, "attempt": attempt, "mode": s.mode, **at}


def _event(kind: str, stage_id: str, **detail: Any) -> NewEvent:
    return NewEvent(kind, stage_id, json.dumps({"stage": stage_id, **detail}, default=str))


class _Check(BaseModel):
    """One recorded check of a batch stage."""

    kind: str  # ready | waiting | failed | expired
    output: Any = None  # a ready output, when small; else where it was written:
    blob: str | None = None
    sha256: str | None = None
    size: int | None = None
    error: str | None = None
    sleep: float = 0.0


class Execution:
    """One drive of one pipeline run.

    A pipeline is also called from a workflow's code: in each item of a `for_each`,
    in a step, or more than once in a row. Its steps are then named as any step
    there (``stage:read[2]``, ``process/stage:read``), so each lookup of what a
    stage recorded uses the key its step has (`_key`), and its files go to a folder
    of that place, not over those of another call.
    """

    def __init__(self, pipeline: Plan, wf: Workflow, run: PipelineRun) -> None:
        self.p = pipeline
        self.wf = wf
        self.run_input = run
        self.outputs: dict[str, Any] = {}  # stage id -> output, as stages complete
        self.attempts: dict[str, int] = {}  # stage id -> the attempt its record is from
        self.put: dict[str, str] = {}  # blob key -> sha256 of what this drive wrote there
        # stage id -> the provider batches its ctx.ai.batch calls have out (parallel groups)
        self.out: dict[str, dict[str, Any]] = {}
        self.group_of = {s.id: n for n, g in enumerate(pipeline.groups, 1) for s in g}
        self.items = ITEM_PATH.get()  # the for_each items it was called in (outermost first)
        path = "".join(f"[{i}]" for i in self.items)
        ids = self.group_of  # its stage ids: another pipeline's records of them answer none
        self.own = own_scope(wf, pipeline.name, NAME_SCOPE.get() + path, run.model_dump_json(), ids)
        self.scope = NAME_SCOPE.get() + ("" if self.own is None else f"{self.own}/")
        self.path = path
        # where it was called from ("" for the run's own pipeline): its log lines say so,
        # and its files go to a folder of that place
        self.where = self.scope + path
        self.place = place_folder(self.where)
        # what each stage event says of that place: a reader keeps the stages of each
        # call apart (one stage id in two calls, or in another pipeline, is two stages)
        self.at = {"at": self.where} if self.where else {}

    def _key(self, name: str) -> str:
        """The key in the run's record of this execution's step `name`."""
        return f"{self.scope}{name}{self.path}"

    async def run(self) -> Any:
        if self.own is None:
            return await self._run()
        with name_scope(self.own):
            return await self._run()

    async def _run(self) -> Any:
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
            return validate(
                self.p.output, to_json_data(value, what=f"the output of pipeline {self.p.name!r}")
            )
        except ValidationError as exc:
            raise StageError(
                f"pipeline {self.p.name!r}: what its last group {last} gave does not fit its "
                f"output {self.p.output.__name__}: {explain_validation(exc)}; fix the stage, "
                f"then rerun from it: app.rerun_from({self.wf.workflow_id!r}, {last[0]!r})"
            ) from None

    def _typed_input(self) -> Any:
        raw = self.run_input.input
        return raw if self.p.input is None else validate(self.p.input, raw)

    async def _plan(self) -> dict[str, Any]:
        groups = [[s.id for s in g] for g in self.p.groups]
        detail = json.dumps({"groups": groups, **self.at})
        attach(NewEvent("pipeline.planned", self.p.name, detail))
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
        failed = asyncio.Event()  # set by the first stage of the group to fail

        async def one(s: AnyStage) -> Any:
            # a stage names its steps by its own scope, not by its index in the group
            ITEM_PATH.set(self.items)
            return await self._stoppable(s, n, value, failed)

        try:
            summary = await self.wf.for_each(group, one, max_parallel=len(group))
        except ForEachError as exc:
            await self._stopped(group, exc)
            raise first_failure(exc) from None
        return {s.id: out for s, out in zip(group, summary.values, strict=True)}

    async def _stoppable(self, s: AnyStage, n: int, value: Any, failed: asyncio.Event) -> Any:
        """Stage `s` of a parallel group, cancelled if a sibling fails first: left to run
        on (a long model call, an agent), it was billed for a run that had failed, whose
        failure waited for it, and which a rerun from the group runs again anyway. A
        batch stage is not: cut short between its submit and the record of it, its batch
        would run on unknown; it reaches its park, and its batch is cancelled then."""
        with batches_out() as self.out[s.id]:  # its wf.ai.batch calls' batches out
            task = asyncio.ensure_future(self._stage(s, n, value))
        halt = asyncio.ensure_future(failed.wait())
        try:
            waits = {task} if s.mode == "batch" else {task, halt}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise Stopped(s.id)
        exc = task.exception()
        if isinstance(exc, Exception) and not isinstance(exc, StoreError):
            failed.set()
        return task.result()

    async def _stopped(self, group: tuple[AnyStage, ...], exc: ForEachError) -> None:
        """Record `stage.cancelled` for the stages of the group that a sibling's failure
        stopped before they ended (working, or parked on a wait or a batch)."""
        failed = [s.id for s, r in zip(group, exc.summary.results, strict=True)
                  if r.status is ItemStatus.REJECTED and not isinstance(r.error, Stopped)]  # fmt: skip
        why = f"stage {failed[0]!r} of its group failed"
        for s, r in zip(group, exc.summary.results, strict=True):
            # one cut short may not have its start recorded yet: its attempt is the run's
            cut = isinstance(r.error, Stopped)
            if not cut and (r.status is not ItemStatus.SKIPPED or s.id not in self.attempts):
                continue
            sus = self.wf.recorded(self._key(f"stage:{s.id}.suspended"))
            if sus is not None:  # its batch is out: stop it, or it runs on, billed
                await self._cancel_batch(s, sus["state"], why)
            else:
                out = self.out.get(s.id, {})
                listed = list(out)
                await stop_batches(out)  # its ctx.ai.batch calls' too
                if cut:  # stopped before its replay listed a batch it had out: by its key
                    await self.wf.stop_open_batches(self._stage_step(s.id), besides=listed)
                attempt = self.attempts.get(s.id, self.wf.attempt)
                detail = {"stage": s.id, "attempt": attempt, "reason": why, **self.at}
                await self.wf.log_event_now("stage.cancelled", s.id, detail)

    def _stage_step(self, sid: str) -> Callable[[str], bool]:
        """Whether a step key is one of stage `sid`'s own code here: under its scope, in
        this execution's for_each item (an item path ``[i]...`` its key ends with)."""
        prefix = f"{self.scope}{sid}/"

        def mine(key: str) -> bool:
            items = _ITEMS_AT_END.search(key)
            return key.startswith(prefix) and items is not None and items[1].startswith(self.path)

        return mine

    # -- one stage -----------------------------------------------------------------------

    async def _stage(self, s: AnyStage, n: int, value: Any) -> Any:
        done = self.wf.recorded(self._key(f"stage:{s.id}"))
        if done is not None:
            return await self._load_output(s, done)
        # resumed: its start was answered from the record, not made now. Whether a start
        # is recorded under the stage's first key says nothing of the start this call
        # takes: a retried step around the pipeline starts it anew (``...start#2``), and
        # it read as both started and resumed in one drive (two spans, one cut short)
        ran: list[bool] = []
        started: dict[str, Any] = await self.wf.step(
            start_key(s.id), partial(self._start, s, n, ran)
        )
        resumed = not ran
        attempt = int(started["attempt"])
        self.attempts[s.id] = attempt
        if resumed and not self.wf.compensating:
            await self.wf.log_event_now("stage.resumed", s.id, _detail(s, n, attempt, self.at))
        t0 = time.monotonic()
        try:  # a bad input fails the stage too: it is recorded as this stage's failure
            ctx = self._context(s, n, value, attempt, resumed)
            if s.mode == "batch":
                out = await self._batch(s, ctx)
            else:
                with name_scope(s.id):
                    out = await s.fn(ctx)
            out = self._validate_output(s, out)
            data, body = self._recordable(s, out)
        except StoreError:
            raise  # the run is not ours to write (fenced out) or the store is down
        except Exception as exc:
            await self._failed(s.id, attempt, exc)
            if not isinstance(exc, StageError):  # its message names the stage already
                exc.add_note(self._where_failed(s))
            raise
        record: dict[str, Any] = await self.wf.step(
            f"stage:{s.id}", partial(self._finish, s, attempt, data, body, t0)
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
            input=self._stage_input(s, n, value),
            config=self._stage_config(s),
            group=n,
            attempt=attempt,
            outputs=partial(self._output_of, n),
            attempts=self._attempt_of,
            written=self._written_counter(s.id, attempt, resumed),
            groups=self.group_of,
            place=self.place,
            where=self.where,
        )

    def _where_failed(self, s: AnyStage) -> str:
        """A note for an error a stage's code raised: its message (the run's last error)
        is the stage's own and names no stage; the note shows in its traceback."""
        run = self.wf.workflow_id
        return (
            f"raised in stage {s.id!r} of pipeline {self.p.name!r} (run {run!r}); after a "
            f"fix, rerun from it: app.rerun_from({run!r}, {s.id!r})"
        )

    async def _failed(self, stage_id: str, attempt: int, exc: Exception) -> None:
        # as the run's last error reads (type, then the message's own lines): repr() left
        # a pydantic ValidationError untyped, and put every error on one line of escapes
        error = f"{type(exc).__name__}: {error_text(exc)}"
        detail = {"stage": stage_id, "attempt": attempt, "error": error, **self.at}
        await self.wf.log_event_now("stage.failed", stage_id, detail)

    async def _start(self, s: AnyStage, n: int, ran: list[bool]) -> dict[str, Any]:
        ran.append(True)
        attempt = self.wf.attempt
        attach(NewEvent("stage.started", s.id, json.dumps(_detail(s, n, attempt, self.at))))
        return {"attempt": attempt, "group": n}

    def _output_key(self, s: AnyStage, attempt: int) -> str:
        return f"{stage_prefix(self.wf.workflow_id, s.id, attempt)}{self.place}output.json"

    def _recordable(self, s: AnyStage, out: Any) -> tuple[Any, bytes]:
        """`out` as the JSON data and the bytes it is recorded as; what the record cannot
        hold fails the stage. Refused by the output step instead, a NaN, a NUL or a lone
        surrogate failed the run naming a step, with no error on the stage (a surrogate
        as a bare UnicodeEncodeError)."""
        what = f"the output of stage {s.id!r}"
        data = to_json_data(out, what=what)
        try:
            body = encoded(data)
            if len(body) <= self.p.inline_limit:
                dump_json(data, what=what)  # as the step's record writes it
        except (TypeError, ValueError) as exc:  # NotSerializableError, UnicodeEncodeError
            raise StageError(not_json(s.id, s.output.__name__, out, exc)) from None
        return data, body

    async def _finish(
        self, s: AnyStage, attempt: int, data: Any, body: bytes, t0: float
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"attempt": attempt}
        if len(body) > self.p.inline_limit:
            key = self._output_key(s, attempt)
            # what was written, so a read gets these bytes or an error: a blob truncated,
            # damaged or overwritten (by a writer fenced out since) read back as a value
            sha = hashlib.sha256(body).hexdigest()
            if self.put.get(key) != sha:  # not written by the batch check just now
                await self.wf.blobs.put(key, body)  # before the record that names it
            record["blob"] = key
            record["sha256"] = sha
            record["size"] = len(body)
        else:
            record["output"] = data
        seconds = round(time.monotonic() - t0, 6)
        attach(_event("stage.completed", s.id, attempt=attempt, seconds=seconds,
                      blob=record.get("blob"), bytes=len(body), **self.at))  # fmt: skip
        return record

    async def _load_output(self, s: AnyStage, done: dict[str, Any]) -> Any:
        attempt = int(done.get("attempt", 1))
        self.attempts[s.id] = attempt
        try:
            out = await self._read_output(s, done)
        except StageError as exc:
            await self._failed(s.id, attempt, exc)
            # the run ends before the later stages start: a rerun from one of them (its
            # model fixed) goes on from here, keeping this output (`host.rerun_step`)
            error = str(exc)

            async def unread() -> dict[str, Any]:
                return {"attempt": self.wf.attempt, "error": error}

            # typed on the left: `step` infers what a step returns from its target
            recorded: dict[str, Any] = await self.wf.step(unread_key(s.id), unread)
            del recorded
            raise
        self.outputs[s.id] = out
        return out

    async def _read_output(
        self, s: AnyStage, done: dict[str, Any], check: str | None = None
    ) -> Any:
        """A stage's recorded output, typed: the stage's own record, or the record of
        the batch `check` (its step's key) that answered Ready; when it cannot be read
        back (its blob deleted or damaged, or its model changed since), a StageError
        that says where it is, what is wrong and how to go on, not a bare decode error.
        A blob is checked against the sha256 recorded when it was written (a record of
        an older tether has none: its blob is only decoded and validated)."""
        key = done.get("blob")
        where = "in the run's record" if check is None else f"in the record of its check {check!r}"
        where = where if key is None else f"at blob {key!r}"
        if key is None:
            data = done.get("output")
        else:
            body = await self.wf.blobs.get(key)
            if body is None:
                raise self._unreadable(s, where, "which the blob store no longer has", check)
            body = bytes(body)
            damage = blob_damage(body, done.get("sha256"), done.get("size"))
            if damage is not None:
                raise self._unreadable(s, where, f"which is damaged: {damage}", check)
            try:
                data = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                why = f"which is damaged: {len(body)} bytes that are not UTF-8 JSON ({exc})"
                raise self._unreadable(s, where, why, check) from None
        try:
            return validate(s.output, data)
        except ValidationError as exc:
            raise self._misfit(s, where, data, exc, check) from None

    def _misfit(
        self, s: AnyStage, where: str, data: Any, exc: ValidationError, check: str | None
    ) -> StageError:
        """The recorded output no longer fits the stage's output model, changed since it
        was recorded: what was recorded against what the model now says of it, and the
        ways on (keep a model that takes it, or compute the output anew)."""
        shown = explain_validation(exc)  # quotes the data: a large output is cut short
        shown = shown if len(shown) <= 400 else f"{shown[:400]}..."
        name = s.output.__name__
        why = (
            f"as {shape_of(data)}, which its output model {name} no longer takes ({shown}): "
            f"{name} changed since it was recorded"
        )
        keep = f"keep the old model, or make {name} accept it (a default for a new field), "
        if check is None:
            keep += "and rerun as before (a rerun from a later stage keeps this output); or "
        else:  # the stage never completed: the check's answer is what goes on
            keep += f"or have the check build the new {name}; either way "
        return self._unreadable(s, where, why, check, keep)

    def _unreadable(
        self, s: AnyStage, where: str, why: str, check: str | None = None, keep: str = ""
    ) -> StageError:
        """Reading back the output stage `s` recorded (or its batch `check` did) failed
        (`why`): how to go on. A rerun from a batch stage submits (and pays for) a new
        batch, where one from its check asks the same batch again."""
        run = self.wf.workflow_id
        kind = "stage" if s.mode != "batch" else "batch stage"
        said = f"{kind} {s.id!r} of run {run!r} recorded its output {where}, {why}; {keep}"
        stage = (
            f"app.rerun_from({run!r}, {s.id!r}) or `tether runs rerun {run} --from {s.id} "
            "--app FILE.py:APP`"
        )
        if check is None:
            return StageError(f"{said}recompute it by rerunning from this stage: {stage}")
        return StageError(
            f"{said}rerun from that check, which asks the same batch again: app.rerun_from("
            f"{run!r}, {check!r}) or `tether runs rerun {run} --from {check} --app "
            f"FILE.py:APP` (a rerun from the stage submits a new batch: {stage})"
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
            return validate(s.output, data)
        except ValidationError as exc:
            held = _holding(out, s.output)
            if held is not None:  # ctx.ai.generate_object's ObjectResult, its .object a model
                raise StageError(
                    f"stage {s.id!r} returned a value of type {type(out).__name__}, not its output "
                    f"{s.output.__name__}; its {held!r} is one: return that (e.g. "
                    f"`return result.{held}`)"
                ) from None
            raise StageError(
                f"stage {s.id!r} returned a value that is not its output {s.output.__name__}: "
                f"{explain_validation(exc)}"
            ) from None

    def _stage_input(self, s: AnyStage, n: int, value: Any) -> Any:
        if s.input is None:
            return value
        try:
            return validate(s.input, to_json_data(value, what=f"the input of stage {s.id!r}"))
        except ValidationError as exc:
            raise StageError(
                f"the input of stage {s.id!r} does not fit {s.input.__name__}: "
                f"{explain_validation(exc)}; {self._refit(s, n)}"
            ) from None

    def _refit(self, s: AnyStage, n: int) -> str:
        """How to go on from an input that does not fit stage `s` of group `n`: fix what
        gave it, or the model, and rerun from the group that gave it (a rerun from the
        pipeline's first group, for its input, which the run keeps)."""
        run = self.wf.workflow_id
        name = getattr(s.input, "__name__", "its input model")
        if n == 1:
            return (
                f"it is the pipeline's input: make {name} take it, then rerun from this "
                f"stage: app.rerun_from({run!r}, {s.id!r})"
            )
        before = [t.id for t in self.p.groups[n - 2]]
        gave = f"stage {before[0]!r}" if len(before) == 1 else f"the parallel group {before}"
        return (
            f"it is what {gave} gave: fix that (or {name}), then rerun from it: "
            f"app.rerun_from({run!r}, {before[0]!r}) or `tether runs rerun {run} --from "
            f"{before[0]} --app FILE.py:APP`"
        )

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
        """The attempt of `stage_id` whose files count; a stage of no other pipeline. A
        typo listed no artifacts and got "no artifact ... in stage 'typo'", which hid it."""
        if stage_id not in self.group_of:
            known = ", ".join(repr(s) for s in self.group_of)
            raise InvalidArgumentError(
                f"no stage {stage_id!r} in this pipeline (its stages: {known}); "
                f"{did_you_mean(stage_id, self.group_of)}name one of them, or pass the "
                "Stage object"
            )
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
        return written_lines(await self.wf.list_events(), stage_id, attempt, self.where)

    # -- async-batch stages ------------------------------------------------------------------

    async def _batch(self, s: AnyStage, ctx: StageContext[Any, Any]) -> Any:
        key = f"stage:{s.id}.suspended"
        sus = self.wf.recorded(self._key(key))
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
            check = await self._checked(s, ctx, sus, k)
            if check.kind == "ready":
                return await self._ready_output(s, check, self._check_key(s, k))
            if check.kind == "failed":
                raise StageFailedError(f"batch stage {s.id!r} failed: {check.error}")
            if check.kind == "expired":
                await self._cancel_batch(s, sus["state"], "max_wait")
                raise StageTimeoutError(
                    f"batch stage {s.id!r} was not ready after max_wait={sus['max_wait']:g} s; "
                    "its batch was cancelled"
                )
            await self.wf.sleep(check.sleep)

    async def _checked(
        self, s: AnyStage, ctx: StageContext[Any, Any], sus: dict[str, Any], k: int
    ) -> _Check:
        """Check `k` of a batch stage, as recorded. A check that raises leaves the batch
        out (it may be done, billed): the error says so and names the check to rerun
        from, which asks the same batch again (a rerun from the stage submits anew)."""
        try:
            check: _Check = await self.wf.step(
                f"stage:{s.id}.check",
                partial(self._check, s, ctx, sus, k, NAME_SCOPE.get()),
                result_type=_Check,
            )
        except StoreError:
            raise
        except Exception as exc:
            run = self.wf.workflow_id
            step = self._check_key(s, k)
            raise StageError(
                f"batch stage {s.id!r}: its check #{k} raised {type(exc).__name__}: {exc}; its "
                f"batch is still out (state {sus['state']!r}). Fix the cause, then check the "
                f"same batch again by rerunning from that check: app.rerun_from({run!r}, "
                f"{step!r}) or `tether runs rerun {run} --from {step} --app FILE.py:APP` (a rerun from the "
                f"stage submits a new batch); for an error worth waiting out, catch it in "
                "the check and return tether.NotReady()"
            ) from exc
        return check

    def _check_key(self, s: AnyStage, k: int) -> str:
        """The key in the run's record of check `k` of batch stage `s` (a rerun's point)."""
        return self._key(f"stage:{s.id}.check") + ("" if k == 1 else f"#{k}")

    async def _suspended(self, s: AnyStage, attempt: int, asked: Suspend) -> dict[str, Any]:
        now = self._now()
        record = {
            "state": to_json_data(asked.state, what=f"the state of batch stage {s.id!r}"),
            "poll_every": asked.poll_every,
            "max_wait": asked.max_wait,
            "at": now.isoformat(),
        }
        attach(_event("stage.suspended", s.id, attempt=attempt, state=record["state"],
                      poll_every=asked.poll_every, max_wait=asked.max_wait, **self.at))  # fmt: skip
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
            return await self._ready(s, ctx.attempt, answer)
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
        wait = seconds_of(answer.next_check_in) or sus["poll_every"]  # a float: see NotReady
        attach(
            _event(
                "stage.polled", s.id, attempt=ctx.attempt, next_check_in=min(wait, left), **self.at
            )
        )
        return _Check(kind="waiting", sleep=min(wait, left))

    async def _ready(self, s: AnyStage, attempt: int, answer: Ready) -> _Check:
        """A ready check's record. A large output (a batch's embeddings run to megabytes)
        is written where the stage's output goes, and the check records its key: held
        in the check's own record, it was loaded again by every later drive of the run."""
        out = self._validate_output(s, answer.output)
        data = to_json_data(out, what=f"the output of stage {s.id!r}")
        body = encoded(data)
        if len(body) <= self.p.inline_limit:
            return _Check(kind="ready", output=data)
        key = self._output_key(s, attempt)
        await self.wf.blobs.put(key, body)  # before the record that names it
        sha = hashlib.sha256(body).hexdigest()
        self.put[key] = sha
        return _Check(kind="ready", blob=key, sha256=sha, size=len(body))

    async def _ready_output(self, s: AnyStage, check: _Check, key: str) -> Any:
        """The output a ready check (step `key`) recorded, read back as a stage's is. A
        replay (a drive that ended before the stage's output step) reads it with the
        model of now: one changed since was said to be what the stage "returned", and
        "not its output", as if the stage's code had just given it."""
        done = {"output": check.output, "blob": check.blob, "sha256": check.sha256,
                "size": check.size}  # fmt: skip
        return await self._read_output(s, done, key)

    async def _cancel_batch(self, s: AnyStage, state: Any, reason: str) -> None:
        async def cancel() -> bool:
            if s.cancel_fn is not None:
                await s.cancel_fn(state)
            attach(
                _event("stage.cancelled", s.id, attempt=self.wf.attempt, reason=reason, **self.at)
            )
            return True

        done: bool = await self.wf.step(f"stage:{s.id}.cancel", cancel)
        del done

    def _now(self) -> datetime:
        return self.wf.clock.now()


def _holding(out: Any, model: type[BaseModel]) -> str | None:
    """The field of `out` (a model of another class) whose value is a `model`: returned
    whole, an ``ObjectResult`` failed as missing every field of the model it holds, its
    message quoting the whole result (usage and text) once per field."""
    if not isinstance(out, BaseModel) or isinstance(out, model):
        return None
    for name in type(out).model_fields:
        if isinstance(getattr(out, name, None), model):
            return name
    return None
