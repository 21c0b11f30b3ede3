"""`tether run`: run (or resume) one workflow in this process."""

from __future__ import annotations

import shlex
import unicodedata
import uuid
from types import ModuleType
from typing import Any

import click

from ..app import App, RunResult
from ..definition import WorkflowDef
from ..errors import RunNotFoundError
from ._common import CliState, db_state, guard, text
from ._db import bind, choose, given_db, open_app
from ._drive import drive
from ._load import UsageError, load_target, module_app, parse_json, validate_input, workflow_def
from ._progress import Progress

__all__ = ["load_run", "run"]


@click.command(
    no_args_is_help=True, short_help="Run (or resume) a workflow here; print its result."
)
@click.argument("target", metavar="FILE.py:FUNC|MODULE:FUNC")
@click.option(
    "--input", "-i", "input_json", metavar="JSON|@FILE", help="Input as JSON, or @file.json."
)
@click.option(
    "--id", "workflow_id", metavar="ID", help="Workflow id; running the same id again resumes."
)
@click.option("--state", "state_json", metavar="JSON|@FILE", help="Initial state as JSON.")
@click.option("--traceback", is_flag=True, help="Print the traceback of a failure.")
@db_state
def run(
    state: CliState,
    target: str,
    input_json: str | None,
    workflow_id: str | None,
    state_json: str | None,
    traceback: bool,
) -> None:
    """Run (or resume) a workflow in this process and print its result as JSON.

    The workflow is `async def f(wf)` or `async def f(wf, input)`, named as
    FILE.py:FUNC (a path) or MODULE:FUNC (an importable module). Progress is shown live on a terminal;
    otherwise one summary line goes to stderr, so stdout carries only the
    JSON. Completed steps of a resumed run are answered from the record, not
    run again. When the module defines a tether App, the run uses it (and
    its database, unless --db or $TETHER_DATABASE_URL say otherwise).
    """
    initial = guard(lambda: parse_json(state_json, "state"))
    defn, args, run_id, the_app = load_run(state, target, input_json, workflow_id, traceback)

    def call(progress: Progress) -> RunResult[Any]:
        if input_json is None and defn.input_required:
            _require_recorded_input(the_app, defn, workflow_id)
        return the_app.run(
            defn.fn, *args, workflow_id=run_id, initial_state=initial, on_event=progress
        )

    again = f"tether run {shlex.quote(target)} --id {shlex.quote(run_id)}{given_db(state)}"
    drive(the_app, run_id, call, again, traceback)


def load_run(
    state: CliState, target: str, input_json: str | None, workflow_id: str | None, traceback: bool
) -> tuple[WorkflowDef, tuple[Any, ...], str, App]:
    """What `run` and `submit` start: the workflow, its input checked against its
    declared type (as the args to pass), the run's id, and the App on the database the
    rule picks; each bad part ends the command with exit 2 before anything is made."""
    if workflow_id is not None:
        text(workflow_id, "--id")
    fn, module = guard(lambda: load_target(target), traceback=traceback)
    value = guard(lambda: parse_json(input_json, "input"))
    defn: WorkflowDef = guard(lambda: workflow_def(target, fn, module))
    args: tuple[Any, ...] = ()
    if input_json is not None:
        args = (guard(lambda: validate_input(defn, value)),)
    run_id = workflow_id or f"{defn.name}-{uuid.uuid4().hex[:12]}"
    the_app = _app_for(state, module, target.rpartition(":")[0])
    if workflow_id is not None and any(unicodedata.category(c) == "Cc" for c in workflow_id):
        _refuse_new_control_id(the_app, workflow_id)
    return defn, args, run_id, the_app


def _refuse_new_control_id(the_app: App, workflow_id: str) -> None:
    """Exit 2 if `workflow_id` (holding a control character) would name a new run: a
    newline split it over two rows of `runs list`, the second read as a blank run. A run
    of that id already made (through the API) is still run or submitted again."""
    try:
        the_app.get_run(workflow_id)
    except RunNotFoundError:
        the_app.close()
        text(workflow_id, "--id", new=True)


def _app_for(state: CliState, module: ModuleType, where: str) -> App:
    """The module's App (on the database the rule picks), else a bare App there."""
    found: App | None = module_app(module)
    db = choose(state.db, found, where)
    the_app = bind(found, db) if found is not None else open_app(db)
    db.announce()
    return the_app


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
