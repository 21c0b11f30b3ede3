"""What the dashboard's pages show, computed without I/O: money and durations as
text, a run's timeline as bars, and the usage charts as HTML (the columns of the
days an SVG stretched to its box), their text at the page's size on any screen.

The timeline places every step, stage, wait and child run of a run on one time
axis, from the run's creation to its end (or now, while it lasts); a bar's
position and width are percentages of that span, so the page lays it out with
CSS alone and it scales to any screen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from .._info import RunInfo, WaitInfo
from ..ai import budget_stops
from ..record import RunRecord
from ..store import AIUsageRow, RunStatus, StepStatus

__all__ = [
    "Bar",
    "Timeline",
    "api_url",
    "by_cost",
    "column_chart",
    "compact_json",
    "driven",
    "duration",
    "hbar_chart",
    "money",
    "pretty_json",
    "run_url",
    "timeline",
    "when",
]

MIN_WIDTH = 0.6  # percent: an instant still shows as a sliver
# rows of a timeline drawn: its first and its last (a step in a loop of 3,000 made a
# page 80,000 px tall, 2.5 MB of HTML fetched again at each event of a live run)
HEAD_BARS, TAIL_BARS = 100, 200


def money(micro_usd: int | None) -> str:
    """Micro-USD as dollars, to the micro-dollar (as `tether usage` prints them)."""
    return "" if micro_usd is None else f"${micro_usd / 1_000_000:.6f}"


def cost(row: Any) -> str:
    """A usage row's cost: "unknown" when none of its calls had a known price but some
    used tokens (an unknown price is never shown as $0), else the known cost."""
    if row is None:
        return ""
    priced: int = getattr(row, "priced_calls", 0)
    unknown: int = getattr(row, "unknown_cost_calls", 0)
    if unknown and not priced:
        return "unknown"
    return money(row.cost_micro_usd)


def by_cost(rows: list[AIUsageRow]) -> list[AIUsageRow]:
    """A usage table's rows in its chart's order: the costliest first, then the groups
    whose calls had no known price (their cost says unknown), each by name: the usage
    page's tables and a run's usage per model."""
    return sorted(
        rows,
        key=lambda r: (
            bool(r.unknown_cost_calls and not r.priced_calls),
            -r.cost_micro_usd,
            r.group or "",
        ),
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def when(at: datetime | None) -> Markup:
    """A time as UTC to the second, in a ``<time>`` the page's script shows in the
    reader's zone (and back, with the footer's switch); without the script the page
    says UTC."""
    if at is None:
        return Markup("")
    text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return Markup('<time datetime="{}">{}</time>').format(at.isoformat(), text)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact_json(value: Any) -> str:
    """JSON on one line, its characters as they are (as the page's script writes an
    event's detail with ``JSON.stringify``); the template escapes it for HTML."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def run_url(workflow_id: str, action: str = "") -> str:
    """The dashboard's address of a run's page (or, with `action`, of a form on it):
    ``/runs/<id>``, the id percent-encoded whole ('/', '#', '?' and '%' too), except
    for an id a browser would resolve as a dot-segment (``.``, ``..``, even sent as
    ``%2E``), which goes in the query instead: ``/run?id=..`` (``/run/<action>?id=..``)."""
    if workflow_id in (".", ".."):
        return f"/run{'/' + action if action else ''}?id={quote(workflow_id, safe='')}"
    return f"/runs/{quote(workflow_id, safe='')}{'/' + action if action else ''}"


def api_url(workflow_id: str, tail: str = "") -> str | None:
    """The API's address of a run's record (or, with `tail`, of ``/events`` and such),
    for a link a browser follows with the dashboard's cookie; None for an id a browser
    would resolve as a dot-segment (``..``, even sent as ``%2E%2E``)."""
    if workflow_id in (".", ".."):
        return None
    return f"/api/v1/runs/{quote(workflow_id, safe='')}{tail}"


@dataclass(frozen=True)
class Bar:
    """One row of a timeline: `left` and `width` are percentages of its span."""

    kind: str  # stage | step | wait | child
    label: str
    status: str
    left: float
    width: float
    started: datetime | None
    ended: datetime | None
    note: str = ""
    href: str | None = None
    marks: tuple[float, ...] = ()  # retries: where a failed attempt ended

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


@dataclass(frozen=True)
class Timeline:
    """A run's bars on its time axis; past `HEAD_BARS` + `TAIL_BARS`, the first and the
    last are drawn, and `hidden` rows after the first `HEAD_BARS` are not (between
    `gap_from` and `gap_to`, when they began)."""

    start: datetime
    end: datetime
    bars: list[Bar] = field(default_factory=list)
    hidden: int = 0
    gap_from: datetime | None = None
    gap_to: datetime | None = None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 1e-3)

    def at(self, t: datetime) -> float:
        return min(100.0, max(0.0, (t - self.start).total_seconds() / self.span * 100))

    def place(self, begin: datetime, end: datetime) -> tuple[float, float]:
        left = self.at(begin)
        width = max(self.at(end) - left, MIN_WIDTH)
        return round(min(left, 100 - MIN_WIDTH), 3), round(width, 3)


def _retries(rec: RunRecord) -> dict[str, list[datetime]]:
    found: dict[str, list[datetime]] = {}
    for e in rec.events:
        if e.type == "step.retrying" and e.message:
            found.setdefault(e.message, []).append(e.at)
    return found


def _first_attempts(rec: RunRecord) -> dict[str, list[datetime]]:
    """When each step's first attempt began, for each time it began again from its first
    (a step run again after `rerun` did): its row keeps its last attempt's start only."""
    found: dict[str, list[datetime]] = {}
    for e in rec.events:
        first = isinstance(e.detail, dict) and e.detail.get("attempt") == 1
        if e.type == "step.started" and e.message and first:
            found.setdefault(e.message, []).append(e.at)
    return found


def _began(first: list[datetime], last_start: datetime) -> datetime:
    """When the step's attempts that led to its last one began: the latest first attempt
    up to `last_start` (the step's row's start), else that start."""
    return max((t for t in first if t <= last_start), default=last_start)


def driven(rec: RunRecord, now: datetime) -> bool:
    """Whether a process drives the run now: it runs, and its owner's claim has not
    lapsed (a step left running otherwise was cut off, as `tether runs show` says)."""
    return rec.status is RunStatus.RUNNING and rec.owner_gone_since(now) is None


def _step_bars(rec: RunRecord, axis: _Axis, end: datetime, now: datetime) -> list[Bar]:
    """A bar a step, from its first attempt (a step retried showed its last attempt
    alone, the failed ones before it on an empty track) to its end, a mark where each
    failed attempt ended."""
    retries = _retries(rec)
    firsts = _first_attempts(rec)
    bars = []
    alive = driven(rec, now)
    stopped = budget_stops(rec.events)  # completed, the stop their result: no answer
    for key, s in rec.steps.items():
        if s.started_at is None:
            continue
        running = s.status is StepStatus.RUNNING and alive
        stop = s.completed_at or (end if running else s.started_at)
        status = "interrupted" if s.status is StepStatus.RUNNING and not running else s.status.value
        status = "stopped" if key in stopped and s.status is StepStatus.COMPLETED else status
        begin = _began(firsts.get(key, []), s.started_at) if s.attempts > 1 else s.started_at
        left, width = axis.place(begin, stop)
        note = f"{s.attempts} attempts" if s.attempts > 1 else ""
        note = "stopped by the AI budget" if status == "stopped" else note
        marks = [t for t in retries.get(key, ()) if begin <= t <= max(stop, begin)]
        bars.append(
            Bar(
                "step",
                key,
                status,
                left,
                width,
                begin,
                stop if not running else None,
                note,
                marks=tuple(round(axis.at(t), 3) for t in marks),
            )
        )
    return bars


def _stage_bars(rec: RunRecord, axis: _Axis, end: datetime) -> list[Bar]:
    bars = []
    for s in rec.stages:
        if s.started_at is None:
            continue
        stop = s.finished_at or end
        left, width = axis.place(s.started_at, stop)
        note = f"attempt {s.attempt}" if s.attempt and s.attempt > 1 else ""
        if s.progress is not None and s.status != "completed":
            note = (note + " " if note else "") + f"{s.progress:.0%}"
        bars.append(
            Bar("stage", s.id, s.status, left, width, s.started_at, s.finished_at, note.strip())
        )
    return bars


def _wait_bars(waits: Sequence[WaitInfo], axis: _Axis, end: datetime) -> list[Bar]:
    bars = []
    for w in waits:
        stop = w.resolved_at or end
        left, width = axis.place(w.created_at, stop)
        label = f"{w.kind.value}: {w.name}" if w.name else w.kind.value
        # the row shows the status already: no note repeats it
        bars.append(Bar("wait", label, w.status.value, left, width, w.created_at, w.resolved_at))
    return bars


def _child_bars(children: Sequence[RunInfo], axis: _Axis, end: datetime) -> list[Bar]:
    bars = []
    for c in children:
        begin = c.started_at or c.created_at
        left, width = axis.place(begin, c.finished_at or end)
        bars.append(
            Bar(
                "child",
                c.workflow_id,
                c.status.value,
                left,
                width,
                begin,
                c.finished_at,
                c.workflow_name,
                href=run_url(c.workflow_id),
            )
        )
    return bars


def timeline(
    rec: RunRecord, waits: Sequence[WaitInfo], children: Sequence[RunInfo], now: datetime
) -> Timeline:
    """The run's stages, steps, waits and child runs on one axis, each in start order."""
    start = rec.created_at
    end = rec.finished_at or max(now, start)
    axis = _Axis(start, end)
    bars = [
        *_stage_bars(rec, axis, end),
        *_step_bars(rec, axis, end, now),
        *_wait_bars(waits, axis, end),
        *_child_bars(children, axis, end),
    ]
    order = {"stage": 0, "step": 1, "wait": 1, "child": 1}
    bars.sort(key=lambda b: (order[b.kind], b.started or start))
    if len(bars) <= HEAD_BARS + TAIL_BARS:
        return Timeline(start, end, bars)
    gap = bars[HEAD_BARS:-TAIL_BARS]
    return Timeline(
        start,
        end,
        bars[:HEAD_BARS] + bars[-TAIL_BARS:],
        hidden=len(gap),
        gap_from=gap[0].started,
        gap_to=gap[-1].started,
    )


# -- charts ------------------------------------------------------------------------------


def hbar_chart(rows: Sequence[tuple[str, int]], title: str, empty: str = "no AI calls") -> Markup:
    """Horizontal bars, one per (label, micro-USD), largest first: per model, per workflow;
    `empty` where there is none.

    Drawn in HTML, its text at the page's size on any screen (an SVG scaled to a phone
    shrank it to 8 px): a row is the label, then the bar with its value at its end. In
    a wide box the labels share a column, a long one cut short (whole in its tooltip);
    in a narrow one (the CSS's container query) the label takes a line of its own and
    wraps, the bar below it."""
    rows = sorted(rows, key=lambda r: -r[1])
    if not rows:
        return Markup('<p class="chart chart-empty">{}</p>').format(empty)
    top = max(v for _, v in rows) or 1
    # the values' column: as wide as the widest, so that the longest bar leaves it room
    room = max(len(money(v)) for _, v in rows) + 1
    items = []
    for label, value in rows:
        share = max(value / top, 0.005) if value else 0.0
        items.append(
            Markup(
                '<li><span class="hb-label" title="{0}">{0}</span><span class="hb-track">'
                '<span class="bar" style="--share:{1:.4f}"></span>'
                '<span class="hb-val">{2}</span></span></li>'
            ).format(label, share, money(value))
        )
    return Markup('<ol class="chart hbars" aria-label="{}" style="--val-w:{}ch">{}</ol>').format(
        title, room, Markup("").join(items)
    )


def _ticks(n: int) -> list[tuple[int, bool]]:
    """The columns labelled under the axis, each with whether a narrow box keeps it: at
    most ~9 (the last column always), every other one of them in a narrow box."""
    every = max(1, round(n / 8))
    return [(i, (n - 1 - i) % (2 * every) == 0) for i in range(n) if (n - 1 - i) % every == 0]


def column_chart(rows: Sequence[tuple[str, int]], title: str) -> Markup:
    """Columns in the given order (days, oldest first), the largest value over them and
    some of the labels under them.

    The columns are an SVG stretched to the box (shapes stretch, text would not); the
    text is HTML at the page's size: a label is centred under its column, kept inside
    the box at its ends, and a narrow box shows every other one (the CSS's container
    query), so that labels never overlap."""
    n = max(len(rows), 1)
    top = max((v for _, v in rows), default=0)
    parts = [
        Markup('<figure class="chart cols" aria-label="{}">').format(title),
        Markup('<p class="cols-max">{}</p>').format(f"max {money(top)}" if top else ""),
        Markup(
            '<svg class="cols-plot" viewBox="0 0 {} 100" preserveAspectRatio="none" '
            'aria-hidden="true">'  # the table under the chart says it in words
        ).format(n),
    ]
    for i, (label, value) in enumerate(rows):
        h = max(value / top * 100, 1.0) if value else 0.0
        parts.append(
            Markup(
                '<rect x="{:.2f}" y="{:.2f}" width="0.7" height="{:.2f}" class="bar">'
                "<title>{}: {}</title></rect>"
            ).format(i + 0.15, 100 - h, h, label, money(value))
        )
    parts.append(Markup("</svg>"))
    if not top:
        parts.append(Markup('<p class="chart-empty">no cost in this period</p>'))
    parts.append(Markup('<div class="cols-axis" aria-hidden="true">'))
    for i, kept in _ticks(len(rows)):
        label = rows[i][0]
        parts.append(
            Markup('<span class="tick{}" style="--at:{:.3f}%">{}</span>').format(
                "" if kept else " minor",
                (i + 0.5) / n * 100,
                label[5:] if len(label) == 10 else label,
            )
        )
    parts.append(Markup("</div></figure>"))
    return Markup("").join(parts)
