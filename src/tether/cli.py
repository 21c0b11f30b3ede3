"""The `tether` command: run workflows, inspect and steer runs, start workers.

Exit codes (scripts can rely on them):
  0  success (a run that parks to wait also prints its result and exits 0)
  1  the workflow failed or was cancelled: its error on one line (--traceback for more)
  2  bad usage or input: a missing file, module or function, input that is not
     JSON or does not fit the workflow, an unknown status (typer's own usage
     errors are 2 as well)
  3  no such run (or token)
  4  store error: the database cannot be opened or is not a tether database
  130  interrupted (Ctrl-C); the run resumes with the same --id
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback as tb
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from ._cli_load import UsageError, load_target, parse_json, validate_input
from ._cli_progress import Progress
from .app import App, RunResult
from .definition import WorkflowDef
from .errors import RunNotFoundError, StoreError, TetherError, TokenNotFoundError
from .record import RunRecord, owner_gone_since
from .store import RunRow, RunStatus

__all__ = ["app", "main"]

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STORE, EXIT_INTERRUPTED = 1, 2, 3, 4, 130

app = typer.Typer(
    name="tether",
    help="Durable workflows for AI-agent harnesses.\n\n"
    "Exit codes: 0 ok; 1 the workflow failed or was cancelled; 2 bad usage or input; "
    "3 unknown run; 4 store error (unreachable, or not a tether database); 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
)
runs_app = typer.Typer(help="Inspect and steer runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 200  # piped into grep or a file: a row per line beats folding to 80 columns
_state: dict[str, Any] = {"db": None}

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="TETHER_DATABASE_URL",
        help="Database URL (default: sqlite:///.tether/tether.db).",
    ),
]


def _fail(code: int, message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _text(value: str, what: str) -> str:
    """An id or name from the command line: argv bytes that are not UTF-8 arrive as lone
    surrogates, which no database can store; refuse them (and NUL) with exit code 2."""
    if not value.strip():
        _fail(EXIT_USAGE, f"{what} must not be blank; pass a non-blank {what}")
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        _fail(
            EXIT_USAGE,
            f"{what} {value!r} is not valid UTF-8 text (or contains NUL); "
            "check the terminal's encoding and pass plain text",
        )
    return value


def _version(value: bool) -> None:
    if value:
        print(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    db: DbOption = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _state["db"] = db


def _app(db: str | None = None) -> App:
    try:
        return App(db or _state["db"])
    except StoreError as exc:
        _fail(EXIT_STORE, str(exc))
    except TetherError as exc:
        _fail(EXIT_USAGE, str(exc))


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for one of tether's errors outside a workflow's own failure."""
    if isinstance(exc, RunNotFoundError | TokenNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, UsageError | TetherError):
        return EXIT_USAGE  # InvalidArgument, WorkflowNotFound, WorkflowVersion, RunFinished ...
    return None


def _guard(fn: Callable[[], Any], *, traceback: bool = False) -> Any:
    """Turn tether's errors into a message and an exit code; a traceback only if asked."""
    try:
        return fn()
    except (UsageError, TetherError) as exc:
        if traceback:  # of the cause: where a file being loaded raised, say
            sys.stderr.write("".join(tb.format_exception(exc.__cause__ or exc)))
        _fail(_exit_code(exc) or EXIT_USAGE, str(exc))
    except ValidationError as exc:  # a command the kernel refused at its typed edge
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        _fail(EXIT_USAGE, f"invalid argument: {problems}")


def _load_object(target: str, *, traceback: bool = False) -> Any:
    """``path/to/file.py:NAME`` or ``package.module:NAME``."""
    return _guard(lambda: load_target(target), traceback=traceback)


def _parse_json(text: str | None, what: str) -> Any:
    return _guard(lambda: parse_json(text, what))


# -- run --------------------------------------------------------------------------------


@app.command()
def run(
    target: Annotated[
        str,
        typer.Argument(
            help="FILE.py:FUNC or MODULE:FUNC of `async def f(wf)` or `async def f(wf, input)`."
        ),
    ],
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", help="Input as JSON, or @file.json (new runs only)."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Workflow id; running the same id again resumes.")
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Initial state as JSON, or @file.json.")
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the traceback of a failure.")
    ] = False,
) -> None:
    """Run (or resume) a workflow in this process and print its result as JSON.

    Progress is shown live on a terminal; otherwise one summary line goes to
    stderr, so stdout carries only the JSON. Completed steps of a resumed
    run are answered from the record, not run again.
    """
    if id is not None and not id.strip():
        _fail(EXIT_USAGE, "--id must not be blank; leave it out for a new id")
    if id is not None:
        _text(id, "--id")
    fn = _load_object(target, traceback=traceback)
    value = _parse_json(input, "input")
    initial = _parse_json(state, "state")
    defn: WorkflowDef = _guard(lambda: WorkflowDef.of(fn))
    args: tuple[Any, ...] = ()
    if input is not None:
        args = (_guard(lambda: validate_input(defn, value)),)
    workflow_id = id or f"{defn.name}-{uuid.uuid4().hex[:12]}"
    the_app = _app()

    def call(progress: Progress) -> RunResult[Any]:
        if input is None and defn.input_required:
            _require_recorded_input(the_app, defn, id)
        return the_app.run(
            defn.fn, *args, workflow_id=workflow_id, initial_state=initial, on_event=progress
        )

    _drive(the_app, workflow_id, call, f"tether run {target} --id {workflow_id}", traceback)


def _drive(
    the_app: App,
    workflow_id: str,
    call: Callable[[Progress], RunResult[Any]],
    again: str,
    traceback: bool,
) -> None:
    """Drive a run with live progress (on a terminal), print its result, exit by outcome."""
    progress = Progress(workflow_id)
    try:
        if out.is_terminal:
            with Live(progress, console=out, refresh_per_second=8, transient=True):
                result = call(progress)
        else:
            result = call(progress)
    except KeyboardInterrupt:
        _fail(
            EXIT_INTERRUPTED,
            f"interrupted; run {workflow_id} keeps its completed steps: resume it with `{again}`",
        )
    except Exception as exc:
        _run_failed(exc, progress, workflow_id, traceback)
    finally:
        the_app.close()
    err.print(progress.summary(result.record), highlight=False, soft_wrap=True)
    print(
        json.dumps(
            {
                "workflowId": result.workflow_id,
                "status": result.status.value,
                "result": result.record.output,
            },
            indent=2,
            default=str,
        )
    )
    if result.status is RunStatus.CANCELLED:
        _fail(EXIT_FAILED, f"run {workflow_id} was cancelled")


def _require_recorded_input(the_app: App, defn: WorkflowDef, workflow_id: str | None) -> None:
    """Refuse before a run is created: the engine would create it, then find no input."""
    hint = "pass --input JSON or --input @file.json"
    if workflow_id is None:
        raise UsageError(f"workflow {defn.name!r} takes an input; {hint}")
    try:
        the_app.get_run(workflow_id)
    except RunNotFoundError:
        raise UsageError(
            f"workflow {defn.name!r} takes an input and run {workflow_id!r} does not exist yet; "
            f"{hint}"
        ) from None


def _run_failed(exc: Exception, progress: Progress, workflow_id: str, traceback: bool) -> NoReturn:
    """Exit 1 if the workflow's own failure was recorded, else 2/3/4 by the error's kind."""
    if traceback:
        sys.stderr.write("".join(tb.format_exception(exc)))  # unwrapped: paths stay whole
    if progress.run_failed:
        _fail(EXIT_FAILED, f"run {workflow_id} failed: {type(exc).__name__}: {_one_line(exc)}")
    code = _exit_code(exc)
    if code is None:  # not tether's: a bug somewhere, reported all the same
        _fail(EXIT_FAILED, f"run {workflow_id} stopped: {type(exc).__name__}: {_one_line(exc)}")
    _fail(code, _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if text else "(no message)"


# -- runs ---------------------------------------------------------------------------------


def _ts(value: datetime | None, *, zone: bool = False) -> str:
    """Local time (the zone is in the column header unless `zone`): how the reader's clock reads."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S" + (" %Z" if zone else ""))


def _zoned(column: str) -> str:
    return f"{column} ({datetime.now().astimezone().strftime('%Z')})"


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(*columns: str) -> Table:
    """Ids and names fold rather than lose their end to an ellipsis: they get copied."""
    table = Table(header_style="bold", title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold", no_wrap=name in _NO_WRAP)
    return table


_NO_WRAP = {"seq", "status", "attempts", "type"}


def _row(table: Table, *cells: str) -> None:
    """Add a row as plain text: ids, step names and messages are not rich markup."""
    table.add_row(*(Text(c) for c in cells))


def _gone(status: RunStatus, expires: datetime | None) -> datetime | None:
    return owner_gone_since(status, expires, datetime.now(UTC))


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _status_text(status: RunStatus, expires: datetime | None) -> str:
    """The status, and for a running run whose owner died, since when nobody drives it."""
    gone = _gone(status, expires)
    if gone is None:
        return status.value
    return f"{status.value} (owner gone since {_ts(gone, zone=True)}; a worker or the next run takes it over)"


def _driven_by(rec: RunRecord, drivers: list[str]) -> str:
    """Who will move an unfinished run on: the live processes serving its workflow."""
    if rec.status.terminal:
        return ""
    if drivers:
        return ", ".join(drivers)
    return (
        f"nobody: no live process drives workflow {rec.workflow_name!r} (start "
        f"`tether worker --app ...`, or `tether runs resume {rec.workflow_id} --app ...`)"
    )


def _error_text(error: dict[str, Any] | None) -> str:
    return "" if not error else f"{error.get('type')}: {error.get('message')}"


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None, typer.Option(help="Only runs with this status (e.g. running, failed).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runs, newest first."""
    the_app = _app()
    try:
        rows: list[RunRow] = _guard(lambda: the_app.list_runs(status=status, limit=limit))
    finally:
        the_app.close()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "workflowId": r.workflow_id,
                        "workflow": r.workflow_name,
                        "status": r.status.value,
                        "createdAt": r.created_at.isoformat(),
                        "updatedAt": r.updated_at.isoformat(),
                        "ownerGoneSince": _iso(_gone(r.status, r.owner_expires_at)),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        print("no runs" + (f" with status {status}" if status else ""))
        return
    table = _table("id", "workflow", "status", _zoned("created"), _zoned("updated"))
    table.columns[0].min_width = min(40, max(len(r.workflow_id) for r in rows))  # copyable
    for r in rows:
        _row(
            table,
            r.workflow_id,
            r.workflow_name,
            _status_text(r.status, r.owner_expires_at),
            _ts(r.created_at),
            _ts(r.updated_at),
        )
    out.print(table)


def _record(workflow_id: str, *, drivers: bool = False) -> tuple[RunRecord, list[str]]:
    _text(workflow_id, "workflow id")
    the_app = _app()
    try:
        rec: RunRecord = _guard(lambda: the_app.get_record(workflow_id))
        found: list[str] = _guard(lambda: the_app.drivers(rec.workflow_name)) if drivers else []
        return rec, found
    finally:
        the_app.close()


@runs_app.command("show")
def runs_show(workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")]) -> None:
    """A run's summary, its steps and its last 10 events."""
    rec, drivers = _record(workflow_id, drivers=True)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    version = f" (version {rec.workflow_version})" if rec.workflow_version else ""
    facts = [
        ("run", rec.workflow_id),
        ("workflow", rec.workflow_name + version),
        ("status", _status_text(rec.status, rec.owner_expires_at)),
        ("owner", rec.owner if rec.status is RunStatus.RUNNING and rec.owner else ""),
        ("driven by", _driven_by(rec, drivers)),
        ("created", _ts(rec.created_at, zone=True)),
        ("updated", _ts(rec.updated_at, zone=True)),
        ("finished", _ts(rec.finished_at, zone=True)),
        ("input", "" if rec.input is None else _short(rec.input)),
        ("state", "" if rec.state is None else _short(rec.state)),
        ("result", "" if rec.output is None else _short(rec.output)),
        ("last error", _error_text(rec.last_error)),  # kept after a resume succeeds
    ]
    for label, value in facts:
        if value:
            _row(summary, label, value)
    out.print(summary)
    steps = _table("step", "status", "attempts", _zoned("completed"), "error")
    steps.title = f"steps ({len(rec.steps)})"
    for name, s in rec.steps.items():
        _row(
            steps, name, s.status.value, str(s.attempts), _ts(s.completed_at), _error_text(s.error)
        )
    out.print(steps)
    events = _table("seq", _zoned("at"), "type", "message")
    events.title = f"last {min(10, len(rec.events))} of {len(rec.events)} events"
    for e in rec.events[-10:]:
        _row(events, str(e.seq), _ts(e.at), e.type, e.message or "")
    out.print(events)


@runs_app.command("events")
def runs_events(
    workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every event of a run, in order."""
    rec, _ = _record(workflow_id)
    if as_json:
        print(json.dumps([e.to_dict() for e in rec.events], indent=2))
        return
    table = _table("seq", _zoned("at"), "type", "message", "detail")
    for e in rec.events:
        _row(
            table,
            str(e.seq),
            _ts(e.at),
            e.type,
            e.message or "",
            "" if e.detail is None else _short(e.detail),
        )
    out.print(table)


@runs_app.command("export")
def runs_export(workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")]) -> None:
    """The run's full record as JSON (iso-orchestrator record shape)."""
    print(_record(workflow_id)[0].to_json())


def _steer(action: Callable[[App], Any], db: str | None = None) -> Any:
    the_app = _app(db)
    try:
        return _guard(lambda: action(the_app))
    finally:
        the_app.close()


@runs_app.command("signal")
def runs_signal(
    workflow_id: Annotated[str, typer.Argument(help="The run to signal.")],
    name: Annotated[str, typer.Argument(help="The signal's name.")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON, or @file.json.")] = None,
) -> None:
    """Send a signal to a run (kept for it if it is not waiting yet)."""
    _text(workflow_id, "workflow id")
    _text(name, "signal name")
    data = _parse_json(payload, "payload")

    def send(a: App) -> tuple[bool, list[str], str]:
        woke = a.signal(workflow_id, name, data)
        run = a.get_run(workflow_id)
        return woke, a.drivers(run.workflow_name), run.workflow_name

    woke, drivers, workflow = _steer(send)
    print(f"signal {name!r} {'woke' if woke else 'kept for'} {workflow_id}")
    if woke and not drivers:
        print(
            f"note: no live process drives workflow {workflow!r}; the run waits until one "
            f"does (`tether worker --app ...`, or `tether runs resume {workflow_id} --app ...`)"
        )


@runs_app.command("event")
def runs_event(
    event_type: Annotated[str, typer.Argument(help="The event's type.")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON, or @file.json.")] = None,
) -> None:
    """Send an event to every run waiting for it."""
    _text(event_type, "event type")
    data = _parse_json(payload, "payload")
    woken = _steer(lambda a: a.send_event(event_type, data))
    print(
        f"event {event_type!r} woke {len(woken)} run(s){': ' + ', '.join(woken) if woken else ''}"
    )


@runs_app.command("complete-token")
def runs_complete_token(
    token_id: Annotated[str, typer.Argument(help="The token id from wf.create_token().")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON, or @file.json.")] = None,
) -> None:
    """Complete a manual token."""
    _text(token_id, "token id")
    data = _parse_json(payload, "payload")
    run_id = _steer(lambda a: a.complete_token(token_id, data))
    print(f"token completed for run {run_id}")


@runs_app.command("cancel")
def runs_cancel(
    workflow_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[str | None, typer.Option(help="Why, recorded on the run.")] = None,
    compensate: Annotated[
        bool, typer.Option(help="Run the completed steps' compensations.")
    ] = False,
) -> None:
    """Cancel a run, its pending waits and the children it waits on."""
    _text(workflow_id, "workflow id")
    cancelled = _steer(lambda a: a.cancel(workflow_id, reason, compensate=compensate))
    print(f"cancelled: {', '.join(cancelled)}")


@runs_app.command("resume")
def runs_resume(
    workflow_id: Annotated[str, typer.Argument(help="The run to drive on.")],
    app_ref: Annotated[
        str, typer.Option("--app", help="MODULE:app or FILE.py:app that registers its workflow.")
    ],
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the traceback of a failure.")
    ] = False,
) -> None:
    """Drive a run on in this process, with the App that registers its workflow."""
    _text(workflow_id, "workflow id")
    _drive_with(app_ref, workflow_id, traceback, lambda a, p: a.resume(workflow_id, on_event=p))


@runs_app.command("rerun")
def runs_rerun(
    workflow_id: Annotated[str, typer.Argument(help="The finished run to retry.")],
    step: Annotated[
        str, typer.Option("--from", help="The first step to run again; later ones go too.")
    ],
    app_ref: Annotated[
        str, typer.Option("--app", help="MODULE:app or FILE.py:app that registers its workflow.")
    ],
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the traceback of a failure.")
    ] = False,
) -> None:
    """Retry a finished run after a fix: forget STEP and every step after it, run again here."""
    _text(workflow_id, "workflow id")
    _text(step, "--from step name")
    _drive_with(
        app_ref, workflow_id, traceback, lambda a, p: a.rerun_from(workflow_id, step, on_event=p)
    )


def _drive_with(
    app_ref: str,
    workflow_id: str,
    traceback: bool,
    call: Callable[[App, Progress], RunResult[Any]],
) -> None:
    """Drive a run with the App named by `--app` (which registers its workflow)."""
    target = _load_object(app_ref, traceback=traceback)
    if not isinstance(target, App):
        _fail(EXIT_USAGE, f"{app_ref} is not a tether.App; give the name of one, e.g. flows.py:app")
    again = f"tether runs resume {workflow_id} --app {app_ref}"
    _drive(target, workflow_id, lambda progress: call(target, progress), again, traceback)


# -- worker -------------------------------------------------------------------------------


class _KeyValues(logging.Formatter):
    """One line per record: time, level, message, then the structured fields."""

    _plain = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in self._plain}
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.getMessage()}"
        line += "".join(f" {k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


@app.command()
def worker(
    app_ref: Annotated[str, typer.Option("--app", help="MODULE:app or FILE.py:app to serve.")],
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue(s) to work (default: default).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Jobs at once.")] = 4,
    grace: Annotated[
        float, typer.Option(help="Seconds running jobs get to finish on SIGTERM.")
    ] = 30.0,
) -> None:
    """Work queued runs until SIGTERM/SIGINT (graceful: unfinished jobs are handed back)."""
    from .worker import Worker

    target = _load_object(app_ref)
    if not isinstance(target, App):
        _fail(EXIT_USAGE, f"{app_ref} is not a tether.App")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValues())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        w = Worker(target, queues=queue or ["default"], concurrency=concurrency, grace=grace)
    except TetherError as exc:
        _fail(EXIT_USAGE, str(exc))
    _guard(w.serve)


def main() -> None:
    """Entry point of the `tether` console script."""
    app()


if __name__ == "__main__":
    main()
