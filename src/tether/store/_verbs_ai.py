"""The AI call log: rows written with a step, and the totals read from them.

Totals are always queries over `ai_calls`, never counters, so they cannot
drift from the log. A prompt or response above `BLOB_THRESHOLD` characters is
stored once in `ai_blobs` under its digest (a long system prompt repeated by
every call of a run is kept once).

Which pipeline stage a call counts for is one rule (`tether._stage_usage`), read
by a run's record and by the usage of many runs grouped by stage (`AIVerbs.ai_usage`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._stage_usage import PlacedStage, started_stages, summed, usage_per_stage
from ._base import StoreBase, Tx, params
from ._records import AICallRow, AISpend, AIUsageRow, Fence, NewAICall, NewEvent

__all__ = ["BLOB_THRESHOLD", "AIVerbs", "usage_params", "usage_row", "write_attached"]

BLOB_THRESHOLD = 8192
GROUPS = ("model", "workflow", "day", "run", "stage")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a budget without a period counts every call


async def _text(tx: Tx, text: str | None) -> tuple[str | None, str | None]:
    """(inline text, blob digest): a long text goes to ai_blobs, once per content."""
    if text is None or len(text) <= BLOB_THRESHOLD:
        return text, None
    digest = hashlib.sha256(text.encode()).hexdigest()
    await tx.execute("insert_ai_blob", digest=digest, body=text)
    return None, digest


def split_attached(rows: Sequence[object]) -> tuple[list[NewEvent], list[NewAICall]]:
    """The rows a step attached (see `tether._attach`), by kind."""
    events: list[NewEvent] = []
    calls: list[NewAICall] = []
    for row in rows:
        if isinstance(row, NewAICall):
            calls.append(row)
        elif isinstance(row, NewEvent):
            events.append(row)
        else:
            raise TypeError(f"a step can attach NewAICall and NewEvent rows, not {row!r}")
    return events, calls


async def write_attached(
    store: StoreBase, tx: Tx, fence: Fence, step_key: str, rows: Sequence[object], at: datetime
) -> None:
    """Write what a step attempt attached, in its own transaction: events, and its AI
    calls keyed (run, step, attempt, seq), so a completion replayed after a lost
    connection writes nothing twice."""
    events, calls = split_attached(rows)
    if events:
        await store._events(tx, fence, events, at)
    await write_calls(tx, fence.workflow_id, step_key, calls, at)


async def write_calls(
    tx: Tx, workflow_id: str, step_key: str, calls: Sequence[NewAICall], at: datetime
) -> None:
    """Write a step attempt's AI calls (`write_attached`, without the events)."""
    if not calls:
        return
    attempts = await tx.one("ai_call_attempts", wid=workflow_id, key=step_key)
    assert attempts is not None  # (one row, always)
    keyed = {"wid": workflow_id, "key": step_key, "run_attempt": attempts[0],
             "step_attempt": attempts[1]}  # fmt: skip
    for seq, call in enumerate(calls):
        prompt, prompt_blob = await _text(tx, call.prompt)
        response, response_blob = await _text(tx, call.response)
        texts = {"prompt": prompt, "prompt_blob": prompt_blob, "response": response,
                 "response_blob": response_blob, "at": call.at or at}  # fmt: skip
        await tx.execute("insert_ai_call", **params(call) | texts | keyed, seq=seq)


def usage_params(
    tx: Tx,
    workflow_ids: Sequence[str] | None,
    workflow: str | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The parameters of an ``ai_usage_by_*`` query: the calls of `workflow_ids` (all
    runs if None) matching the other filters."""
    return {
        "ids": None if workflow_ids is None else tx.array(list(workflow_ids)),
        "any_id": workflow_ids is None,
        "workflow": workflow,
        "tag": tag,
        "since": since,
        "until": until,
    }


def _warned_for(detail: str | None, limits: Mapping[str, Any] | None) -> bool:
    """Whether a warning (its detail) was for `limits`; one that names no limits (or
    any warning, when `limits` is None) counts."""
    said = json.loads(detail) if detail else None
    if limits is None or not isinstance(said, dict):
        return True
    return all(said.get(k, v) == v for k, v in limits.items())


def usage_row(group: Any, r: Sequence[Any]) -> AIUsageRow:
    return AIUsageRow(
        group=None if group is None else str(group),
        calls=int(r[0]),
        input_tokens=int(r[1] or 0),
        cached_input_tokens=int(r[2] or 0),
        cache_write_tokens=int(r[3] or 0),
        output_tokens=int(r[4] or 0),
        reasoning_tokens=int(r[5] or 0),
        cost_micro_usd=int(r[6] or 0),
        unknown_cost_calls=int(r[7] or 0),
        priced_calls=int(r[8] or 0),
    )


def _stage_of(st: PlacedStage) -> str:
    return st.sid


async def _usage_by_stage(tx: Tx, filters: dict[str, Any]) -> list[AIUsageRow]:
    """`AIVerbs.ai_usage` by stage, in four queries whatever the number of runs: the
    plans of the runs with calls in the filter, then (at once) those runs' usage per
    step and attempt and their stages' start steps, and the other runs' total."""
    plans: dict[str, list[tuple[str | None, str]]] = {}
    for run_id, name, detail in await tx.all("ai_usage_plans", **filters):
        plans.setdefault(run_id, []).append((name, detail))
    ids = tx.array(list(plans))
    by_step, starts, rest = await tx.many(
        [
            ("ai_usage_of_runs_by_step", filters | {"ids": ids, "any_id": False}),
            ("stage_starts_of_runs", {"ids": ids}),
            ("ai_usage_not_of_runs", filters | {"planned": ids}),
        ]
    )
    started: dict[str, dict[str, str | None]] = {}
    for run_id, key, result in starts:
        started.setdefault(run_id, {})[key] = result
    steps: dict[str, list[tuple[str, int, AIUsageRow]]] = {}
    for r in by_step:
        steps.setdefault(r[0], []).append((r[1], int(r[2]), usage_row(None, r[3:])))
    sums: dict[str | None, list[AIUsageRow]] = {None: [usage_row(None, r) for r in rest]}
    for run_id, run_plans in plans.items():
        stages = started_stages(run_plans, started.get(run_id, {}))
        for group, rows in usage_per_stage(stages, steps.get(run_id, []), _stage_of).items():
            sums.setdefault(group, []).extend(rows)
    found = [summed(g, rows) for g, rows in sums.items()]
    return sorted((u for u in found if u.calls), key=lambda u: (u.group is None, u.group or ""))


class AIVerbs(StoreBase):
    async def child_runs(self, workflow_id: str) -> list[str]:
        """Ids of the runs started as children of this one, oldest first."""
        return await self._list("child_run_ids", lambda _, r: str(r[0]), wid=workflow_id)

    async def ai_spend(
        self,
        workflow_id: str,
        budget_key: str | None,
        *,
        tree: bool = False,
        since: datetime | None = None,
    ) -> AISpend:
        """What the call log holds for the run (`budget_key` None) or for every run that
        spent under `budget_key` (sums read from an index that holds their columns);
        with `since`, only the calls made at or after it (a budget's period).

        With `tree`, what a budget of the run counts: the calls of the run and of every
        run it started, at any depth (`runs.parent_id`, walked by a recursive query);
        with `budget_key` too, the key's calls and those of the runs it started logged
        under another key (a child's own keyed budget) or none."""
        start = _EPOCH if since is None else since

        async def body(tx: Tx) -> AISpend:
            if tree:
                name = "ai_spend_tree" if budget_key is None else "ai_spend_key_tree"
                row = await tx.one(name, wid=workflow_id, bkey=budget_key, since=start)
            elif budget_key is None:
                row = await tx.one("ai_spend_run", wid=workflow_id, since=start)
            else:
                row = await tx.one("ai_spend_key", bkey=budget_key, since=start)
            return AISpend(
                calls=int(row[0] or 0),
                micro_usd=int(row[1] or 0),
                unknown_cost_calls=int(row[2] or 0),
                tokens=int(row[3] or 0),
            )

        return await self._tx("read", body)

    async def budget_warned(
        self, workflow_id: str, limits: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether the run recorded a budget warning; with `limits` (``max_usd``,
        ``max_tokens``), one for those limits: a budget raised since warns again at its
        own line. A scan of the run's events, asked only once its spend has reached the
        warning line."""
        details = await self._list("budget_warnings", lambda _, r: r[0], wid=workflow_id)
        return any(_warned_for(d, limits) for d in details)

    async def list_ai_calls(self, workflow_ids: Sequence[str]) -> list[AICallRow]:
        """The AI calls of these runs, oldest first, with their prompts and responses."""

        async def body(tx: Tx) -> list[AICallRow]:
            rows = await tx.all("list_ai_calls", ids=tx.array(list(workflow_ids)))
            return [tx.rows.ai_call(r) for r in rows]

        return await self._tx("read", body)

    async def ai_usage_by_step(self, workflow_id: str) -> list[tuple[str, int, AIUsageRow]]:
        """The run's AI usage per step key and run attempt: (key, attempt, totals). A
        pipeline stage's usage is summed from it by where the pipeline was called, which
        only the run's plan tells (`tether._stage_record.stage_usage`)."""
        return await self._list(
            "ai_usage_of_run_by_step",
            lambda _, r: (r[0], int(r[1]), usage_row(r[0], r[2:])),
            wid=workflow_id,
        )

    async def ai_usage(
        self,
        *,
        workflow_ids: Sequence[str] | None = None,
        workflow: str | None = None,
        tag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | None = None,
    ) -> list[AIUsageRow]:
        """Totals of the calls matching the filters: one row, or one per group
        (``model``, ``workflow``, ``day``, ``run``, ``stage``). Sums over the log, never
        counters.

        By ``stage``, the rule of a run's record (`tether._stage_usage`): a call counts for
        the pipeline stage whose steps its step is named under, wherever the pipeline
        was called (the run's own, from the workflow's code, in a step, per for_each
        item, inside another stage), if made in the attempt the stage's start records
        or a later one; a call inside a stage's nested pipeline counts for both stages,
        so the stages may add up to more than the run. Every other call groups under
        None, last: outside any stage, or of an attempt a rerun forgot. Four queries
        whatever the number of runs, which reads each step of a pipeline run that made
        calls in the filter (one row per step and attempt) and sums the others' calls
        in the database."""
        if group_by is not None and group_by not in GROUPS:
            raise ValueError(f"group_by must be one of {GROUPS}, got {group_by!r}")

        async def body(tx: Tx) -> list[AIUsageRow]:
            filters = usage_params(tx, workflow_ids, workflow, tag, since, until)
            if group_by == "stage":
                return await _usage_by_stage(tx, filters)
            rows = await tx.all(f"ai_usage_by_{group_by or 'none'}", **filters)
            if group_by is None:
                return [usage_row(None, r) for r in rows]
            return [usage_row(r[0], r[1:]) for r in rows]

        return await self._tx("read", body)
