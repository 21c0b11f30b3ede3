"""What a host of pipelines (`tether.App`) does for their runs outside a drive:
rerun from a stage, cancel the batches of a cancelled run, remove the files of
forgotten stages. Public for hosts, not part of what a pipeline's author uses.

Blob removal always comes after the transaction that stopped referring to
the blobs committed (a rollback must never lose data), and it is keyed by
attempt, so a rerun already under way on a worker never loses its own files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._stage_record import placed_stages
from ..errors import InvalidArgumentError
from ..store import EventRow, Fence, NewEvent, RunRow, Store
from ._context import place_folder, run_prefix, stage_prefix
from ._errors import PipelineError, did_you_mean
from ._execute import start_key, unread_key
from ._pipeline import Pipeline, built_stage
from ._stage import Stage

__all__ = [
    "SuspendedStage",
    "cancel_suspended",
    "forget_files",
    "forgotten_stages",
    "rerun_point",
    "rerun_step",
    "restarted_stages",
    "run_prefix",
    "suspended_batches",
]

log = logging.getLogger("tether.stages")


def forgotten_stages(pipeline: Pipeline[Any, Any], stage_id: str) -> list[str]:
    """The stages a rerun from `stage_id` forgets: its group and every later one."""
    n = pipeline.group_of(stage_id)
    return [s.id for g in pipeline.groups[n - 1 :] for s in g]


async def rerun_point(
    store: Store, workflow_id: str, pipeline: Pipeline[Any, Any], step: str
) -> tuple[str, list[str]]:
    """Where a pipeline run rerun from `step` goes on from, and the stages whose files
    go: a stage's id is its group's first start (`rerun_step`); a step's key goes as
    given. A misspelt stage id is refused naming the pipeline's stages (the store's
    refusal lists every step key, `pipeline.plan` and `stage:<id>.start` among them)."""
    if step in pipeline.stages:
        steps = {s.key for s in await store.load_steps(workflow_id)}
        events = await store.list_events(workflow_id)
        return rerun_step(pipeline, events, step, steps), forgotten_stages(pipeline, step)
    if ":" not in step and not await _recorded_key(store, workflow_id, step):
        meant = did_you_mean(step, pipeline.stages, "stage ")
        raise InvalidArgumentError(
            f"run {workflow_id!r} has no stage or step {step!r}; {meant}its pipeline's "
            f"stages: {', '.join(map(repr, pipeline.stages))} (or a step's key from its record)"
        )
    return step, []


async def _recorded_key(store: Store, workflow_id: str, key: str) -> bool:
    """Whether `key` is one of the run's steps or waits (a rerun goes from either)."""
    if any(s.key == key for s in await store.load_steps(workflow_id)):
        return True
    return any(w.key == key for w in await store.list_waits(workflow_id))


def rerun_step(
    pipeline: Pipeline[Any, Any],
    events: Sequence[EventRow],
    stage_id: str,
    recorded: Collection[str],
) -> str:
    """The step a rerun from `stage_id` forgets from: the first start, as the run
    records it now, of a stage of its group or a later one. A group that never started
    because the drive ended reading an earlier stage's output (its model changed since)
    goes on from the step recording that: the earlier outputs are kept, nothing is
    forgotten but that step. Any other group that never started is refused: an earlier
    stage did not complete."""
    n = pipeline.group_of(stage_id)
    later = {start_key(s.id) for g in pipeline.groups[n - 1 :] for s in g}
    first = _first_starts(events, later & set(recorded))
    earlier = [s.id for g in pipeline.groups[: n - 1] for s in g]
    undone = [sid for sid in earlier if f"stage:{sid}" not in recorded]
    if not first and not undone:
        first = _first_starts(events, {unread_key(sid) for sid in earlier} & set(recorded))
    if first:
        return min(first, key=first.__getitem__)
    if undone:
        why = f"stage {undone[0]!r} before it did not complete; rerun from that stage"
    else:
        why = "the run ended before it and kept no step to go on from"
        why += f"; rerun from stage {earlier[-1]!r}" if earlier else ""
    raise PipelineError(f"stage {stage_id!r} never started in this run: {why}")


def _first_starts(events: Sequence[EventRow], wanted: set[str]) -> dict[str, int]:
    """Each of the `wanted` steps -> its first start in the round it last began (a
    rerun's round: between two reruns). Stages side by side start in either order,
    and each round may differ: the first start in the whole history could be one that
    now comes after a sibling's, whose start (and files, removed once the rerun ran)
    the rerun then kept. A start counts from the round of its last start, as
    `rerun_from` counts it."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    round_at = 0
    for e in events:  # in the order written
        if e.type == "run.rerun_from":
            round_at = e.seq
        elif e.type == "step.started" and e.message in wanted:
            if last.get(e.message, -1) < round_at:
                first[e.message] = e.seq
            last[e.message] = e.seq
    return first


def restarted_stages(pipeline: Pipeline[Any, Any], events: Sequence[EventRow]) -> list[str]:
    """The stages that started anew since the run's last rerun: after a rerun from a
    step inside a stage, the later stages it forgot (their files of earlier attempts
    are stale); not the stage holding the step, which kept its start and attempt."""
    starts = {start_key(s.id): s.id for s in pipeline.stages.values()}
    since: set[str] = set()
    for e in events:  # in the order written
        if e.type == "run.rerun_from":
            since.clear()
        elif e.type == "step.started" and e.message in starts:
            since.add(starts[e.message])
    return [sid for sid in pipeline.stages if sid in since]


async def forget_files(
    blobs: Any, workflow_id: str, stage_ids: Sequence[str], upto: int, *, store: Store | None = None
) -> int:
    """Remove the files of `stage_ids` written by attempts up to `upto`; how many. With
    `store`, also those of every stage of a pipeline call (the run's own, or one from
    the workflow's code: each item of a `for_each`) whose start from those attempts the
    run no longer keeps: a rerun forgot it."""
    removed = 0
    for sid in stage_ids:
        for attempt in range(1, upto + 1):
            removed += await blobs.delete_prefix(stage_prefix(workflow_id, sid, attempt))
    if store is not None:
        removed += await _forget_places(blobs, store, workflow_id, upto)
    return removed


async def _forget_places(blobs: Any, store: Store, workflow_id: str, upto: int) -> int:
    """Each stage's files in the folder of the place it was called from: a stage of the
    same id called from elsewhere, and kept, keeps its own."""
    steps, events = await store.load_steps(workflow_id), await store.list_events(workflow_id)
    kept = {(st.at, st.sid) for st in placed_stages(steps, events) if st.since <= upto}
    removed = 0
    for (at, sid), attempts in _started(events, upto).items():
        if (at, sid) in kept:
            continue
        for attempt in attempts:
            base = stage_prefix(workflow_id, sid, attempt)
            if at:
                removed += await blobs.delete_prefix(base + place_folder(at))
                continue  # the run's own call: its files lie beside the other places'
            removed += await blobs.delete_prefix(f"{base}files/")
            removed += int(bool(await blobs.delete(f"{base}output.json")))
    return removed


def _started(events: Sequence[EventRow], upto: int) -> dict[tuple[str, str], set[int]]:
    """(place, stage id) -> the attempts up to `upto` it started in, as `stage.started`
    events tell (a rerun forgets steps, never events)."""
    found: dict[tuple[str, str], set[int]] = {}
    for e in events:
        if e.type != "stage.started" or not e.detail:
            continue
        d = json.loads(e.detail)
        attempt = d.get("attempt") if isinstance(d, dict) else None
        if isinstance(attempt, int) and attempt <= upto and isinstance(d.get("stage"), str):
            found.setdefault((d.get("at") or "", d["stage"]), set()).add(attempt)
    return found


@dataclass(frozen=True)
class SuspendedStage:
    """A batch stage of a run whose batch is out."""

    at: str  # the place its pipeline was called from ('' for the run's own pipeline)
    stage_id: str
    pipeline: str | None  # the name its pipeline was planned under at that place
    detail: dict[str, Any]  # what it suspended with (its `stage.suspended` event)

    @property
    def name(self) -> str:
        """The stage named by its place too (``[2]read``, ``pipeline#2/read``)."""
        return f"{self.at}{self.stage_id}"

    def stage(self, own: Pipeline[Any, Any] | None, workflow: str) -> Stage[Any, Any, Any] | None:
        """The stage itself: of the run's own pipeline (`own`, as the App registered the
        run's `workflow`), or, for a pipeline the workflow's code called, of the one of
        its name this process has built (it was looked for in the run's own alone: none
        there, the cancel was refused for a batch that `on_cancel` could stop)."""
        if self.at == "" and self.pipeline == workflow:
            return None if own is None else own.stages.get(self.stage_id)
        return built_stage(self.pipeline, self.stage_id)


async def suspended_batches(store: Store, workflow_id: str) -> list[SuspendedStage]:
    """The run's batch stages whose batch is out, each call of a pipeline from the
    workflow's code apart: each call's batch is its own, and one of a stage id of the
    run's own pipeline is not that stage's."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    planned: dict[str, str] = {}  # place -> the pipeline's name
    for e in await store.list_events(workflow_id):
        if not (e.type.startswith(("stage.", "pipeline.planned")) and e.detail):
            continue
        d = json.loads(e.detail)
        if not isinstance(d, dict):
            continue
        if e.type == "pipeline.planned":
            planned[d.get("at") or ""] = e.message or ""
            continue
        if not isinstance(d.get("stage"), str):
            continue
        where = (d.get("at") or "", d["stage"])
        if e.type == "stage.suspended":
            out[where] = d
        elif e.type in ("stage.completed", "stage.failed", "stage.cancelled"):
            out.pop(where, None)
    return [SuspendedStage(at, sid, planned.get(at), d) for (at, sid), d in out.items()]


async def cancel_suspended(
    own: Pipeline[Any, Any] | None, store: Store, run: RunRow, at: datetime
) -> list[str]:
    """Call `cancel(state)` of each batch stage of a cancelled run whose batch is out
    (of its own pipeline `own`, or of one its code called), and record
    `stage.cancelled`; the stages' names. A cancel that fails is logged: the run is
    cancelled either way."""
    done = []
    workflow_id = run.workflow_id
    for sus in await suspended_batches(store, workflow_id):
        s = sus.stage(own, run.workflow_name)
        if s is None or s.cancel_fn is None:
            continue
        try:
            await s.cancel_fn(sus.detail.get("state"))
        except Exception as exc:
            log.warning("cancel of batch stage %s of run %s failed: %s", sus.name, workflow_id, exc)
            continue
        place = {"at": sus.at} if sus.at else {}
        detail = {"stage": s.id, "attempt": sus.detail.get("attempt"), "reason": "cancelled"}
        event = NewEvent("stage.cancelled", s.id, json.dumps({**detail, **place}))
        await store.append_events(Fence(workflow_id), [event], at)
        done.append(sus.name)
    return done
