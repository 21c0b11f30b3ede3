"""`--help` of every command: flags as flags, arguments by name, no engine words;
`--version`; click's own usage errors as one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tether.cli import cli

from ._helpers import tether


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _commands(cli)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "tether")
def test_every_help_reads_as_usage(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert res.exit_code == 0, res.output
    shown = res.output
    for internal in ("<bool>", "<str>", "<int>", "ghost", "poll_interval", "maintenance_interval"):
        assert internal not in shown, (internal, shown)
    assert "--db URL" in shown  # on every command, after it as well as before
    if path[:1] == ("runs",) and path[-1] in (
        "show",
        "events",
        "export",
        "signal",
        "cancel",
        "delete",
    ):
        assert "RUN_ID" in shown  # arguments by name
    if path[:1] == ("agents",) and path[-1] in ("show", "answer", "retry", "stop"):
        assert "ISSUE" in shown  # the agents commands name a tracker issue, not a run


@pytest.mark.parametrize("path", COMMANDS[1:], ids=" ".join)
def test_every_option_says_what_it_does(path: tuple[str, ...]) -> None:
    # `tether serve --help` showed `--port INTEGER RANGE  [default: 8000; 0<=x<=65535]`
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help, path
    bare = [p.opts for p in command.params if isinstance(p, click.Option) and not p.help]
    assert bare == [], (path, bare)


def test_root_help_states_the_database_rule_and_the_exit_codes() -> None:
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    assert "1. --db URL" in shown and "2. $TETHER_DATABASE_URL" in shown
    assert "3. the database of the App in the module given" in shown
    assert "4. sqlite:///.tether/tether.db" in shown
    assert "130  interrupted" in shown and "--version  Show the version" in shown


def test_flags_take_no_value() -> None:
    shown = CliRunner().invoke(cli, ["run", "--help"], terminal_width=100).output
    assert "--traceback " in shown and "--traceback BOOLEAN" not in shown
    shown = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=100).output
    assert "--grace SECONDS" in shown and "handed back" in shown


def test_version_and_usage_errors(tmp_path: Path) -> None:
    assert tether(tmp_path, "--version").stdout.strip() == "tether 0.1.0"
    for args in (["run"], ["runs", "list", "--limit", "many"], ["frobnicate"], ["runs"]):
        res = tether(tmp_path, *args)
        assert res.returncode == 2, (args, res.stderr)
    res = tether(tmp_path, "runs", "list", "--limit", "many")
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "see `tether runs list --help`" in res.stderr


def test_a_command_of_a_group_typed_at_the_top_is_named_in_full(tmp_path: Path) -> None:
    """`tether prune` said only "No such command", when `tether runs prune` exists (and
    click's guess, if any, named a top-level command: `run` for `tether rnu`)."""
    for name, full in (("prune", "tether runs prune"), ("cancel", "tether runs cancel")):
        res = tether(tmp_path, name)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip() == (
            f"error: No such command {name!r}: it is `{full}`; see `tether --help`"
        )
    unknown = tether(tmp_path, "frobnicate")
    assert unknown.returncode == 2 and ": it is" not in unknown.stderr
