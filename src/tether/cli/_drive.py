"""Driving a run in this process (`run`, `runs resume`, `runs rerun`,
`runs retry-compensations`): live progress,
the result as JSON on stdout, and the exit code by how the run ended."""

from __future__ import annotations

import shlex
import sys
import traceback as tb
from collections.abc import Callable
from typing import Any, NoReturn

from rich.live import Live

from .._failure import ErrorRecord
from .._info import WaitInfo
from ..app import App, RunResult
from ..errors import RunFailedError, TetherError
from ..store import EndReason, RunStatus, WaitKind
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    err,
    exit_code,
    fail,
    note,
    one_line,
    out,
    print_json,
)
from ._db import db_flag
from ._open_waits import open_waits, send_command
from ._progress import Progress

__all__ = ["FAILED_ENDS", "drive"]


def drive(
    the_app: App,
    workflow_id: str,
    call: Callable[[Progress], RunResult[Any]],
    again: str,
    traceback: bool,
    *,
    undo_again: str | None = None,
) -> None:
    """Drive a run with live progress (on a terminal), print its result, exit by outcome.
    `undo_again`: the run's compensations were retried (`runs retry-compensations`),
    the command that tries them once more; compensated is then a success."""
    progress = Progress(workflow_id)
    try:
        if out.is_terminal:
            with Live(progress, console=out, refresh_per_second=8, transient=True):
                result = call(progress)
        else:
            result = call(progress)
        waits = _how_to_wake(the_app, result)
    except KeyboardInterrupt:
        fail(
            EXIT_INTERRUPTED,
            f"interrupted; run {workflow_id} keeps its completed steps: resume it with `{again}`",
        )
    except SystemExit as exc:  # SIGTERM, made a normal exit: the run was handed back
        if exc.code != EXIT_TERMINATED:
            raise
        fail(
            EXIT_TERMINATED,
            f"stopped (SIGTERM); run {workflow_id} keeps its completed steps: resume it with "
            f"`{again}`",
        )
    except Exception as exc:
        _run_failed(exc, progress, _failed_before(the_app, workflow_id), traceback)
    finally:
        the_app.close()
    err.print(progress.summary(result.record), highlight=False, soft_wrap=True, markup=False)
    if waits:
        err.print(waits, highlight=False, soft_wrap=True, markup=False)
    print_json(
        {
            "workflowId": result.workflow_id,
            "status": result.status.value,
            "result": result.record.output,
        }
    )
    if undo_again is not None:
        _undone(workflow_id, result.status, undo_again)
        return
    if result.status is RunStatus.CANCELLED:
        fail(EXIT_FAILED, f"run {workflow_id} was cancelled")
    if result.status in (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED):
        # a failed run raised above: this one was cancelled, then compensated
        how = (
            "its compensations ran"
            if result.status is RunStatus.COMPENSATED
            else ("a compensation failed: `tether runs show` says which")
        )
        fail(EXIT_FAILED, f"run {workflow_id} was cancelled; {how}")


def _undone(workflow_id: str, status: RunStatus, again: str) -> None:
    """Exit 0 once a retry of the run's compensations undid all it had to (or handed a
    queued run to its workers), else 1."""
    if status in (RunStatus.PENDING, RunStatus.CANCELLED):  # queued: workers compensate it
        note(
            f"run {workflow_id} is queued again: a worker of its queue runs its "
            f"compensations (`tether runs watch {shlex.quote(workflow_id)}` follows it)"
        )
        return
    if status is RunStatus.COMPENSATION_FAILED:
        fail(
            EXIT_FAILED,
            f"run {workflow_id}: a compensation failed again (`tether runs show` says "
            f"which and why); after a fix, try them once more with `{again}`",
        )
    if status is not RunStatus.COMPENSATED:  # a queued run's workers have not ended it
        fail(EXIT_FAILED, f"run {workflow_id} is {status.value}")


def _wake_text(w: WaitInfo, rid: str, db: str) -> str:
    command = send_command(w, rid, db)
    if command is not None:
        what = f"token {w.id}" if w.kind is WaitKind.TOKEN else f"{w.kind.value} {w.name!r}"
        return f"{what} (`{command}`)"
    if w.kind is WaitKind.TIMER:
        due = f" due {w.due_at:%Y-%m-%d %H:%M:%S} UTC" if w.due_at else ""
        return f"a timer{due} (a worker or `tether serve --app` wakes it)"
    return f"child run {w.name!r}"


def _how_to_wake(the_app: App, result: RunResult[Any]) -> str | None:
    """For a run that parked: what it waits for, and the command that sends each (the
    JSON said only "waiting"), with the --db that command needs to find the run."""
    if result.status is not RunStatus.WAITING:
        return None
    try:
        waits = the_app.list_waits(result.workflow_id)
    except TetherError:
        return None
    rid, db = shlex.quote(result.workflow_id), db_flag(the_app.database_url)
    pending = [_wake_text(w, rid, db) for w in open_waits(waits)]
    return f"run {result.workflow_id} waits for " + "; ".join(pending) if pending else None


def _failed_before(the_app: App, workflow_id: str) -> tuple[ErrorRecord, RunStatus] | None:
    """The error the run had failed with before this command drove it (asked again,
    the App answers with it, and no `workflow.failed` event comes), and its status
    (compensated after, or not), else None. A run compensated after its failure was
    left out: its recorded error, given back, was said as "stopped", as for a bug."""
    try:
        run = the_app.get_run(workflow_id)
    except TetherError:  # the store is the trouble: the error itself says so
        return None
    failed = run.status is RunStatus.FAILED or run.end_reason in FAILED_ENDS
    record = run.error_record if failed else None
    return None if record is None else (record, run.status)


FAILED_ENDS = (EndReason.FAILED, EndReason.TIMED_OUT)  # its function raised, or ran too long


def _after_failure(workflow_id: str, status: RunStatus) -> str:
    """What to do with a run that had failed, by what became of it since."""
    rid = shlex.quote(workflow_id)
    if status is RunStatus.COMPENSATION_FAILED:
        return (
            "a compensation failed after it (`tether runs show` says which): try them again "
            f"after a fix with `tether runs retry-compensations {rid} --app FILE.py:APP`"
        )
    if status is RunStatus.COMPENSATED:
        return "its compensations undid its steps: start a new run under another --id"
    return (
        f"retry it after a fix with `tether runs rerun {rid} --from STEP --app FILE.py:APP` "
        "(the App that registers its workflow), or start a new run under another --id"
    )


def _is_recorded(exc: Exception, failed_with: ErrorRecord | None) -> bool:
    """Whether `exc` is the run's recorded failure given back, rather than the command's
    own refusal (`runs rerun --from` a step the run has not: exit 2, not "failed"); a
    tether error must say what the recorded one said (a run may fail on one too)."""
    if failed_with is None:
        return False
    if isinstance(exc, RunFailedError):
        return True
    if type(exc).__name__ != failed_with.type:
        return False
    return not isinstance(exc, TetherError) or one_line(exc) == one_line(
        Exception(failed_with.message)
    )


def _run_failed(
    exc: Exception,
    progress: Progress,
    failed: tuple[ErrorRecord, RunStatus] | None,
    traceback: bool,
) -> NoReturn:
    """Exit 1 if the workflow's own failure was recorded (now, or by an earlier command:
    `failed`: its recorded error and status since), else 2/3/4 by the error's kind."""
    if traceback:
        sys.stderr.write("".join(tb.format_exception(exc)))  # unwrapped: paths stay whole
    workflow_id = progress.workflow_id
    if progress.run_failed:
        fail(EXIT_FAILED, f"run {workflow_id} failed: {type(exc).__name__}: {one_line(exc)}")
    if failed is not None and _is_recorded(exc, failed[0]):
        what = (  # a class the App could not find again: the recorded one is named
            f"{exc.error_type}: {' '.join(exc.message.split()) or '(no message)'}"
            if isinstance(exc, RunFailedError)
            else f"{type(exc).__name__}: {one_line(exc)}"
        )
        fail(
            EXIT_FAILED,
            f"run {workflow_id} failed: {what} (it had already failed: this is its recorded "
            f"error; {_after_failure(workflow_id, failed[1])})",
        )
    code = exit_code(exc)
    if code is None:  # not tether's: a bug somewhere, reported all the same
        fail(EXIT_FAILED, f"run {workflow_id} stopped: {type(exc).__name__}: {one_line(exc)}")
    fail(code, one_line(exc))
