"""What every command shares: exit codes, the two consoles, the context object,
the `--db` option, and the turning of tether's errors into one line and a code."""

from __future__ import annotations

import errno
import json
import os
import select
import sys
import traceback as tb
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from .._durations import parse_when
from .._names import unstorable
from ..errors import RunNotFoundError, StoreError, TetherError, TokenNotFoundError
from ._load import UsageError

__all__ = [
    "EXIT_CLOSED_PIPE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_STORE",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliState",
    "app_option",
    "closed_pipe",
    "db_option",
    "db_state",
    "err",
    "exit_code",
    "fail",
    "guard",
    "one_line",
    "out",
    "pass_state",
    "print_json",
    "printed_whole",
    "redraw_interval",
    "server_option",
    "stdout_closed",
    "text",
    "when",
    "window",
    "window_options",
]

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STORE, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, which tether turns into a normal exit with this code
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell shows for `git log | head -1`

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def stdout_closed() -> bool:
    """Whether whoever read stdout has gone (`| head -1` read its line): a pipe whose
    reader closed polls as an error (or hung up). A BrokenPipeError from anything else
    (a socket) is a real error, not the reader's choice to stop."""
    poll = getattr(select, "poll", None)
    if poll is None:  # Windows: no poll of a pipe; taken to be stdout's, as click does
        return True
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return False
    poller = poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def closed_pipe() -> NoReturn:
    """Stop quietly, as git and ripgrep do, when the reader of stdout has gone: no
    traceback, no message, exit 141. Stdout goes to devnull first, so that flushing
    what is still buffered at exit does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_CLOSED_PIPE)


class _Out(Console):
    """Stdout's console: rich's own answer to a closed pipe exits 1, as if the
    command had failed; a reader that stopped reading is no failure."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._width = None  # $COLUMNS read as each command prints (see `size`)

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, $COLUMNS wide if set; piped into grep or a file without
        it, 200 columns: a row per line beats folding to 80. Read as the command prints,
        not once as tether is imported, where a width from then held for every later
        command run in the process (a test's, given its own $COLUMNS)."""
        found = super().size
        if self._width is None and "COLUMNS" not in os.environ and not self.is_terminal:
            return ConsoleDimensions(200, found.height)
        return found

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def on_broken_pipe(self) -> None:
        self.quiet = True
        closed_pipe()


class _Stdout:
    """Stdout as it is at each write (a test swaps it), telling a closed reader apart:
    a long write into a pipe whose reader left mid-way (`| head -1` of 300 KB) comes
    back short, with no error, and the rest was dropped while the command exited 0."""

    def write(self, text: str) -> int:
        if sys.stdout is None:  # no stdout at all (`>&-`): nothing to tell
            return len(text)
        return sys.stdout.write(text)

    def flush(self) -> None:
        if sys.stdout is None:
            return
        sys.stdout.flush()
        if stdout_closed():
            raise BrokenPipeError(errno.EPIPE, "stdout's reader has gone")

    def isatty(self) -> bool:
        return sys.stdout is not None and sys.stdout.isatty()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding ... of stdout
        return getattr(sys.stdout, name)


out = _Out(file=_Stdout())
err = Console(stderr=True)


@dataclass
class CliState:
    """Click's context object: what the options before and after a command set."""

    db: str | None = None  # --db, wherever it was given (the last one wins)
    server: str | None = None  # --server: read runs from a tether server instead
    token: str | None = None  # --token: the API token for --server


pass_state = click.make_pass_decorator(CliState, ensure=True)


def _remember_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(CliState).db = value


def db_option(fn: F) -> F:
    """`--db URL`, accepted before the command and after it alike."""
    option = click.option(
        "--db",
        metavar="URL",
        expose_value=False,
        callback=_remember_db,
        help="Database URL, e.g. sqlite:///runs.db or postgresql://user@host/db "
        "(see `tether --help` for which database is used without it).",
    )
    return option(fn)


def app_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """`--app FILE.py:APP|MODULE:APP` into `app_ref`, as `load_app` reads it; `help`
    says what the command wants of the App."""
    return click.option(
        "--app", "app_ref", required=required, metavar="FILE.py:APP|MODULE:APP", help=help
    )


def db_state(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What a command on the database wears: `--db` (see `db_option`), and the
    CliState passed as the command function's first argument."""
    return db_option(pass_state(fn))


def _remember(name: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            setattr(ctx.ensure_object(CliState), name, value)

    return remember


def server_option(fn: F) -> F:
    """`--server URL` and `--token TOKEN` (or $TETHER_SERVER, $TETHER_TOKEN): read
    from a tether server (`tether serve`) instead of opening the database."""
    fn = click.option(
        "--token",
        metavar="TOKEN",
        envvar="TETHER_TOKEN",
        expose_value=False,
        callback=_remember("token"),
        help="API token for --server (default: $TETHER_TOKEN).",
    )(fn)
    return click.option(
        "--server",
        metavar="URL",
        envvar="TETHER_SERVER",
        expose_value=False,
        callback=_remember("server"),
        help="Ask this tether server (e.g. http://127.0.0.1:8000) instead of the "
        "database (default: $TETHER_SERVER).",
    )(fn)


def note(message: str) -> None:
    """One plain line on stderr (no markup, no highlighting, not wrapped): what a
    command says about itself, beside its output."""
    err.print(message, highlight=False, markup=False, soft_wrap=True)


def printed_whole(
    found: Sequence[T], as_json: bool, as_dict: Callable[[T], Any], none: str
) -> bool:
    """Print `found` whole where a list command needs no table: with --json as one JSON
    array (`as_dict` of each, an empty array too), else `none` when nothing was found.
    False: the caller prints its table."""
    if as_json:
        print_json([as_dict(r) for r in found])
        return True
    if not found:
        print(none)
        return True
    return False


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout, its text as written ("日本", as `runs export`
    wrote it, where `runs show --json` wrote "\\u65e5\\u672c"); escaped only where
    stdout cannot encode it (an ASCII locale), rather than failing with a traceback.
    No stdout at all (`>&-`, so sys.stdout is None): print drops it, as it drops text;
    a completed `tether run` ended in a traceback and exit 1, as if it had failed."""
    shown = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    try:
        shown.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except UnicodeEncodeError:
        shown = json.dumps(value, indent=2, default=str)
    print(shown)


def fail(code: int, message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def text(value: str, what: str, *, new: bool = False) -> str:
    """An id or name from the command line: argv bytes that are not UTF-8 arrive as lone
    surrogates, which no database can store; refuse them (and NUL) with exit code 2.
    A `new` name (one being made) may hold no control character either: a newline split
    it over two rows of a table. Names looked up are not held to that: the API stores
    such names, and they must stay reachable (a run's id, a token to revoke)."""
    if not value.strip():
        fail(EXIT_USAGE, f"{what} must not be blank; pass a non-blank {what}")
    if unstorable(value):
        fail(
            EXIT_USAGE,
            f"{what} {value!r} is not valid UTF-8 text (or contains NUL); "
            "check the terminal's encoding and pass plain text",
        )
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if new and control is not None:
        fail(
            EXIT_USAGE,
            f"{what} {value!r} contains a control character ({control!r}), which would "
            "break the lines of a table; pass a name of printable characters",
        )
    return value


def when(value: str | None, what: str) -> datetime | None:
    """A `--since`/`--until` time, read alike by every command: None if not given; one
    that cannot be read (a blank one too: an unset shell variable, most likely) exits
    with code 2, naming the option `what`, rather than silently widening the filter."""
    if value is None:
        return None
    try:
        return parse_when(value, datetime.now(UTC))
    except TetherError as exc:
        fail(EXIT_USAGE, f"{what}: {exc}")
    except (OverflowError, ValueError):  # a traceback, not an error line: `--since
        # 99999999d` overflows; `--until 0001-01-01`, local midnight, is "year 0" in UTC
        fail(EXIT_USAGE, f"{what}: {value!r} {_BEYOND}")


_BEYOND = "lies outside the dates Python can hold (years 1 to 9999); give a nearer time"


def redraw_interval(value: float) -> None:
    """Exit 2 unless `--interval` is seconds above 0 and at most an hour: `inf` or
    `1e10` ended `top` and `runs watch` in a traceback from `time.sleep`."""
    if not 0 < value <= 3600:
        fail(EXIT_USAGE, f"--interval must be seconds above 0, at most 3600, got {value}")


def window_options(since_help: str, until_help: str) -> Callable[[F], F]:
    """`--since WHEN` and `--until WHEN`, in that order, the names `window` reads and
    reports; the helps say what the times bound."""
    since = click.option("--since", metavar="WHEN", help=since_help)
    until = click.option("--until", metavar="WHEN", help=until_help)

    def apply(fn: F) -> F:
        return since(until(fn))

    return apply


def window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """`--since` and `--until` read (see `when`); a window that ends where or before it
    starts is refused with exit 2: it matches nothing, and "no runs match" hid the
    options given the wrong way round (`--since 1h --until 2h`)."""
    start, end = when(since, "--since"), when(until, "--until")
    if start is not None and end is not None and start >= end:
        fail(
            EXIT_USAGE,
            f"--since {since} ({start.isoformat(timespec='seconds')}) is not before "
            f"--until {until} ({end.isoformat(timespec='seconds')}): nothing lies between; "
            "give --since the earlier time",
        )
    return start, end


def exit_code(exc: BaseException) -> int | None:
    """The exit code for one of tether's errors outside a workflow's own failure."""
    if isinstance(exc, RunNotFoundError | TokenNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, UsageError | TetherError):
        return EXIT_USAGE  # InvalidArgument, WorkflowNotFound, WorkflowVersion, RunFinished ...
    return None


def guard(fn: Callable[[], T], *, traceback: bool = False) -> T:
    """Turn tether's errors into a message and an exit code; a traceback only if asked."""
    try:
        return fn()
    except (UsageError, TetherError) as exc:
        if traceback:  # of the cause: where a file being loaded raised, say
            sys.stderr.write("".join(tb.format_exception(exc.__cause__ or exc)))
        fail(exit_code(exc) or EXIT_USAGE, one_line(exc))
    except ValidationError as exc:  # a command the kernel refused at its typed edge
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        fail(EXIT_USAGE, f"invalid argument: {problems}")


def one_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return " ".join(message.split()) if message else "(no message)"
