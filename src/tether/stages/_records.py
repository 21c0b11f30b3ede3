"""What an execution reads and writes of its records, apart from running stages: the
place a pipeline is called from, the bytes of an output and whether a blob still holds
them, the log lines a stage attempt already wrote, the error a parallel group fails with.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from .._fanout import ForEachError
from ..store import EventRow

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = [
    "Stopped",
    "blob_damage",
    "encoded",
    "first_failure",
    "own_scope",
    "shape_of",
    "written_lines",
]


# the pipelines each drive (one `Workflow`) has called, by the place they were called
# from (name scope and for_each item path), in order: (name, input, stage ids, scope)
_Call = tuple[str, str, frozenset[str], str | None]
_CALLED: WeakKeyDictionary[Workflow, dict[str, list[_Call]]] = WeakKeyDictionary()


def own_scope(
    wf: Workflow, name: str, place: str, run: str, stage_ids: Iterable[str]
) -> str | None:
    """The scope a call of pipeline `name` with input and config `run` (as JSON) from
    `place` names its steps under: none, as a pipeline run has always named them, unless
    a pipeline called from there before in this drive (the same one with another input,
    or another one sharing a stage id) recorded stages whose records would answer this
    call (another pipeline's ``stage:read`` answered this one's with its output); then
    ``pipeline#N`` (the N-th pipeline called from there), the same on every drive. A
    call with the same input as an earlier one (a retry in the workflow's code) takes
    its scope: it goes on from what that call recorded."""
    ids = frozenset(stage_ids)
    called = _CALLED.setdefault(wf, {}).setdefault(place, [])
    same = [scope for n, r, _, scope in called if n == name and r == run]
    again = any(n == name or ids & sids for n, _, sids, _ in called)
    scope = same[0] if same else f"pipeline#{len(called) + 1}" if again else None
    called.append((name, run, ids, scope))
    return scope


def encoded(data: Any) -> bytes:
    """A stage output's JSON data as the bytes recorded (inline or in a blob)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def shape_of(data: Any) -> str:
    """Recorded JSON data in brief, for an error set beside what a model says of it: an
    object's keys and the kind of each (``{answers: list, model: str}``), else its kind."""
    if not isinstance(data, dict):
        return _kind(data)
    keys = [f"{k}: {_kind(v)}" for k, v in itertools.islice(data.items(), 8)]
    return "{" + ", ".join(keys) + (", ..." if len(data) > 8 else "") + "}"


def _kind(value: Any) -> str:
    """The JSON kind of `value` (decoded JSON data)."""
    kinds = [(bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"),
             (dict, "object"), (type(None), "null")]  # fmt: skip
    return next((name for tp, name in kinds if isinstance(value, tp)), type(value).__name__)


class Stopped(Exception):
    """A stage of a parallel group cancelled because a sibling failed first."""


def first_failure(exc: ForEachError) -> BaseException:
    """The error a parallel group fails with: the first stage's that failed of itself,
    not a sibling's that it stopped."""
    if not isinstance(exc.first_error, Stopped):
        return exc.first_error
    return next(r.error for r in exc.summary.results
                if r.error is not None and not isinstance(r.error, Stopped))  # fmt: skip


def blob_damage(body: bytes, sha256: Any, size: Any) -> str | None:
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


def written_lines(events: Sequence[EventRow], stage_id: str, attempt: int, where: str = "") -> int:
    """The number of the last log/progress line of the stage attempt that still stands.
    A rerun from a step inside the stage keeps its attempt but forgets the lines
    written from that step on (they are written again as the code runs again):
    counted, they made the rerun's new lines look written and dropped them. Only the
    lines of the pipeline call made `where` count (each for_each item's call of a
    pipeline has the same stages: another item's lines dropped this one's)."""
    lines: list[tuple[int, int]] = []  # (event number, line number)
    starts: dict[str, list[tuple[int, int]]] = {}  # step -> (event number, round) of starts
    round_at = 0
    for e in events:  # in the order written
        if e.type == "step.started" and e.message:
            starts.setdefault(e.message, []).append((e.seq, round_at))
        elif e.type in ("stage.log", "stage.progress") and e.detail:
            d = json.loads(e.detail)
            mine = d.get("stage") == stage_id and d.get("attempt") == attempt
            if mine and d.get("at", "") == where:
                lines.append((e.seq, int(d.get("seq") or 0)))
        elif e.type == "run.rerun_from" and e.message in starts:
            seen = starts[e.message]  # from its first start in the round it last began
            first = min(seq for seq, r in seen if r == seen[-1][1])
            lines = [line for line in lines if line[0] < first]
            round_at = e.seq
    return max((n for _, n in lines), default=0)
