"""Which pipeline stage an AI call counts for: one rule, read by a run's record
(`tether._stage_record.stage_usage`) and by the usage of many runs grouped by stage
(`Store.ai_usage`). It stands apart from both (it imports nothing of tether) since
the store cannot import the record's modules, nor they the store's private ones.

A stage of tether.stages names its steps ``<scope><stage id>/...`` (the scope of the
place its pipeline was called from: none for a run's own pipeline, ``pipeline#2/``,
``process/``), each key ending with the for_each item path of the call (``[2]``),
and records the run attempt it started in with its step
``<scope>stage:<stage id>.start<items>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "PlacedStage",
    "plans_by_place",
    "split_place",
    "started_stages",
    "summed",
    "usage_per_stage",
]

T = TypeVar("T")
C = TypeVar("C", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class PlacedStage:
    """A stage of one pipeline call that started: its id, the place the call was made
    from (``""``, ``"pipeline#2/"``, ``"process/[2]"``), the prefix its steps are named
    under, the item path their keys end with, and the run attempt its start step
    records (a call of an earlier attempt is one a rerun forgot)."""

    at: str
    sid: str
    prefix: str
    items: str
    since: int


def split_place(at: str) -> tuple[str, str]:
    """A place as the name scope of its stages' steps and the for_each item path their
    keys end with: ``"process/[2]"`` is ``("process/", "[2]")``."""
    items = _ITEMS.search(at)
    return (at[: items.start()], items.group(0)) if items else (at, "")


_ITEMS = re.compile(r"(\[\d+\])+$")
_OCCURRENCE = re.compile(r"#\d+$")


def plans_by_place(
    plans: Iterable[tuple[str | None, str]],
) -> dict[tuple[str, str | None], list[list[str]]]:
    """A run's pipeline plans, from its ``pipeline.planned`` events (the pipeline's
    name, the detail) oldest first: the groups of stage ids of each pipeline called
    from each place, in the order first called. The latest plan of a pipeline at a
    place wins (a rerun plans again); another pipeline called from the same place
    (two called in turn from the workflow's code) is a plan of its own: keyed by the
    place alone, the second hid the first's stages."""
    places: dict[tuple[str, str | None], list[list[str]]] = {}
    for name, detail in plans:
        d = json.loads(detail)
        places[(d.get("at") or "", name)] = d["groups"]
    return places


def started_stages(
    plans: Iterable[tuple[str | None, str]], starts: Mapping[str, str | None]
) -> list[PlacedStage]:
    """A run's stages that started: `plans` as `plans_by_place` reads them, `starts`
    the recorded results of its completed steps by key (only stage starts are looked
    up)."""
    found = []
    for (at, _), groups in plans_by_place(plans).items():
        sids = [sid for group in groups for sid in group]
        scope, items = split_place(at)
        for sid in sids:
            since = _attempt_of(starts.get(f"{scope}stage:{sid}.start{items}"))
            if since is not None:
                found.append(PlacedStage(at, sid, f"{scope}{sid}/", items, since))
    return found


def usage_per_stage(
    stages: Sequence[PlacedStage],
    by_step: Iterable[tuple[str, int, T]],
    name: Callable[[PlacedStage], str],
) -> dict[str | None, list[T]]:
    """A run's usage per step (key, run attempt, usage) by the `name` of each stage it
    counts for, once per name; None for usage that counts for no stage.

    A call counts for a stage when its step is named under the stage's scope and was
    made in the attempt its start records or a later one (a rerun from a step inside
    it); a call of an attempt a rerun forgot counts for none. A call of a for_each
    item's pipeline counts for that item's stage, not for a stage of the same id called
    from the top (their steps share the scope); one of a pipeline called inside a stage
    counts for both stages."""
    sums: dict[str | None, list[T]] = {}
    for key, attempt, usage in by_step:
        best: dict[str, PlacedStage] = {}  # prefix -> the stage of the deepest item path
        for st in stages:
            held = best.get(st.prefix)
            deeper = held is None or len(st.items) >= len(held.items)
            if deeper and attempt >= st.since and _within(key, st.prefix, st.items):
                best[st.prefix] = st
        for group in dict.fromkeys(name(st) for st in best.values()) or (None,):
            sums.setdefault(group, []).append(usage)
    return sums


def summed(group: str | None, rows: Sequence[C]) -> C:
    """Rows of counts (a dataclass of a ``group`` and counts) added up as one of `group`."""
    counts: dict[str, Any] = {
        f.name: sum(getattr(r, f.name) for r in rows) for f in fields(rows[0]) if f.name != "group"
    }
    return replace(rows[0], group=group, **counts)


def _attempt_of(result: str | None) -> int | None:
    found = json.loads(result) if result else None
    return int(found["attempt"]) if isinstance(found, dict) and "attempt" in found else None


def _within(key: str, prefix: str, items: str) -> bool:
    """Whether step `key` is named under `prefix` in for_each item `items` (each step
    key under it holds the item path; a for_each inside the stage adds its own)."""
    if not key.startswith(prefix):
        return False
    if not items:
        return True
    last = _OCCURRENCE.sub("", key.rsplit("/", 1)[-1])
    found = _ITEMS.search(last)
    return found is not None and found.group(0).startswith(items)
