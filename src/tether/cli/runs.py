"""`tether runs ...`: inspect runs (list, show, events, export); the commands that
steer runs and delete them are added to the group from `steer` and `prune`."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import click
from rich.table import Table

from .. import RunInfo, WaitInfo
from ..ai import budget_stops
from ..app import App
from ..record import RunRecord
from ..store import RunFilter, RunStatus, redact
from ._common import (
    EXIT_USAGE,
    CliState,
    db_option,
    fail,
    note,
    out,
    pass_state,
    print_json,
    server_option,
    text,
    window,
    window_options,
)
from ._db import given_db, use_app
from ._format import (
    clip,
    cost_text,
    driven_by,
    error_text,
    facts,
    owner_gone,
    row,
    row_dict,
    served_dict,
    short,
    status_text,
    step_status,
    table,
    ts,
    zoned,
)
from ._open_waits import Answering, open_waits, waits_dicts, waits_table

__all__ = ["runs"]

_SHORT_ID = 28  # characters of an id shown without --wide


def _record(state: CliState, workflow_id: str) -> RunRecord:
    text(workflow_id, "run id")
    if state.server is not None:
        from ._remote import ask

        return ask(state, lambda c: c.get_record(workflow_id))
    return use_app(state, lambda a: a.get_record(workflow_id))


_MAX_CHILDREN = 20  # child runs `runs show` lists; the rest it counts


class _Shown(NamedTuple):
    """What `runs show` tells of a run beyond its record: which processes drive it and
    its parent and first child runs, with how many more it has (the server says none
    of these), and its open waits."""

    rec: RunRecord
    drivers: list[str]
    queue: str | None
    parent: str | None
    children: list[RunInfo]
    more_children: int
    waits: list[WaitInfo]


async def _children(a: App, workflow_id: str) -> tuple[list[RunInfo], int]:
    ids = await a.store.child_runs(workflow_id)
    rows = [await a.store.get_run(c) for c in ids[:_MAX_CHILDREN]]
    found = [RunInfo.from_row(r) for r in rows if r is not None]  # None: deleted meanwhile
    return found, max(len(ids) - _MAX_CHILDREN, 0)


def _served_drivers(state: CliState, rec: RunRecord) -> list[str]:
    """The live processes the server knows that drive the run's workflow (the server
    itself among them): it said none, and told the user to start a worker beside the
    server that drove the run. The record names no queue, so a queued run's drivers
    are those of its workflow on any queue."""
    if rec.status.terminal:
        return []
    from ._remote import ask

    workers = ask(state, lambda c: c.workers())
    return [w.id for w in workers if rec.workflow_name in w.workflows]


def _served_waits(state: CliState, workflow_id: str) -> list[WaitInfo]:
    """The run's waits as the server lists them, as `App.list_waits` gives them (no
    payload: `runs show` does not print it)."""
    from ._remote import ask

    return [s.info(workflow_id) for s in ask(state, lambda c: c.waits(workflow_id))]


def _answering(state: CliState, workflow_id: str) -> Answering:
    """What answers the run's waits: commands on its database, or requests to the
    server it was read through (`runs show` of a child on either)."""
    if state.server is None:
        return Answering(workflow_id, given_db(state))
    return Answering(workflow_id, f" --server {shlex.quote(redact(state.server))}", state.server)


def _shown(state: CliState, workflow_id: str) -> _Shown:
    if state.server is not None:
        rec = _record(state, workflow_id)
        waits = open_waits(_served_waits(state, workflow_id))
        return _Shown(rec, _served_drivers(state, rec), None, None, [], 0, waits)
    text(workflow_id, "run id")

    def read(a: App) -> _Shown:
        rec = a.get_record(workflow_id)
        info = a.get_run(workflow_id)
        drivers = a.drivers(rec.workflow_name, info.queue)  # a queued run: its queue's workers
        children, more = a.run_sync(_children(a, workflow_id))
        waits = open_waits(a.list_waits(workflow_id))
        return _Shown(rec, drivers, info.queue, info.parent_id, children, more, waits)

    return use_app(state, read)


@click.group(no_args_is_help=True)
@db_option
def runs() -> None:
    """Inspect, steer and delete runs."""


_STATUS_NAMES = ", ".join(s.value for s in RunStatus)


@runs.command("list")
@click.option("--status", "status", multiple=True, metavar="STATUS",
              help=f"Only runs with this status: {_STATUS_NAMES}.")  # fmt: skip
@click.option("--workflow", "workflow", multiple=True, metavar="NAME",
              help="Only runs of this workflow.")  # fmt: skip
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only runs with this tag; repeat for runs with every one of them.")  # fmt: skip
@click.option("--tenant", "tenant", multiple=True, metavar="NAME",
              help="Only runs of this tenant.")  # fmt: skip
@click.option("--parent", "parent", multiple=True, metavar="ID",
              help="Only the child runs of run ID.")  # fmt: skip
@window_options(
    "Created at or after: 2026-12-01, ISO time, 2h.", "Created before: 2026-12-01, ISO time, 30m."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    metavar="N",
    help="Show at most N.  [default: 50]",
)
@click.option("--all", "show_all", is_flag=True, help="Show every run that matches.")
@click.option("--wide", is_flag=True, help="Show ids in full.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON array, an object per run, the same keys with or without --server.",
)
@db_option
@server_option
@pass_state
def runs_list(
    state: CliState,
    status: tuple[str, ...],
    workflow: tuple[str, ...],
    tags: tuple[str, ...],
    tenant: tuple[str, ...],
    parent: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    show_all: bool,
    wide: bool,
    as_json: bool,
) -> None:
    """List runs, newest first.

    \b
    With --json, each run is an object of these keys (camelCase, as the other
    commands' JSON), read from the database or from a --server alike:
    workflowId, workflow, version, status, input, output, error, endReason,
    state, priority, tags, tenant, parentId, queue, owner, createdAt,
    updatedAt, startedAt, finishedAt, computeSeconds (null from a server,
    whose API does not report it), ownerGone, ownerGoneSince. From a server,
    they are read a page at a time, input and output with them.
    """
    given = click.get_current_context().get_parameter_source("limit")
    if show_all and given is not click.core.ParameterSource.DEFAULT:
        fail(EXIT_USAGE, "--limit and --all contradict each other; give one of them")
    where = _filter(status, workflow, tags, tenant, parent, window(since, until))
    if state.server is not None:
        _remote_list(state, where, tags, limit, show_all, as_json)
        return
    most = None if show_all else limit
    shown, found, any_run = use_app(
        state, lambda a: a.run_sync(_matching(a, where, tags[1:], most, whole=as_json))
    )
    if as_json:
        print_json([row_dict(r) for r in shown])
        _cut_short(len(shown), found, as_json)
        return
    if not shown:
        print("no runs match" if any_run else "no runs")
        return
    out.print(_runs_table(shown, wide))
    _cut_short(len(shown), found, as_json)


def _one(values: tuple[str, ...], option: str) -> str | None:
    """The one value of a filter given at most once. Given twice, the last one was
    used without a word: `--status failed --status completed` listed the completed
    runs alone, as if there were no failed ones (`runs prune --status` takes several)."""
    if len(values) > 1:
        fail(
            EXIT_USAGE,
            f"{option} given {len(values)} times ({', '.join(map(repr, values))}); "
            f"`runs list` filters by one {option[2:]} at a time: run it once for each",
        )
    return text(values[0], option) if values else None


def _filter(
    status: tuple[str, ...],
    workflow: tuple[str, ...],
    tags: tuple[str, ...],
    tenant: tuple[str, ...],
    parent: tuple[str, ...],
    span: tuple[datetime | None, datetime | None],
) -> RunFilter:
    """The options of `runs list` as a filter, each checked."""
    one_status = _one(status, "--status")
    if one_status is not None and one_status not in {s.value for s in RunStatus}:
        fail(EXIT_USAGE, f"unknown run status {one_status!r}; known: {_STATUS_NAMES}")
    for t in tags:
        text(t, "--tag")
    return RunFilter(
        status=None if one_status is None else RunStatus(one_status),
        workflow=_one(workflow, "--workflow"),
        tag=tags[0] if tags else None,
        tenant=_one(tenant, "--tenant"),
        created_after=span[0],
        created_before=span[1],
        parent=_one(parent, "--parent"),
    )


_PAGE = 500  # runs read at a time


async def _matching(
    a: App, where: RunFilter, more_tags: tuple[str, ...], limit: int | None, *, whole: bool
) -> tuple[list[RunInfo], int, bool]:
    """The first `limit` runs that match (all of them if None), newest first; how many
    match; whether the database has any run. Read a page at a time, filtered by the
    database: reading every run (inputs and results with them) to show 50 took memory
    and time in proportion to the whole database. One run past `limit` is read to know
    whether there are more: at a `limit` of whole pages (500, 1000) it was not, and the
    list cut short did not say so. Unless `whole` (the JSON has them), their input,
    output, state and error are not read (left None): the table shows none of them."""
    shown: list[RunInfo] = []
    after: tuple[str, datetime] | None = None
    while limit is None or len(shown) <= limit:
        # filtered here by more tags, a page may hold few matches: read whole pages
        size = _PAGE if limit is None or more_tags else min(_PAGE, limit - len(shown) + 1)
        if whole:
            page = await a.store.list_runs_page(where, limit=size, after=after)
        else:
            page = await a.store.list_run_heads(where, limit=size, after=after)
        shown += [RunInfo.from_row(r) for r in page if all(t in r.tags for t in more_tags)]
        if len(page) < size:
            break
        after = (page[-1].workflow_id, page[-1].created_at)
    if limit is None or len(shown) <= limit:
        return shown, len(shown), bool(shown) or bool(await a.store.run_counts())
    if more_tags:  # the database counts by one tag: count the rest here, id by id
        every, _, _ = await _matching(a, where, more_tags, None, whole=False)
        return shown[:limit], len(every), True
    matched = await a.store.run_counts(where)
    found = sum(n for _, st, n in matched if where.status is None or st == where.status.value)
    return shown[:limit], found, True


def _cut_short(shown: int, found: int, as_json: bool) -> None:
    """Say that the list stops at --limit: a script reading the JSON must not take
    the first 50 runs for all of them (on stderr then, so stdout stays one array)."""
    if shown < found:
        line = f"{shown} of {found} runs (newest first); --limit N or --all for more"
        if as_json:
            note(line)
        else:
            print(line)


def _remote_list(
    state: CliState,
    where: RunFilter,
    tags: tuple[str, ...],
    limit: int,
    show_all: bool,
    as_json: bool,
) -> None:
    """`runs list --server`: the server filters by one tag; the others are checked here."""
    from ._remote import matching

    # the API's filters are the store's, by the same names
    filters = {f.name: getattr(where, f.name) for f in dataclasses.fields(where)}
    filters["status"] = None if where.status is None else where.status.value
    shown, found = matching(state, tags, None if show_all else limit, full=as_json, **filters)
    if as_json:  # the keys of the database's list: a full summary has those of the record
        print_json([served_dict(r) for r in shown])
        _cut_short(len(shown), found, as_json)
        return
    if not shown:
        print("no runs match")
        return
    t = table("id", "workflow", "status", "tags", zoned("created"), zoned("updated"))
    for r in shown:
        row(t, r.workflow_id, r.workflow_name, r.status.value, ", ".join(r.tags),
            ts(r.created_at), ts(r.updated_at))  # fmt: skip
    out.print(t)
    _cut_short(len(shown), found, as_json)


def _runs_table(rows: list[RunInfo], wide: bool) -> Table:
    t = table("id", "workflow", "status", "tags", zoned("created"), zoned("updated"))
    longest = max(len(r.workflow_id) for r in rows)
    t.columns[0].min_width = longest if wide else min(_SHORT_ID, longest)
    for r in rows:
        rid = r.workflow_id
        if not wide and len(rid) > _SHORT_ID:
            rid = rid[: _SHORT_ID - 1] + "…"
        row(
            t,
            rid,
            r.workflow_name,
            status_text(r, brief=True),
            ", ".join(r.tags),
            ts(r.created_at),
            ts(r.updated_at),
        )
    return t


def _one_run(
    name: str, json_help: str | None = None, **settings: Any
) -> Callable[[Callable[..., None]], click.Command]:
    """A `runs` command on one RUN_ID, read from the database or a `--server`
    (options in the order of `--help`: RUN_ID, --json, --db, --server)."""

    def make(fn: Callable[..., None]) -> click.Command:
        fn = db_option(server_option(pass_state(fn)))
        if json_help is not None:
            fn = click.option("--json", "as_json", is_flag=True, help=json_help)(fn)
        return runs.command(name, **settings)(click.argument("workflow_id", metavar="RUN_ID")(fn))

    return make


@_one_run("show", json_help="Print the run's full record as JSON.")
def runs_show(state: CliState, workflow_id: str, as_json: bool) -> None:
    """A run's summary, what it waits for, its steps and its last 10 events."""
    shown = _shown(state, workflow_id)
    rec, children, more_children = shown.rec, shown.children, shown.more_children
    answering = _answering(state, rec.workflow_id)
    if as_json:
        print_json(_shown_record(rec) | {"openWaits": waits_dicts(shown.waits, answering)})
        return
    out.print(_summary(shown))
    if shown.waits:
        out.print(waits_table(shown.waits, answering))
    if rec.stages:
        out.print(_stages_table(rec))
    steps = table("step", "status", "attempts", zoned("completed"), "error", words=True)
    steps.title = f"steps ({len(rec.steps)})"
    stopped = budget_stops(rec.events)
    for name, s in rec.steps.items():
        row(
            steps,
            name,
            step_status(rec, s, stopped),
            str(s.attempts),
            ts(s.completed_at),
            stopped.get(name) or error_text(s.error),
        )
    out.print(steps)
    if children:
        out.print(_children_table(children, more_children))
    events = table("seq", zoned("at"), "type", "message", words=True)
    events.title = f"last {min(10, len(rec.events))} of {len(rec.events)} events"
    for e in rec.events[-10:]:
        row(events, str(e.seq), ts(e.at), e.type, e.message or "")
    out.print(events)
    if rec.status is RunStatus.COMPENSATION_FAILED:
        note(
            "a compensation failed (its step above says why); once its cause is fixed, try "
            f"those that failed again with `tether runs retry-compensations "
            f"{shlex.quote(rec.workflow_id)} --app FILE.py:APP{given_db(state)}`"
        )


def _children_table(children: list[RunInfo], more: int) -> Table:
    t = table("child run", "workflow", "status", zoned("finished"), words=True)
    shown = len(children)
    t.title = (
        f"child runs ({shown})" if not more else f"child runs (first {shown} of {shown + more})"
    )
    for c in children:
        row(t, c.workflow_id, c.workflow_name, status_text(c, brief=True),
            ts(c.finished_at))  # fmt: skip
    return t


def _stages_table(rec: RunRecord) -> Table:
    """A pipeline run's stages: status, attempt, time, progress, AI cost."""
    stages = table("group", "stage", "status", "attempt", "seconds", "progress", "AI cost",
                   "error", words=True)  # fmt: skip
    stages.title = f"stages ({len(rec.stages)}), attempt {rec.attempt}"
    for s in rec.stages:
        progress = "" if s.progress is None else f"{s.progress:.0%}"
        if s.progress_message and s.status not in ("completed", "skipped"):
            progress += f" {s.progress_message}"
        row(
            stages,
            str(s.group),
            s.id,
            s.status,
            "" if s.attempt is None else str(s.attempt),
            "" if s.seconds is None else f"{s.seconds:.2f}",
            progress,
            cost_text(s.usage),
            clip(s.error) if s.error else "",  # text, not JSON: shown without quotes
        )
    return stages


def _shown_record(rec: RunRecord) -> dict[str, Any]:
    """The record as `runs export` prints it, with a step cut off by the run's end
    shown as interrupted (as the table does), and whether its owner is gone (as the
    status line says, and `runs list --json`)."""
    data = rec.to_dict()
    stopped = budget_stops(rec.events)
    for name, s in rec.steps.items():
        data["steps"][name]["status"] = step_status(rec, s, stopped)
        if name in stopped:  # what stopped it: its result is the stop, not an answer
            data["steps"][name]["stoppedBy"] = stopped[name]
    return data | owner_gone(rec)


def _ended(rec: RunRecord) -> str:
    """Why the run ended, where the status does not already say it."""
    if rec.end_reason is None or rec.end_reason.value == rec.status.value:
        return ""
    return rec.end_reason.value.replace("_", " ")


def _summary(shown: _Shown) -> Table:
    rec = shown.rec
    version = f" (version {rec.workflow_version})" if rec.workflow_version else ""
    pairs = [
        ("run", rec.workflow_id),
        ("workflow", rec.workflow_name + version),
        ("parent", shown.parent or ""),
        ("status", status_text(rec)),
        ("ended", _ended(rec)),
        ("owner", rec.owner if rec.status is RunStatus.RUNNING and rec.owner else ""),
        ("driven by", driven_by(rec, shown.drivers, shown.queue)),
        ("created", ts(rec.created_at, zone=True)),
        ("updated", ts(rec.updated_at, zone=True)),
        ("finished", ts(rec.finished_at, zone=True)),
        ("input", "" if rec.input is None else short(rec.input)),
        ("state", "" if rec.state is None else short(rec.state)),
        ("result", "" if rec.output is None else short(rec.output)),
        ("last error", error_text(rec.last_error)),  # kept after a resume succeeds
        ("AI usage", _usage_text(rec)),
    ]
    return facts(pairs)


def _usage_text(rec: RunRecord) -> str:
    """The run's AI calls in one line: calls, tokens, cost (and calls of no known price)."""
    if rec.usage is None:
        return ""
    t = rec.usage.total
    unpriced = f", {t.unknown_cost_calls} at no known price" if t.unknown_cost_calls else ""
    models = ", ".join(f"{name} x{r.calls}" for name, r in sorted(rec.usage.by_model.items()))
    return (
        f"{t.calls} calls, {t.input_tokens:,} in ({t.cached_input_tokens:,} cached) / "
        f"{t.output_tokens:,} out tokens, {cost_text(t)}{unpriced} ({models})"
    )


@_one_run("events", json_help="Print JSON.")
def runs_events(state: CliState, workflow_id: str, as_json: bool) -> None:
    """Every event of a run, in order."""
    rec = _record(state, workflow_id)
    if as_json:
        print_json([e.to_dict() for e in rec.events])
        return
    t = table("seq", zoned("at"), "type", "message", "detail")
    for e in rec.events:
        row(
            t,
            str(e.seq),
            ts(e.at),
            e.type,
            e.message or "",
            "" if e.detail is None else short(e.detail),
        )
    out.print(t)


@_one_run("export", short_help="A run's full record as JSON.")
def runs_export(state: CliState, workflow_id: str) -> None:
    """The run's full record as JSON (iso-orchestrator record shape)."""
    print_json(_record(state, workflow_id).to_dict())
