"""How runs read on a terminal: local times, tables of plain text, short values."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Column, Table
from rich.text import Text

from .. import RunInfo
from .._failure import ErrorRecord
from .._owners import owner_is_dead, owner_pid
from ..record import RunRecord, StepRecord, owner_gone_since
from ..store import AIUsageRow, RunStatus, StepStatus

__all__ = [
    "cell",
    "clip",
    "cost_text",
    "driven_by",
    "error_text",
    "facts",
    "iso",
    "owner_gone",
    "process_ended",
    "resume_hint",
    "row",
    "row_dict",
    "served_dict",
    "short",
    "status_text",
    "step_status",
    "table",
    "ts",
    "zoned",
]

_NO_WRAP = {"seq", "attempts", "type"}


def ts(value: datetime | None, *, zone: bool = False) -> str:
    """Local time (the zone is in the column header unless `zone`): how the reader's clock reads."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S" + (" %Z" if zone else ""))


def zoned(column: str) -> str:
    return f"{column} ({datetime.now().astimezone().strftime('%Z')})"


def short(value: Any, limit: int = 160) -> str:
    """A JSON value as JSON text, cut to `limit` characters."""
    return clip(json.dumps(value, default=str, ensure_ascii=False), limit)


def clip(text: str, limit: int = 160) -> str:
    """`text` as it is, cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cell(value: str, style: str = "") -> Text:
    """A table cell as plain text (an id or a message is not rich markup), what stdout
    cannot encode (an id in Japanese under an ASCII locale) escaped before rich measures
    the column: escaped by the stream after, the rows no longer lined up."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        value = value.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: leave it to the stream
        pass
    return Text(value, style=style)


# a column narrower than this (or than its content, when that is shorter) folds its
# values into scraps of a letter or two ("u" "p" "d" "a" "t" "e" "d"); at four a time
# still reads "2026" "-12-" "07", and `usage`'s eight columns fit on 60
_READABLE = 4
# in a table of prose (`table(words=True)`), a word up to this long (a date,
# "completed", "attempts") is not broken: where the columns cannot hold theirs, the
# rows are blocks; a longer one (an id) folds
_WORD = 10


class _Fitted(Table):
    """A table whose columns' wished-for widths (a whole id, a status's longest word)
    give way, widest first, when the terminal cannot hold them: rich crops a table it
    cannot fit, and `runs list` on 80 columns lost its right edge (the updated time),
    with --wide and a long id every column but the id. Where even every column at a
    readable width (`_floor`) does not fit, each row is printed as a block of "key:
    value" lines instead: on 30 columns every column was two or three cells wide, a
    header of seven words one letter a line, and no value could be read."""

    words = False  # whether its columns keep words whole (see `_floor`)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        floors = [_floor(console, options, c, self.words) for c in self.columns]
        if _too_narrow(floors, options):
            yield from console.render(_blocks(self), options)
            return
        lines = self._fitted(console, options, floors)
        if _widest(lines) > options.max_width:
            yield from console.render(_blocks(self), options)
        else:
            yield from lines

    def _fitted(self, console: Console, options: ConsoleOptions, floors: list[int]) -> list[Any]:
        """The table rendered, no column under its floor, the wishes given up widest
        first until it fits (or none is left)."""
        wished = [column.min_width for column in self.columns]
        wishing = sorted(
            (i for i, width in enumerate(wished) if width), key=lambda i: -(wished[i] or 0)
        )
        try:
            for column, wish, floor in zip(self.columns, wished, floors, strict=True):
                column.min_width = max(wish or 0, floor) or None
            lines = list(super().__rich_console__(console, options))
            for i in wishing:
                if _widest(lines) <= options.max_width:
                    break
                self.columns[i].min_width = floors[i] or None
                lines = list(super().__rich_console__(console, options))
        finally:  # the wishes hold again at a wider width (a live view's next frame)
            for column, width in zip(self.columns, wished, strict=True):
                column.min_width = width
        return lines


def _too_narrow(floors: list[int], options: ConsoleOptions) -> bool:
    """Whether columns at their floors outgrow the width: each costs its width and three
    cells ("│ " before, " " after), the table one more (its right edge). Rich squeezed
    the columns it could not fit to nothing: the events' time and message were gone
    without a word on 30 columns."""
    return sum(floors) + 3 * len(floors) + 1 > options.max_width


def _widest(segments: list[Any]) -> int:
    """The width in cells of the widest line of rendered segments."""
    rendered = [s for s in segments if isinstance(s, Segment)]
    return max((Segment.get_line_length(line) for line in Segment.split_lines(rendered)), default=0)


def _floor(console: Console, options: ConsoleOptions, column: Column, words: bool) -> int:
    """The narrowest a column reads at: `_READABLE` cells, or with `words` its longest
    word up to `_WORD` cells if more (all of it, where its header and values are all
    shorter; all of a column that does not wrap). At four cells a column, 40 columns
    kept `runs show`'s tables: "comp" "lete" "d" for a status, an error message four
    letters a line."""
    sizes = [Measurement.get(console, options, c) for c in [column.header, *column.cells]]
    natural = max(m.maximum for m in sizes)
    word = min(max(m.minimum for m in sizes), _WORD) if words else 0
    return natural if column.no_wrap else min(natural, max(word, _READABLE))


def _blocks(t: Table) -> Group:
    """`t`'s rows one block each, a line per column that has a value ("status:
    completed"), the blocks apart by a blank line: a table too wide to read; "(none)"
    for a table without rows."""
    parts: list[RenderableType] = []
    if t.title:
        parts.append(t.title if isinstance(t.title, Text) else Text(str(t.title), "bold"))
    if not t.row_count:  # its headers alone did not fit
        parts.append(Text("(none)", "dim"))
    columns = [list(c.cells) for c in t.columns]
    for index in range(t.row_count):
        block = Table.grid(padding=(0, 1))
        block.add_column(style="bold", no_wrap=True)  # "completed (UTC):" on one line
        block.add_column(overflow="fold")
        for column, cells in zip(t.columns, columns, strict=True):
            value = cells[index]
            if not isinstance(value, str | Text) or str(value).strip():  # a blank says nothing
                block.add_row(f"{column.header}:", value)
        parts += [Text(""), block] if index else [block]
    return Group(*parts)


def table(*columns: str, words: bool = False) -> Table:
    """Ids and names fold rather than lose their end to an ellipsis: they get copied.
    A status wraps between its words only (see `row`), unless the terminal is too
    narrow for that (see `_Fitted`). With `words` (a table of statuses and messages,
    as `runs show`'s), no word up to `_WORD` cells is broken: where the terminal cannot
    hold them, the rows are blocks; `usage`'s numbers fold, its eight columns a table
    on 60 columns."""
    t = _Fitted(header_style="bold", title_justify="left")
    t.words = words
    for name in columns:
        t.add_column(name, overflow="fold", no_wrap=name in _NO_WRAP)
    return t


def row(t: Table, *cells: str | RenderableType) -> None:
    """Add a row, a string as plain text (ids, step names and messages are not rich
    markup; a `Text` of `cell` for a styled one). A status column is as wide as its
    longest word, a long status ("running (owner gone since ...)") wrapping between
    words: kept on one line, it pushed the ids and names out of a terminal's width."""
    for column, value in zip(t.columns, cells, strict=False):
        if column.header == "status" and isinstance(value, str | Text):
            longest = max((cell_len(word) for word in str(value).split()), default=0)
            column.min_width = max(column.min_width or 0, longest)
    t.add_row(*(cell(c) if isinstance(c, str) else c for c in cells))


def facts(pairs: list[tuple[str, str]]) -> Table:
    """A run's summary: a label and its value a line, those with a value. The labels
    keep their line; a value wraps between words and folds a long id: rich's default,
    an ellipsis, cut the run's id and workflow to "order-2026-12-01-…" on 30 columns."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in pairs:
        if value:
            grid.add_row(label, cell(value))  # an id or a message is not rich markup
    return grid


def cost_text(usage: AIUsageRow | None) -> str:
    """What calls cost, for a person: "unknown" when no call had a known price (an
    unknown price is never shown as $0), blank when there were no calls."""
    if usage is None or not usage.calls:
        return ""
    known = usage.known_cost_usd
    return "unknown" if known is None else f"${known:.6f}"


def gone(status: RunStatus, expires: datetime | None) -> datetime | None:
    return owner_gone_since(status, expires, datetime.now(UTC))


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


class Owned(Protocol):
    """What says whether a run is driven: a `RunInfo`, a `RunRecord`, a server's run."""

    @property
    def status(self) -> RunStatus: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def owner_expires_at(self) -> datetime | None: ...


def process_ended(run: Owned) -> bool:
    """A running run whose owner is a process of this machine that no longer exists
    (killed, say): nothing drives it, though its claim has not lapsed yet."""
    return run.status is RunStatus.RUNNING and owner_is_dead(run.owner)


def status_text(run: RunInfo | RunRecord, *, brief: bool = False) -> str:
    """The status, and for a running run whose owner died, since when nobody drives it
    (or, before its claim lapses, that its process on this machine has ended); `brief`
    for a table's cell, without what happens next."""
    since = gone(run.status, run.owner_expires_at)
    if since is not None:
        then = "" if brief else "; a worker or the next run takes it over"
        return f"{run.status.value} (owner gone since {ts(since, zone=True)}{then})"
    if not process_ended(run):
        return run.status.value
    if brief:
        return f"{run.status.value} (owner gone: its process ended)"
    return (
        f"{run.status.value} (owner gone: its process {owner_pid(run.owner or '')} on this "
        "machine has ended; a resume here takes the run over now, a worker once its "
        f"claim lapses at {ts(run.owner_expires_at, zone=True)})"
    )


def step_status(rec: RunRecord, step: StepRecord, stopped: Collection[str] = ()) -> str:
    """A step left running where nothing runs it (the run ended, was handed back or
    parked, or its owner died) was cut off: say so. One of `stopped` (the steps an AI
    budget stopped: `ai.budget_stops`) is recorded completed, the stop its result, but
    called nothing: "stopped"."""
    if step.status is StepStatus.COMPLETED and step.name in stopped:
        return "stopped"
    if step.status is StepStatus.RUNNING and (
        rec.status is not RunStatus.RUNNING
        or gone(rec.status, rec.owner_expires_at) is not None
        or process_ended(rec)
    ):
        return "interrupted"
    return step.status.value


# the workflow of the agents dispatcher's runs (tether.agents.ISSUE_WORKFLOW, not
# imported here: the agents extra may not be installed)
AGENT_RUNS = "agents.issue"


def start_hint(workflow_name: str, queue: str | None = None) -> str:
    """What to start so that runs of `workflow_name` are driven. The queue is quoted
    for the shell, as in `resume_hint`."""
    if workflow_name == AGENT_RUNS:
        return "`tether agents run` beside its WORKFLOW.md"
    return "`tether worker --app FILE.py:app" + (f" -q {shlex.quote(queue)}`" if queue else "`")


def resume_hint(workflow_id: str) -> str:
    """The command that drives run `workflow_id` on here, its id quoted for the shell:
    `tether runs resume night run's 1` pasted back ran into an open quote."""
    return f"`tether runs resume {shlex.quote(workflow_id)} --app FILE.py:app`"


def driven_by(rec: RunRecord, drivers: list[str], queue: str | None = None) -> str:
    """Who will move an unfinished run on: the live processes serving its workflow (a
    process of this machine that has ended is not, though its claim has not lapsed).
    A queued run's hint names its `queue`: a worker started as told, on the default
    queue, never took it."""
    if rec.status.terminal:
        return ""
    drivers = [d for d in drivers if not owner_is_dead(d)]
    if drivers:
        return ", ".join(drivers)
    if rec.workflow_name == AGENT_RUNS:
        return f"nobody: no dispatcher is running (start {start_hint(rec.workflow_name)})"
    where = f" on queue {queue!r}" if queue else ""
    return (
        f"nobody: no live process drives workflow {rec.workflow_name!r}{where} (start "
        f"{start_hint(rec.workflow_name, queue)}, or {resume_hint(rec.workflow_id)})"
    )


def error_text(error: ErrorRecord | None) -> str:
    """``Type: message``, then what it was raised from."""
    if error is None:
        return ""
    return " <- ".join(f"{e.type}: {e.message}" for e in error.causes())


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _error_dict(error: ErrorRecord | None) -> dict[str, Any] | None:
    return None if error is None else error.to_dict()


def row_dict(r: RunInfo) -> dict[str, Any]:
    """A run's row as JSON (`runs list --json`): every field, values decoded."""
    return _listed(
        r,
        input=_json(r.input),
        output=_json(r.output),
        error=_error_dict(r.error_record),
        state=_json(r.state),
        owner=r.owner,
        computeSeconds=r.compute_seconds,
    ) | owner_gone(r)


def served_dict(summary: Any) -> dict[str, Any]:
    """A run a server lists (`runs list --server --json`) in `row_dict`'s keys, from its
    full API summary (``fields=full``: snake_case, with input, output, state and owner).
    The API reports no compute time: null."""
    return _listed(
        summary,
        input=summary.input,
        output=summary.output,
        error=summary.error,
        state=summary.state,
        owner=summary.owner,
        computeSeconds=None,
    ) | owner_gone(summary)


def _listed(r: Any, **values: Any) -> dict[str, Any]:
    """The keys of `runs list --json`, in order: the fields a `RunInfo` and a server's
    `RunSummary` share (same names), and `values` (input, output, error, state, owner,
    computeSeconds) in their places."""
    return {
        "workflowId": r.workflow_id,
        "workflow": r.workflow_name,
        "version": r.workflow_version,
        "status": r.status.value,
        "input": values["input"],
        "output": values["output"],
        "error": values["error"],
        "endReason": None if r.end_reason is None else r.end_reason.value,
        "state": values["state"],
        "priority": r.priority,
        "tags": list(r.tags),
        "tenant": r.tenant,
        "parentId": r.parent_id,
        "queue": r.queue,
        "owner": values["owner"],
        "createdAt": r.created_at.isoformat(),
        "updatedAt": r.updated_at.isoformat(),
        "startedAt": iso(r.started_at),
        "finishedAt": iso(r.finished_at),
        "computeSeconds": values["computeSeconds"],
    }


def owner_gone(r: Owned) -> dict[str, Any]:
    """Whether nothing drives a running run, as the table's status says: its claim
    lapsed (since then), or its process on this machine has ended (killed, say) while
    the claim lives on; without the second a script saw a dead run as driven."""
    since = gone(r.status, r.owner_expires_at)
    return {"ownerGone": since is not None or process_ended(r), "ownerGoneSince": iso(since)}
