"""`tether runs signal|event|complete-token|cancel|resume|rerun|retry-compensations`:
steer runs."""

from __future__ import annotations

import functools
import logging
import shlex
from collections.abc import Callable
from typing import Any

import click

from .. import RunInfo, WaitInfo
from ..ai import Budget
from ..app import App, RunResult
from ..store import RunStatus, WaitKind, WaitStatus
from ._common import EXIT_USAGE, CliState, app_option, db_state, fail, guard, note, text
from ._db import given_db, use_app
from ._drive import FAILED_ENDS, drive
from ._format import AGENT_RUNS, resume_hint, start_hint
from ._load import UsageError, parse_json
from ._progress import Progress
from .prune import with_app
from .worker import load_app

__all__ = ["COMMANDS"]

_PAYLOAD = click.option("--payload", metavar="JSON|@FILE", help="Payload as JSON, or @file.json.")
_APP = app_option("The App that registers the run's workflow.", required=True)
_TRACEBACK = click.option("--traceback", is_flag=True, help="Print the traceback of a failure.")


def _wait_text(w: WaitInfo) -> str:
    if w.kind is WaitKind.TIMER:
        return "a timer" + (f" (due {w.due_at.isoformat()})" if w.due_at else "")
    if w.kind is WaitKind.RUN:
        return f"child run {w.name!r}"
    return f"{w.kind.value} {w.name!r}"


def _refuse_unawaited(run: RunInfo, waits: list[WaitInfo], name: str) -> None:
    """A parked run that waits for other things than signal `name`: most likely a typo."""
    pending = [w for w in waits if w.status is WaitStatus.PENDING]
    if run.status is not RunStatus.WAITING or not pending:
        return  # not parked yet: the signal is kept until the run waits for it
    if any(w.kind is WaitKind.SIGNAL and w.name == name for w in pending):
        return
    fail(
        EXIT_USAGE,
        f"run {run.workflow_id} does not wait for signal {name!r}; it waits for "
        f"{', '.join(_wait_text(w) for w in pending)}. Check the name, or pass --keep "
        "to keep the signal for a later wait",
    )


def _answered(before: list[WaitInfo], after: list[WaitInfo], name: str) -> str | None:
    """The key of a wait for signal `name` pending before the send and resolved after it:
    the signal went to a run that was not parked (one item of a `for_each` waiting while
    another ran a step), which `App.signal` answers False for, as for a signal kept. It
    was said kept, "it gets it when it waits", of a run that had already taken it."""
    pending = {
        w.key
        for w in before
        if w.kind is WaitKind.SIGNAL and w.name == name and w.status is WaitStatus.PENDING
    }
    return next(
        (w.key for w in after if w.key in pending and w.status is WaitStatus.RESOLVED), None
    )


def _who_drives(a: App, run: RunInfo) -> str:
    """Whether anything will move the woken run on now, said truthfully."""
    open_jobs = [j for j in a.jobs(run.workflow_id) if j.status in ("queued", "claimed")]
    queue = open_jobs[0].queue if open_jobs else None
    drivers = a.drivers(run.workflow_name, queue)
    resume = (
        f"start {start_hint(run.workflow_name)}"
        if run.workflow_name == AGENT_RUNS
        else f"{resume_hint(run.workflow_id)} drives it here, "
        f"or start {start_hint(run.workflow_name)}"
    )
    if queue is not None:
        if drivers:
            return f"a worker on queue {queue!r} will drive it ({', '.join(drivers)} alive)"
        return (
            f"it is queued on {queue!r}, but no worker serving that queue and workflow "
            f"{run.workflow_name!r} is running; start {start_hint(run.workflow_name, queue)}"
        )
    if drivers:
        return f"driven by {', '.join(drivers)}"
    return f"nothing drives it now: it sits {run.status.value}; {resume}"


@click.command("signal")
@click.argument("workflow_id", metavar="RUN_ID")
@click.argument("name", metavar="NAME")
@_PAYLOAD
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the signal for a later wait, even if the run waits for other things now.",
)
@db_state
def signal(state: CliState, workflow_id: str, name: str, payload: str | None, keep: bool) -> None:
    """Send signal NAME to a run.

    A run that waits for other things is refused (a typo, most likely) unless
    --keep; a run that does not wait yet keeps the signal until it does.
    """
    text(workflow_id, "run id")
    text(name, "signal name")
    data = guard(lambda: parse_json(payload, "payload"))

    def send(a: App) -> str:
        run, waits = a.get_run(workflow_id), a.list_waits(workflow_id)
        if not keep:
            _refuse_unawaited(run, waits, name)
        if a.signal(workflow_id, name, data):
            return f"signal {name!r} woke {workflow_id}; " + _who_drives(a, a.get_run(workflow_id))
        taken = _answered(waits, a.list_waits(workflow_id), name)
        if taken is not None:  # a run not parked (a for_each sibling still working)
            return f"signal {name!r} answered {workflow_id}'s wait {taken}; the run goes on with it"
        return f"signal {name!r} kept for {workflow_id}: it gets it when it waits for {name!r}"

    # the note printed says it better than tether's own log lines; for this command only
    # (called in-process, by a test or a program, the level it set stayed for good)
    logger = logging.getLogger("tether")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        said = use_app(state, send)
    finally:
        logger.setLevel(level)
    print(said)


def _sends(
    name: str, argument: str, metavar: str, what: str
) -> Callable[[Callable[[CliState, str, Any], None]], click.Command]:
    """A command that sends a --payload to the one thing its ARGUMENT names: the
    function gets the state, the argument (checked as `what`) and the payload's data."""

    def make(fn: Callable[[CliState, str, Any], None]) -> click.Command:
        @functools.wraps(fn)
        def command(state: CliState, payload: str | None, **given: str) -> None:
            value = text(given[argument], what)
            fn(state, value, guard(lambda: parse_json(payload, "payload")))

        options = _PAYLOAD(db_state(command))
        return click.command(name)(click.argument(argument, metavar=metavar)(options))

    return make


@_sends("event", "event_type", "TYPE", "event type")
def event(state: CliState, event_type: str, data: Any) -> None:
    """Send an event of type TYPE to every run waiting for it."""
    woken = use_app(state, lambda a: a.send_event(event_type, data))
    print(
        f"event {event_type!r} woke {len(woken)} run(s){': ' + ', '.join(woken) if woken else ''}"
    )


@_sends("complete-token", "token_id", "TOKEN_ID", "token id")
def complete_token(state: CliState, token_id: str, data: Any) -> None:
    """Complete a token made by wf.create_token()."""
    run_id = use_app(state, lambda a: a.complete_token(token_id, data))
    print(f"token completed for run {run_id}")


@click.command("cancel", short_help="Cancel a run (and the children it waits on).")
@click.argument("workflow_id", metavar="RUN_ID")
@click.option("--reason", metavar="TEXT", help="Why, recorded on the run.")
@click.option("--compensate", is_flag=True, help="Run the completed steps' compensations.")
@app_option(
    "The App of the run's workflow: needed to cancel the provider batches "
    "(wf.ai.batch, batch stages) the run has out, which only its providers can reach."
)
@click.option(
    "--abandon-batches",
    is_flag=True,
    help="Cancel even though provider batches the run has out cannot be reached "
    "(they run on at the provider, billed).",
)
@db_state
def cancel(
    state: CliState,
    workflow_id: str,
    reason: str | None,
    compensate: bool,
    app_ref: str | None,
    abandon_batches: bool,
) -> None:
    """Cancel a run, its pending waits and the children it waits on.

    A run with provider batches out is refused (exit 2) unless --app names the
    App whose providers can cancel them, or --abandon-batches leaves them."""
    text(workflow_id, "run id")

    def act(a: App) -> tuple[list[str], str | None]:
        cancelled = a.cancel(
            workflow_id, reason, compensate=compensate, abandon_batches=abandon_batches
        )
        return cancelled, a.get_run(workflow_id).queue

    cancelled, queue = with_app(state, app_ref, act)
    print(f"cancelled: {', '.join(cancelled)}")
    if compensate and cancelled and queue is not None:
        note(f"a worker of queue {queue!r} runs the compensations")
    elif compensate and cancelled:
        note(
            "the compensations run where the workflow is registered: "
            f"{resume_hint(workflow_id)} runs them here, and an "
            "App's recover_orphans() picks them up"
        )


@click.command("resume", short_help="Drive a run on in this process.")
@click.argument("workflow_id", metavar="RUN_ID")
@_APP
@_TRACEBACK
@db_state
def resume(state: CliState, workflow_id: str, app_ref: str, traceback: bool) -> None:
    """Drive a run on in this process, with the App that registers its workflow."""
    text(workflow_id, "run id")
    _drive_with(state, app_ref, workflow_id, traceback, lambda a, p: _resume(a, workflow_id, p))


def _resume(a: App, workflow_id: str, progress: Progress) -> RunResult[Any]:
    """`App.resume`, but a run cancelled (or compensated after) with nothing left to
    run needs no workflow: its record is the answer, as the run's own App gives it.
    An App without the workflow said "no workflow registered", not that it had ended."""
    run = a.get_run(workflow_id)
    cancelled = run.status in _CANCELLED and run.end_reason not in FAILED_ENDS
    if cancelled and run.settled and run.workflow_name not in a.workflows:
        note(f"run {workflow_id} has ended ({run.status.value}): nothing of it is left to run")
        return RunResult(None, a.get_record(workflow_id))
    return a.resume(workflow_id, on_event=progress)


# how a cancelled run ends; a failed or completed one (compensated after, too) the App
# answers for without its workflow already: its recorded error raised again, its result
_CANCELLED = (RunStatus.CANCELLED, RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)


@click.command("rerun", short_help="Retry a finished run from a step or stage, here.")
@click.argument("workflow_id", metavar="RUN_ID")
@click.option(
    "--from",
    "step",
    required=True,
    metavar="STEP|STAGE",
    help="The first step to run again (later ones go too), a wait's key "
    "(signal:NAME#1, child:ID), or a pipeline stage id "
    "(its group and every later group go, with their files).",
)
@click.option(
    "--budget",
    metavar="JSON|@FILE",
    help="A new AI budget for the run, e.g. '{\"max_usd\": 5}' (fields of ai.Budget: "
    "max_usd, max_tokens, warn_at, on_exceed, key); the calls already made count against it.",
)
@_APP
@_TRACEBACK
@db_state
def rerun(
    state: CliState,
    workflow_id: str,
    step: str,
    budget: str | None,
    app_ref: str,
    traceback: bool,
) -> None:
    """Retry a finished run after a fix: forget STEP (or STAGE) and all after it, run again.

    A run that failed on its AI budget goes on with --budget's larger one."""
    text(workflow_id, "run id")
    text(step, "--from step name")
    new_budget = guard(lambda: Budget.of(parse_json(budget, "budget")))
    _drive_with(
        state,
        app_ref,
        workflow_id,
        traceback,
        lambda a, p: _rerun(a, workflow_id, p, step, new_budget),
    )


def _rerun(
    a: App, workflow_id: str, progress: Progress, step: str, budget: Budget | None
) -> RunResult[Any]:
    """`App.rerun_from`, a run it refuses refused first in the command's words: the
    App's own refusal named its Python method (`rerun_from`) to a user at a shell."""
    run = a.get_run(workflow_id)
    wid, status = repr(workflow_id), run.status
    if not status.terminal:
        raise UsageError(
            f"run {wid} is {status.value}; `tether runs rerun` takes a run that has ended "
            f"(completed or failed): wait for it to end ({_watch(workflow_id)} follows it)"
        )
    if status is RunStatus.CANCELLED:
        raise UsageError(
            f"run {wid} was cancelled; `tether runs rerun` retries a run that completed or "
            "failed, not one stopped on purpose: start a new run instead"
        )
    if status in (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED):
        raise UsageError(
            f"run {wid} is {status.value}: its compensations undid its completed steps, so "
            "their recorded results no longer hold and `tether runs rerun` cannot go on "
            "from them: start a new run instead"
        )
    return a.rerun_from(workflow_id, step, on_event=progress, budget=budget)


def _retry_undo(a: App, workflow_id: str, progress: Progress) -> RunResult[Any]:
    """`App.retry_compensations`, a run it refuses refused first in the command's words:
    the App's own refusal named a Python method (`rerun_from`) to a user at a shell."""
    run = a.get_run(workflow_id)
    wid, status, rid = repr(workflow_id), run.status, shlex.quote(workflow_id)
    if status is RunStatus.COMPENSATED:
        raise UsageError(f"run {wid} is compensated: every compensation it had ran")
    if not status.terminal:
        raise UsageError(
            f"run {wid} is {status.value}: it has not ended, and a run's compensations run "
            f"as it ends; retry them once it is compensation_failed ({_watch(workflow_id)} "
            "follows it)"
        )
    if not run.settled:  # cancelled with compensate=True, its compensations not run yet
        raise UsageError(
            f"run {wid} is cancelled and its compensations have not run yet: a worker of "
            f"its queue, or `tether runs resume {rid} --app FILE.py:APP`, runs them"
        )
    if status is not RunStatus.COMPENSATION_FAILED:
        rerun = (
            f"`tether runs rerun {rid} --from STEP --app FILE.py:APP` retries a completed or "
            "failed run"
        )
        raise UsageError(
            f"run {wid} is {status.value}; only a compensation_failed run has "
            "compensations to retry" + ("" if status is RunStatus.CANCELLED else f" ({rerun})")
        )
    return a.retry_compensations(workflow_id, on_event=progress)


def _watch(workflow_id: str) -> str:
    return f"`tether runs watch {shlex.quote(workflow_id)}`"


@click.command(
    "retry-compensations",
    short_help="Try the failed compensations of a run again, here.",
)
@click.argument("workflow_id", metavar="RUN_ID")
@_APP
@_TRACEBACK
@db_state
def retry_compensations(state: CliState, workflow_id: str, app_ref: str, traceback: bool) -> None:
    """Try again the compensations of a compensation_failed run, after a fix.

    Those that failed run again (newest first, with their retries); those that
    completed are not run twice, and the run's own failure is not run again.
    Exits 0 once the run is compensated, 1 if a compensation failed again, 2 for
    a run that is not compensation_failed (nothing is changed)."""
    text(workflow_id, "run id")
    undo_again = f"tether runs retry-compensations {shlex.quote(workflow_id)} "
    undo_again += f"--app {shlex.quote(app_ref)}{given_db(state)}"
    _drive_with(
        state,
        app_ref,
        workflow_id,
        traceback,
        lambda a, p: _retry_undo(a, workflow_id, p),
        undo_again=undo_again,
    )


def _drive_with(
    state: CliState,
    app_ref: str,
    workflow_id: str,
    traceback: bool,
    call: Callable[[App, Progress], RunResult[Any]],
    *,
    undo_again: str | None = None,
) -> None:
    """Drive a run with the App named by `--app` (which registers its workflow)."""
    the_app, db = load_app(state, app_ref, existing=True, traceback=traceback)
    db.announce()
    again = f"tether runs resume {shlex.quote(workflow_id)} --app {shlex.quote(app_ref)}"
    again += given_db(state)
    drive(
        the_app,
        workflow_id,
        lambda progress: call(the_app, progress),
        again,
        traceback,
        undo_again=undo_again,
    )


COMMANDS = (signal, event, complete_token, cancel, resume, rerun, retry_compensations)
