"""`tether agents`: run the agent dispatcher on a WORKFLOW.md, and steer its issues.

The database follows the usual rule, with WORKFLOW.md's `database_url` in the
place of a module's App: ``--db``, else ``$TETHER_DATABASE_URL``, else
`database_url` in the file, else ``.tether/tether.db``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import click

from ..app import App
from ._agents_http import serve_with_status, status_server
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliState,
    db_option,
    db_state,
    fail,
    guard,
    out,
    printed_whole,
    text,
)
from ._db import Database, choose, open_app, require_existing
from ._format import row, ts
from ._format import table as fold_table
from .worker import log_to_stderr

__all__ = ["agents"]

T = TypeVar("T")

_DEFAULT_WORKFLOW = "WORKFLOW.md"


def _workflow(command: Callable[..., Any]) -> Callable[..., Any]:
    """The WORKFLOW.md of the dispatcher, given as a last argument (as `run` takes it)
    or as ``--workflow PATH``: `status WORKFLOW.md` was refused while `run WORKFLOW.md`
    was the way to start it. Both at once must name the same file."""
    command = click.option(
        "--workflow",
        "workflow_option",
        default=None,
        metavar="PATH",
        help="The WORKFLOW.md of the dispatcher, as the WORKFLOW.md argument. "
        f"[default: {_DEFAULT_WORKFLOW}]",
    )(command)
    return click.argument("workflow_path", required=False, metavar="[WORKFLOW.md]")(command)


def _path(argument: str | None, option: str | None) -> str:
    """The WORKFLOW.md given by argument or by --workflow (exit 2 if two are given)."""
    if argument is not None and option is not None and argument != option:
        fail(EXIT_USAGE, f"two WORKFLOW.md given: {argument} and --workflow {option}")
    return argument or option or _DEFAULT_WORKFLOW


def _open(state: CliState, path: str, *, existing: bool = True) -> tuple[Any, App, Database]:
    """The dispatcher of WORKFLOW.md at `path`, on its database. `existing`: the command
    only reads or steers issue runs, so the database must be there already (exit 4, as
    `tether runs list`), never an empty one made where a --db was mistyped."""
    try:
        from ..agents import Dispatcher, WorkflowWatcher
    except ModuleNotFoundError as exc:  # (a traceback, before)
        fail(
            EXIT_USAGE,
            f"tether agents needs the agents extra: pip install 'tether[agents]' ({exc})",
        )

    watcher = guard(lambda: WorkflowWatcher(path))
    db = choose(state.db)
    if db.source == "the default" and watcher.current.config.database_url:
        db = Database(watcher.current.config.database_url, f"database_url in {watcher.path}")
    if existing:
        require_existing(db)
    # a retry's timer parks its run, never waited out in place: a run waiting there
    # would keep its slot of the agents queue (the others queued behind it)
    app = guard(lambda: App(db.url, inline_wait=0))
    return guard(lambda: Dispatcher(app, watcher)), app, db


def _say(line: str) -> None:
    """A line of output as plain text: identifiers, errors and what an agent said come
    from trackers and agents, and a `[/x]` in them is not rich markup (it crashed)."""
    out.print(line, highlight=False, markup=False)


def _call(app: App, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return guard(lambda: app.run_sync(fn()))
    finally:
        app.close()


@click.group(no_args_is_help=True)
@db_option
def agents() -> None:
    """Dispatch tracker issues to coding agents, each issue a durable run."""


@agents.command("run")
@_workflow
@click.option(
    "--once", is_flag=True, help="One tick; drive what it dispatched until it parks, then exit."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve the status API (Symphony's /api/v1/state, /api/v1/<issue>, "
    "/api/v1/refresh), tether's API and the dashboard on this port (0: any free port). "
    "[default: server.port of WORKFLOW.md, else none]",
)
@click.option(
    "--host",
    default=None,
    help="Address of that server. [default: server.host of WORKFLOW.md, 127.0.0.1]",
)
@db_state
def agents_run(
    state: CliState,
    workflow_path: str | None,
    workflow_option: str | None,
    once: bool,
    port: int | None,
    host: str | None,
) -> None:
    """Poll the tracker and run agents on its eligible issues (until SIGTERM or Ctrl-C)."""
    if once and port is not None:  # before the start-up lines, which read as if it ran
        fail(EXIT_USAGE, "--port serves while the dispatcher runs; it cannot go with --once")
    log_to_stderr()
    dispatcher, app, db = _open(state, _path(workflow_path, workflow_option), existing=False)
    db.announce()
    served = dispatcher.config().config.server  # read at start: a change needs a restart
    port = served.port if port is None and not once else port
    host = host or served.host
    if once:
        _run_once(dispatcher, app)
        return
    web = None if port is None else status_server(dispatcher, app, db.url, host, port)
    # this process's main loop, in the main thread (signal handlers need it), as
    # `tether worker` does
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        hurried = guard(lambda: loop.run_until_complete(_serve(dispatcher, app, web)))
    finally:
        loop.close()
    if hurried:
        fail(EXIT_INTERRUPTED, "stopped at a second signal: the agents' turns were cut short")


def _run_once(dispatcher: Any, app: App) -> None:
    """One tick, what it did, and an exit code that says whether it went well. A
    signal meanwhile gives the turns in flight `shutdown_grace_ms`, as `run` does."""
    app.shutdown_grace = dispatcher.config().config.agent.shutdown_grace_ms / 1000

    async def tick_and_sweep() -> tuple[Any, list[str]]:
        # the retention chore too, as `run` does at start-up: a `--once` from cron
        # never removed the workspace of an issue that went terminal after its run
        report = await dispatcher.run_once()
        return report, ([] if app.draining else await dispatcher.cleanup())

    report, removed = _call(app, tick_and_sweep)
    for name in removed:
        _say(f"removed workspace {name}")
    for ident in report.dispatched:
        _say(f"dispatched {ident}")
    for ident, why in report.skipped.items():
        _say(f"skipped {ident}: {why}")
    for problem in report.errors:
        _say(f"error: {problem}")
    for run_id in report.failed:
        _say(f"failed: {run_id} (tether runs show {run_id})")
    _print_status(dispatcher, app)
    if not report.ok:  # scripts and CI tell a broken setup from a quiet tick
        fail(EXIT_FAILED, "the tick had errors or failed runs (see above)")


async def _serve(dispatcher: Any, app: App, web: Any) -> bool:
    """Serve until a signal; True if a second one cut the agents' grace short."""
    stop, hurried = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    grace = dispatcher.config().config.agent.shutdown_grace_ms / 1000

    signals = 0  # not `stop`: the status server sets that too when it stops

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        log = logging.getLogger("tether.agents")
        if signals > 1:  # the second: stop the agents now, their runs handed back
            log.warning("stopping the agents now")
            hurried.set()
            app.shutdown_grace = 0  # the close that follows cancels the turns at once
            task.cancel()
        else:
            log.info(f"stopping: turns in flight get {grace:g}s (a second signal stops them now)")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        if web is None:
            await dispatcher.serve(stop=stop)
        else:
            await serve_with_status(dispatcher, web, stop)
    except asyncio.CancelledError:
        if not hurried.is_set():
            raise
    finally:
        while True:  # a second signal may land in the close itself: close again, at once
            try:
                await app.aclose()
                break
            except asyncio.CancelledError:
                if not hurried.is_set():
                    raise
    return hurried.is_set()


def _print_status(
    dispatcher: Any, app: App, *, all_runs: bool = False, as_json: bool = False
) -> None:
    the_app = open_app(Database(app.database_url or "", "")) if app.database_url else app
    rows = _call(the_app, lambda: dispatcher.status(all_runs=all_runs))
    none = "no issue runs" + ("" if all_runs else " in progress (--all lists ended ones)")
    if printed_whole(rows, as_json, lambda r: r.to_dict(), none):
        return
    # folded, not cut: "agent:file…" and "/tmp/cli_…" at 100 columns named nothing
    table = fold_table(
        "issue", "state", "phase", "attempt", "run", "tokens", "cost", "why / due", "workspace"
    )
    for r in rows:
        cost = "-" if r.cost_usd is None else f"${r.cost_usd:.4f}"
        row(
            table,
            r.identifier,
            r.issue_state or "",
            r.phase
            if r.phase == r.status
            else f"{r.phase} ({r.status})",  # not "waiting (waiting)"
            "-" if r.attempt is None else str(r.attempt),
            r.run_id,
            str(r.tokens),
            cost,
            _why(r),
            r.workspace or "",
        )
    out.print(table)


def _why(r: Any) -> str:
    """The row's why / due, and for an ended run when it ended (the phase says how)."""
    if not r.ended_at:
        return str(r.why)
    when = ts(datetime.fromisoformat(r.ended_at), zone=True)
    return "; ".join(part for part in (r.why, f"ended {when}") if part)


@agents.command("status")
@_workflow
@click.option("--all", "all_runs", is_flag=True, help="Also the issues whose runs ended.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON array (its keys listed above)."
)
@db_state
def agents_status(
    state: CliState,
    workflow_path: str | None,
    workflow_option: str | None,
    all_runs: bool,
    as_json: bool,
) -> None:
    """A table of the issues: running, retrying, waiting for a person (WORKFLOW.md,
    the dispatcher's, given as the argument or as --workflow).

    \b
    With --json, one array (empty when there are none), an object an issue with:
      issue_identifier, title, state (the issue's tracker state), run_id,
      run_status (the run's: running, waiting, completed ...), phase (running,
      retrying, waiting, ended ...), attempt, reason (why it waits or failed),
      question (what a waiting agent asked), due_at (a retry's ISO time),
      workspace, tokens ({"total_tokens": n}), cost_usd (null: unknown), ended
      (how an ended run ended), ended_at (when, ISO); null where a value is not
      known. The keys of the status API's rows (`run --port`), and some.
    """
    dispatcher, app, _ = _open(state, _path(workflow_path, workflow_option))
    _print_status(dispatcher, app, all_runs=all_runs, as_json=as_json)


@agents.command("show")
@click.argument("issue")
@_workflow
@db_state
def agents_show(
    state: CliState, issue: str, workflow_path: str | None, workflow_option: str | None
) -> None:
    """One issue's latest run: phase, attempts, the prompt it got, its last events
    (WORKFLOW.md, the dispatcher's, given as the last argument or as --workflow)."""
    dispatcher, app, _ = _open(state, _path(workflow_path, workflow_option))
    ident = text(issue, "issue")

    async def show() -> tuple[Any, Any]:
        run = await dispatcher.latest_run(ident)
        return run, (await app.aget_record(run.workflow_id))

    run, record = _call(app, show)
    _say(f"{ident}: run {run.workflow_id} is {run.status.value}")
    for key, value in sorted(dispatcher.state_of(run, record.state).items()):
        if value is not None:
            _say(f"  {key}: {value}")
    prompts = [s for name, s in record.steps.items() if name.startswith("prompt")]
    if prompts and isinstance(prompts[-1].result, dict):
        _say("prompt (last attempt):")
        _say(str(prompts[-1].result.get("prompt")))
    _say("last events:")
    for e in record.events[-10:]:
        _say(f"  {e.at:%H:%M:%S} {e.type} {e.message or ''}")


# what `answer` and `retry` leave to do: the run is woken (or queued), not driven here
_DISPATCHER_GOES_ON = "; a dispatcher (`tether agents run`) takes it on at its next tick"


def _verb(
    name: str, help_text: str, method: str, *, takes_text: bool = False, then: str = ""
) -> click.Command:
    @click.command(
        name,
        help=help_text + " WORKFLOW.md, the dispatcher's, is the last argument or --workflow.",
    )
    @click.argument("issue")
    @_workflow
    @db_state
    def command(
        state: CliState,
        issue: str,
        workflow_path: str | None,
        workflow_option: str | None,
        answer: str | None = None,
    ) -> None:
        dispatcher, app, _ = _open(state, _path(workflow_path, workflow_option))
        ident = text(issue, "issue")
        args = (ident, answer) if takes_text else (ident,)
        run_id = _call(app, lambda: getattr(dispatcher, method)(*args))
        _say(f"{name}: {ident} (run {run_id}){then}")

    if takes_text:
        command = click.argument("answer")(command)
        command.params.insert(1, command.params.pop())
    return command


agents.add_command(
    _verb(
        "answer",
        "Answer an agent that asked for input; its run resumes.",
        "answer",
        takes_text=True,
        then=_DISPATCHER_GOES_ON,
    )
)
agents.add_command(
    _verb(
        "retry",
        "Try an issue again now (a waiting run resumes, an ended one is dispatched again).",
        "retry",
        then=_DISPATCHER_GOES_ON,
    )
)
agents.add_command(
    _verb("stop", "Stop an issue's agent; it is not dispatched again until `retry`.", "stop")
)
