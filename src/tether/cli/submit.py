"""`tether submit`: queue a run for the workers, from a shell or a cron job."""

from __future__ import annotations

import shlex

import click

from ..app import App
from ..store import RunStatus
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliState,
    db_state,
    exit_code,
    fail,
    guard,
    note,
    one_line,
    out,
    print_json,
    text,
)
from ._format import error_text, start_hint
from .run import _require_recorded_input, load_run

__all__ = ["submit"]


@click.command(no_args_is_help=True, short_help="Queue a run for the workers; print its id.")
@click.argument("target", metavar="FILE.py:FUNC|MODULE:FUNC")
@click.option(
    "--input", "-i", "input_json", metavar="JSON|@FILE", help="Input as JSON, or @file.json."
)
@click.option(
    "--id",
    "workflow_id",
    metavar="ID",
    help="Workflow id; submitting the same id again gives that run, not a second one.",
)
@click.option(
    "--queue", "-q", default="default", show_default=True, metavar="NAME",
    help="The job queue whose workers run it (`tether worker -q NAME`).",
)  # fmt: skip
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option(
    "--wait", is_flag=True, help="Wait for the run's end; print its result as `tether run` does."
)
@click.option("--traceback", is_flag=True, help="Print the traceback of a failure to load.")
@db_state
def submit(
    state: CliState,
    target: str,
    input_json: str | None,
    workflow_id: str | None,
    queue: str,
    priority: int,
    wait: bool,
    traceback: bool,
) -> None:
    """Queue a run of a workflow for the workers and print its id.

    Nothing runs here: a worker serving the queue (`tether worker --app
    FILE.py:app -q QUEUE`) claims it, so the run goes on when this command,
    or its machine, is gone. The workflow is named as for `tether run`. With
    --wait, the command waits for the run's end, prints its result as JSON
    and exits 1 if it failed or was cancelled; Ctrl-C stops the waiting, not
    the run. A queue no live worker serves is said on stderr: the run waits
    there until one starts.
    """
    text(queue, "--queue")
    defn, args, run_id, the_app = load_run(state, target, input_json, workflow_id, traceback)
    try:
        if input_json is None and defn.input_required:
            guard(lambda: _require_recorded_input(the_app, defn, workflow_id))
        guard(
            lambda: the_app.submit(
                defn.fn, *args, workflow_id=run_id, queue=queue, priority=priority
            )
        )
        _say_where(the_app, defn.name, run_id, queue)
        if not wait:
            out.print(run_id, highlight=False, soft_wrap=True, markup=False)
            return
        _wait_and_print(the_app, run_id)
    finally:
        the_app.close()


def _say_where(the_app: App, workflow: str, run_id: str, queue: str) -> None:
    """On stderr, where the run waits when no live worker serves its queue. An id
    submitted again answers with the run already there: "no live worker serves queue
    'other' yet: run X waits there" was said of a run on another queue, of one that
    `tether run` had started on none, and of one that had already ended."""
    info = guard(lambda: the_app.get_run(run_id))
    if info.status.terminal:
        return
    if info.queue != queue:
        where = (
            f"queue {info.queue!r}" if info.queue else "no queue (it was started, not submitted)"
        )
        note(f"run {run_id} already exists, on {where}; it stays there, not on queue {queue!r}")
        if info.queue is None:
            return
        queue = info.queue
    if not guard(lambda: the_app.drivers(workflow, queue)):
        note(
            f"no live worker serves queue {queue!r} yet: run {run_id} waits there "
            f"until one starts ({start_hint(workflow, queue)})"
        )


def _wait_and_print(the_app: App, run_id: str) -> None:
    """Wait for the run's end; its result as `tether run` prints it; exit 1 unless it
    completed."""
    try:
        the_app.result(run_id)
        record = the_app.get_record(run_id)
    except KeyboardInterrupt:
        fail(
            EXIT_INTERRUPTED,
            f"stopped waiting; run {run_id} goes on on the workers "
            f"(`tether runs watch {shlex.quote(run_id)}`)",
        )
    except Exception as exc:  # the store's, or a failure raised again
        fail(exit_code(exc) or EXIT_FAILED, one_line(exc))
    print_json({"workflowId": run_id, "status": record.status.value, "result": record.output})
    if record.status is RunStatus.FAILED:
        fail(EXIT_FAILED, f"run {run_id} failed: {error_text(record.last_error)}")
    if record.status is not RunStatus.COMPLETED:
        fail(EXIT_FAILED, f"run {run_id} ended {record.status.value}")
