"""The `tether` command: run workflows, inspect and steer runs, start workers.

One module per command group: `run`, `worker`, `runs` (inspect), `steer`
(signal, resume ...), `prune` (delete finished runs), `schedules`, `serve` (the
HTTP API), `tokens` (its API tokens). What the options set
travels in click's context object (`CliState`), not in a global.

Exit codes (scripts can rely on them):
  0    success (a run that parks to wait also prints its result and exits 0)
  1    the workflow failed or was cancelled: its error on one line (--traceback for more)
  2    bad usage or input: an unknown option, a missing file, module or function, a
       file that does not import (syntax or import error), input that is not JSON
       or does not fit the workflow, an unreadable database URL, a signal the run
       does not wait for, deleting a run that has not ended
  3    no such run (or token)
  4    store error: the database cannot be opened, is not there (read-only
       commands never create one), or is not a tether database
  130  interrupted (Ctrl-C); the run resumes with the same --id
  141  the reader of stdout went away (`tether runs list | head -1`): no message
  143  stopped by SIGTERM; the run resumes with the same --id
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from .. import __version__
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, closed_pipe, db_option, fail, stdout_closed
from ._db import PRECEDENCE
from .agents import agents
from .outbox import outbox
from .prune import COMMANDS as PRUNE_COMMANDS
from .run import run
from .runs import runs
from .schedules import schedules
from .serve import serve
from .steer import COMMANDS as STEER_COMMANDS
from .submit import submit
from .tokens import tokens
from .top import top
from .usage import usage
from .watch import watch
from .worker import worker

__all__ = ["cli", "main"]

_HELP = f"""Durable workflows for AI-agent harnesses.

\b
{PRECEDENCE}

\b
Exit codes:
  0    success
  1    the workflow failed or was cancelled
  2    bad usage or input (also: a file that does not import, a bad database URL)
  3    no such run or token
  4    store error: unreachable, not there, or not a tether database
  130  interrupted (Ctrl-C)
  141  stdout closed by its reader (`| head -1`)
  143  stopped by SIGTERM
"""


class _Root(click.Group):
    """The root group: click's own usage errors as one `error:` line and exit 2, like
    tether's (click prints a usage block of four lines)."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
                click.echo(exc.ctx.get_help())  # bare `tether runs`: the help, as usage
                sys.exit(EXIT_USAGE)
            where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
            fail(EXIT_USAGE, exc.format_message().rstrip(".") + where)
        except click.ClickException as exc:
            fail(exc.exit_code, exc.format_message())
        except click.Abort:
            fail(EXIT_INTERRUPTED, "interrupted")
        sys.exit(code if isinstance(code, int) else 0)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """An unknown command that is a command of a group (`tether prune`) names it
        (`tether runs prune`), where click guessed only at the top level's names."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            nested = [
                f"`{ctx.command_path} {group} {name}`"
                for group, cmd in sorted(self.commands.items())
                if isinstance(cmd, click.Group) and name in cmd.commands
            ]
            if not nested:
                raise
            raise click.UsageError(
                f"No such command {name!r}: it is {' or '.join(nested)}", ctx
            ) from None

    def invoke(self, ctx: click.Context) -> Any:
        """A closed stdout (`| head -1`) ends the command quietly, before click's own
        handling of it, which exits 1 as if the command had failed."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            if stdout_closed():
                closed_pipe()
            raise


@click.group(
    cls=_Root,
    help=_HELP,
    no_args_is_help=True,
    context_settings={"max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="tether", message="%(prog)s %(version)s")
@db_option
def cli() -> None:
    pass


for _command in (*STEER_COMMANDS, *PRUNE_COMMANDS, watch):
    runs.add_command(_command)
cli.add_command(run)
cli.add_command(submit)
cli.add_command(worker)
cli.add_command(runs)
cli.add_command(schedules)
cli.add_command(usage)
cli.add_command(top)
cli.add_command(serve)
cli.add_command(tokens)
cli.add_command(agents)
cli.add_command(outbox)


def _lenient_output() -> None:
    """Text stdout cannot encode (an id in Japanese, under an ASCII locale or
    PYTHONIOENCODING=ascii) is printed escaped, as stderr already does, rather than
    ending the command with a UnicodeEncodeError traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _flush_stdout() -> None:
    """What is still buffered goes out now, where a closed pipe can end the command
    quietly (at interpreter exit it printed 'Exception ignored ... BrokenPipeError').
    No stdout at all (`tether ... >&-`): nothing to flush."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        closed_pipe()


def main() -> None:
    """Entry point of the `tether` console script."""
    _lenient_output()
    try:
        cli(prog_name="tether")
    finally:
        _flush_stdout()
