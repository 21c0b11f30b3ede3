"""The `tether` command: run workflows, inspect and steer runs, start workers.

Exit codes:
  0  success
  1  the workflow failed (its error is printed on one line)
  2  bad usage or input: a missing file, module or function, input that is not JSON
  3  no such run (or token)
  4  store error: the database cannot be opened or is not a tether database
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import __version__
from .app import App
from .definition import WorkflowDef
from .errors import (
    InvalidArgumentError,
    RunFinishedError,
    RunNotFoundError,
    StoreError,
    TetherError,
    TokenNotFoundError,
    WorkflowNotFoundError,
)
from .record import RunRecord
from .store import RunRow

__all__ = ["app", "main"]

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STORE = 1, 2, 3, 4

app = typer.Typer(
    name="tether",
    help="Durable workflows for AI-agent harnesses. Exit codes: 0 ok, 1 workflow failed, "
    "2 bad usage or input, 3 unknown run, 4 store error.",
    no_args_is_help=True,
    add_completion=False,
)
runs_app = typer.Typer(help="Inspect and steer runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)
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
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"tether {__version__}")
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
    except InvalidArgumentError as exc:
        _fail(EXIT_USAGE, str(exc))


def _guard(fn: Callable[[], Any]) -> Any:
    """Turn tether's errors into a message and an exit code, never a traceback."""
    try:
        return fn()
    except (RunNotFoundError, TokenNotFoundError) as exc:
        _fail(EXIT_NOT_FOUND, str(exc))
    except StoreError as exc:
        _fail(EXIT_STORE, str(exc))
    except (InvalidArgumentError, WorkflowNotFoundError, RunFinishedError) as exc:
        _fail(EXIT_USAGE, str(exc))


# -- loading workflows and input --------------------------------------------------------


def _load_object(target: str) -> Any:
    """``path/to/file.py:NAME`` or ``package.module:NAME``."""
    if ":" not in target:
        _fail(EXIT_USAGE, f"{target!r}: give FILE.py:NAME or MODULE:NAME")
    where, _, name = target.rpartition(":")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            _fail(EXIT_USAGE, f"no such file: {where}")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(f"_tether_{uuid.uuid4().hex[:8]}", path)
        if spec is None or spec.loader is None:
            _fail(EXIT_USAGE, f"cannot load {where} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            _fail(EXIT_USAGE, f"cannot import module {where!r}: {exc}")
    try:
        return getattr(module, name)
    except AttributeError:
        _fail(EXIT_USAGE, f"{where} has no {name!r}")


def _parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            _fail(EXIT_USAGE, f"{what} file not found: {path}")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(
            EXIT_USAGE,
            f"{what} is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} "
            "(pass JSON, e.g. --input '{\"n\": 1}', or @file.json)",
        )


# -- progress ---------------------------------------------------------------------------


class _Progress:
    """Counts step events for the live display."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.running: dict[str, None] = {}
        self.started = time.monotonic()
        self.status = "running"

    def __call__(self, workflow_id: str, type_: str, message: str | None, detail: Any) -> None:
        name = message or ""
        if type_ == "step.started":
            self.running[name] = None
        elif type_ == "step.completed":
            self.running.pop(name, None)
            self.done += 1
        elif type_ == "step.failed":
            self.running.pop(name, None)
            self.failed += 1
        elif type_.startswith("workflow."):
            self.status = type_.split(".", 1)[1]

    def table(self) -> Table:
        t = Table.grid(padding=(0, 2))
        t.add_row(
            f"[bold]{self.status}[/bold]",
            f"steps done [green]{self.done}[/green]",
            f"running [yellow]{len(self.running)}[/yellow]",
            f"failed [red]{self.failed}[/red]",
            f"elapsed {time.monotonic() - self.started:.1f}s",
        )
        if self.running:
            t.add_row("", "now: " + ", ".join(list(self.running)[-3:]), "", "", "")
        return t


@app.command()
def run(
    target: Annotated[
        str, typer.Argument(help="FILE.py:FUNC or MODULE:FUNC of an async workflow.")
    ],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Input as JSON, or @file.json.")
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Workflow id; running the same id again resumes.")
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Initial state as JSON (new runs only).")
    ] = None,
    traceback: Annotated[bool, typer.Option(help="Print the traceback of a failure.")] = False,
) -> None:
    """Run a workflow in this process, showing progress; print its result as JSON."""
    fn = _load_object(target)
    value = _parse_json(input, "input")
    initial = _parse_json(state, "state")
    try:
        defn = WorkflowDef.of(fn)
    except InvalidArgumentError as exc:
        _fail(EXIT_USAGE, str(exc))
    the_app = _app()
    progress = _Progress()
    args: tuple[Any, ...] = () if input is None else (value,)

    def call() -> Any:
        return the_app.run(defn.fn, *args, workflow_id=id, initial_state=initial, on_event=progress)

    def execute() -> Any:
        if not out.is_terminal:
            return call()
        with Live(get_renderable=progress.table, console=out, refresh_per_second=8):
            return call()

    try:
        result = _guard(execute)
    except typer.Exit:
        raise
    except Exception as exc:
        if traceback:
            err.print_exception()
        _fail(EXIT_FAILED, f"workflow failed: {type(exc).__name__}: {exc}")
    finally:
        the_app.close()
    if not out.is_terminal:
        err.print(
            f"{result.workflow_id}: {result.status.value}, {progress.done} step(s) run here, "
            f"{progress.failed} failed",
            highlight=False,
        )
    summary = {
        "workflowId": result.workflow_id,
        "status": result.status.value,
        "result": result.record.output,
    }
    print(json.dumps(summary, indent=2, default=str))


# -- runs ---------------------------------------------------------------------------------


def _ts(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
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
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    table = Table("id", "workflow", "status", "created", "updated")
    for r in rows:
        table.add_row(
            r.workflow_id, r.workflow_name, r.status.value, _ts(r.created_at), _ts(r.updated_at)
        )
    out.print(table)


def _record(workflow_id: str) -> RunRecord:
    the_app = _app()
    try:
        rec: RunRecord = _guard(lambda: the_app.get_record(workflow_id))
        return rec
    finally:
        the_app.close()


@runs_app.command("show")
def runs_show(workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")]) -> None:
    """A run's summary, its steps and its last events."""
    rec = _record(workflow_id)
    out.print(
        f"[bold]{rec.workflow_id}[/bold]  workflow {rec.workflow_name}"
        f"{'@' + rec.workflow_version if rec.workflow_version else ''}  status "
        f"[bold]{rec.status.value}[/bold]  created {_ts(rec.created_at)}  updated {_ts(rec.updated_at)}"
    )
    if rec.last_error:
        out.print(
            f"[red]last error:[/red] {rec.last_error.get('type')}: {rec.last_error.get('message')}"
        )
    steps = Table("step", "status", "attempts", "completed", "error")
    for name, s in rec.steps.items():
        steps.add_row(
            name,
            s.status.value,
            str(s.attempts),
            _ts(s.completed_at),
            "" if not s.error else f"{s.error.get('type')}: {s.error.get('message')}",
        )
    out.print(steps)
    events = Table("seq", "at", "type", "message")
    for e in rec.events[-10:]:
        events.add_row(str(e.seq), _ts(e.at), e.type, e.message or "")
    out.print(events)


@runs_app.command("events")
def runs_events(
    workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every event of a run, in order."""
    rec = _record(workflow_id)
    if as_json:
        print(json.dumps([e.to_dict() for e in rec.events], indent=2))
        return
    table = Table("seq", "at", "type", "message", "detail")
    for e in rec.events:
        table.add_row(
            str(e.seq),
            _ts(e.at),
            e.type,
            e.message or "",
            "" if e.detail is None else json.dumps(e.detail),
        )
    out.print(table)


@runs_app.command("export")
def runs_export(workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")]) -> None:
    """The run's full record as JSON (iso-orchestrator record shape)."""
    print(_record(workflow_id).to_json())


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
    data = _parse_json(payload, "payload")
    woke = _steer(lambda a: a.signal(workflow_id, name, data))
    out.print(f"signal {name!r} {'woke' if woke else 'kept for'} {workflow_id}")


@runs_app.command("event")
def runs_event(
    event_type: Annotated[str, typer.Argument(help="The event's type.")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON, or @file.json.")] = None,
) -> None:
    """Send an event to every run waiting for it."""
    data = _parse_json(payload, "payload")
    woken = _steer(lambda a: a.send_event(event_type, data))
    out.print(
        f"event {event_type!r} woke {len(woken)} run(s){': ' + ', '.join(woken) if woken else ''}"
    )


@runs_app.command("complete-token")
def runs_complete_token(
    token_id: Annotated[str, typer.Argument(help="The token id from wf.create_token().")],
    payload: Annotated[str | None, typer.Option(help="Payload as JSON, or @file.json.")] = None,
) -> None:
    """Complete a manual token."""
    data = _parse_json(payload, "payload")
    run_id = _steer(lambda a: a.complete_token(token_id, data))
    out.print(f"token completed for run {run_id}")


@runs_app.command("cancel")
def runs_cancel(
    workflow_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[str | None, typer.Option(help="Why, recorded on the run.")] = None,
    compensate: Annotated[
        bool, typer.Option(help="Run the completed steps' compensations.")
    ] = False,
) -> None:
    """Cancel a run, its pending waits and the children it waits on."""
    cancelled = _steer(lambda a: a.cancel(workflow_id, reason, compensate=compensate))
    out.print(f"cancelled: {', '.join(cancelled)}")


@runs_app.command("resume")
def runs_resume(
    workflow_id: Annotated[str, typer.Argument(help="The run to drive on.")],
    app_ref: Annotated[
        str, typer.Option("--app", help="MODULE:app or FILE.py:app that registers its workflow.")
    ],
) -> None:
    """Drive a run on in this process, with the App that registers its workflow."""
    target = _load_object(app_ref)
    if not isinstance(target, App):
        _fail(EXIT_USAGE, f"{app_ref} is not a tether.App")
    try:
        result = _guard(lambda: target.resume(workflow_id))
    except typer.Exit:
        raise
    except Exception as exc:
        _fail(EXIT_FAILED, f"workflow failed: {type(exc).__name__}: {exc}")
    finally:
        target.close()
    print(
        json.dumps(
            {
                "workflowId": workflow_id,
                "status": result.status.value,
                "result": result.record.output,
            },
            indent=2,
            default=str,
        )
    )


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
