"""`tether worker`: work queued runs until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._floors import WORKER_DEFAULTS, WORKER_FLOORS, worker_timing
from ..app import App
from ..errors import TetherError
from ._common import EXIT_USAGE, CliState, app_option, db_state, fail, guard, text
from ._db import Database, bind, choose, require_existing
from ._load import load_target, not_an_app

__all__ = ["load_app", "worker"]

FC = TypeVar("FC", bound=Callable[..., Any])

_CENTURY = 3_162_240_000  # seconds: the longest grace a Worker takes


class _KeyValues(logging.Formatter):
    """One line per record: time, level, message, then the structured fields."""

    _plain = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in self._plain}
        if "ghost" in fields:  # the engine's word for a job whose run was cancelled under it
            ghost = fields.pop("ghost")
            if ghost:
                fields["note"] = "the run was cancelled while this job ran"
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.getMessage()}"
        line += "".join(f" {k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_to_stderr() -> None:
    """Log INFO and above to stderr, one line a record (`_KeyValues`). The HTTP clients'
    own lines ("HTTP Request: GET ...", one per tracker or provider request) are kept
    to warnings: they drowned what the worker or dispatcher itself said."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValues())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_app(
    state: CliState, app_ref: str, *, existing: bool, traceback: bool = False
) -> tuple[App, Database]:
    """The App named by `--app`, on the database the rule picks (see `tether --help`);
    with `existing`, refuse a database that is not there yet."""
    target, module = guard(lambda: load_target(app_ref, app=True), traceback=traceback)
    if not isinstance(target, App):
        fail(EXIT_USAGE, not_an_app(app_ref, target, module))
    db = choose(state.db, target, app_ref.rpartition(":")[0])
    if existing:
        require_existing(db)
    return bind(target, db), db


def _timing_option(setting: str, what: str) -> Callable[[FC], FC]:
    """The option of one of `Worker`'s timings: its default, and its floor in its help."""
    return click.option(
        "--" + setting.replace("_", "-"),
        setting,
        type=float,
        default=WORKER_DEFAULTS[setting],
        show_default=True,
        metavar="SECONDS",
        help=f"{what}; at least {WORKER_FLOORS[setting][0]:g}.",
    )


@click.command(no_args_is_help=True)
@app_option("The App to serve.", required=True)
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="A queue to work; repeat, or separate by commas, for more (-q a,b).  [default: default]",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs driven at once.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),  # nan and inf pass it: refused below, naming --grace
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM or Ctrl-C, how long the runs in flight get to finish their "
    "current step before they are handed back to the queue.",
)
@click.option(
    "--worker-id",
    metavar="NAME",
    help="This worker's name on the jobs it claims and in its log (default: one of "
    "this process). One live worker holds a name at a time: another started with it "
    "exits 2; a restart takes it once the old one stopped.",
)
@_timing_option(
    "poll_interval",
    "How often an idle worker looks for jobs it heard no news of (news of a new job "
    "wakes it at once)",
)
@_timing_option(
    "maintenance_interval",
    "How often it fires due timers and schedules and requeues the jobs of workers that died",
)
@_timing_option(
    "stuck_after", "How long a run may sit with no job before maintenance queues it again"
)
@db_state
def worker(state: CliState, app_ref: str, queues: tuple[str, ...], **options: Any) -> None:
    """Work queued runs until SIGTERM or Ctrl-C.

    Stopping is graceful: the runs in flight finish their current step and
    are handed back, runnable by the next worker. Asked again (a second
    Ctrl-C or SIGTERM), it hands them back at once.

    \b
    Exit codes:
      0    stopped by SIGTERM or Ctrl-C, its runs handed back (not 130 or 143)
      2    bad usage: an --app that does not import or names no App, a bad option,
           a --worker-id that a live worker holds
      4    store error: the database is not there, or not one this tether can serve
    """
    from ..worker import Worker

    names = _queue_names(queues)
    _check_options(options)
    the_app, db = load_app(state, app_ref, existing=False)
    log_to_stderr()
    db.announce()
    try:
        w = Worker(the_app, queues=names, **options)
    except TetherError as exc:
        fail(EXIT_USAGE, str(exc))
    guard(w.serve)


def _check_options(options: dict[str, Any]) -> None:
    """Refuse, in the command line's words, the options `Worker` would refuse in its own
    (a worker id it does not store, a timing below its floor, NaN seconds)."""
    if options["worker_id"] is not None:
        text(options["worker_id"], "--worker-id", new=True)
    for setting in ("grace", *WORKER_FLOORS):
        flag, seconds = "--" + setting.replace("_", "-"), options[setting]
        if not math.isfinite(seconds) or seconds > _CENTURY:
            low = WORKER_FLOORS.get(setting, (0, ""))[0]
            fail(
                EXIT_USAGE,
                f"{flag} {seconds}: {flag[2:]} must be a number of seconds "
                f"from {low:g} to {_CENTURY} (a century); pass e.g. "
                f"{flag} {WORKER_DEFAULTS.get(setting, 60):g}",
            )
        if setting in WORKER_FLOORS:
            try:
                worker_timing(setting, seconds, flag=True)
            except TetherError as exc:
                fail(EXIT_USAGE, str(exc))


def _queue_names(given: tuple[str, ...]) -> list[str]:
    """The queues of ``-q`` options, each a name or names separated by commas (as
    Celery's ``-Q a,b``): ``a,b`` was served as one queue named ``a,b``."""
    names = [n.strip() for value in given for n in value.split(",")]
    if any(not n for n in names):  # `-q agents,` or an unset `-q "$QUEUE"`
        given_text = " ".join(f"-q {value!r}" for value in given)
        fail(
            EXIT_USAGE,
            f"{given_text}: a queue name is blank; give names separated by commas, "
            "e.g. -q agents,batch",
        )
    return list(dict.fromkeys(names)) or ["default"]
