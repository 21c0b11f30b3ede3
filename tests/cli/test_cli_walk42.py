"""`schedules list --app` marks the schedules that App no longer declares; tables on a
terminal too narrow for them become blocks of "key: value" lines; Ctrl-C while the
module given to --app imports ends with one line and 130."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tether import App, FakeClock, Workflow
from tether.store import NewEvent, NewRun

from . import test_interrupt_on_import as _interrupt
from ._helpers import TETHER, record_summaries, tether

_DECLARES_NIGHTLY = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: tether.Workflow) -> str:
        return "ok"
    """
)


def _save_two_schedules(url: str) -> None:
    """`nightly`, and `old 5min`, which the code no longer declares (see
    `_DECLARES_NIGHTLY`)."""
    app = App(url)

    @app.workflow(name="nightly", schedule="0 2 * * *")
    async def nightly(wf: Workflow) -> str:
        return "ok"

    app.schedule(nightly, cron="*/5 * * * *", name="old 5min")
    app.fire_schedules()
    app.close()


def test_schedules_list_with_app_marks_a_schedule_the_app_no_longer_declares(
    database_url: str, tmp_path: Path
) -> None:
    # before: `--app` was "No such option"; `old 5min`, renamed away in code, was
    # listed with a next tick every five minutes that no worker would ever start
    _save_two_schedules(database_url)
    (tmp_path / "flows.py").write_text(_DECLARES_NIGHTLY)
    listed = tether(tmp_path, "schedules", "list", "--app", "flows.py:app", db=database_url)
    assert listed.returncode == 0, listed.stderr
    [old] = [line for line in listed.stdout.splitlines() if "old 5min" in line and "│" in line]
    assert "none: not declared by this App" in old, listed.stdout
    [nightly] = [line for line in listed.stdout.splitlines() if line.startswith("│ nightly ")]
    assert "not declared" not in nightly and "02:00 UTC" in nightly, listed.stdout
    said = re.search(r"not declared by this App .*: old 5min; `([^`]+)` forgets", listed.stdout)
    assert said is not None, listed.stdout
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    hinted = shlex.split(said.group(1))  # the command said, run as said
    removed = subprocess.run(
        [TETHER, *hinted[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert removed.returncode == 0 and "removed" in removed.stdout, removed.stderr
    again = tether(tmp_path, "schedules", "list", "--app", "flows.py:app", db=database_url)
    assert "old 5min" not in again.stdout and "not declared" not in again.stdout, again.stdout


def test_schedules_list_json_says_declared_only_with_app(database_url: str, tmp_path: Path) -> None:
    _save_two_schedules(database_url)
    (tmp_path / "flows.py").write_text(_DECLARES_NIGHTLY)
    given = tether(
        tmp_path, "schedules", "list", "--json", "--app", "flows.py:app", db=database_url
    )
    assert given.returncode == 0, given.stderr
    assert {r["name"]: r["declared"] for r in json.loads(given.stdout)} == {
        "nightly": True,
        "old 5min": False,
    }
    bare = tether(tmp_path, "schedules", "list", db=database_url)  # no App: no word of it
    assert bare.returncode == 0 and "declared" not in bare.stdout + bare.stderr, bare.stdout
    bare_json = tether(tmp_path, "schedules", "list", "--json", db=database_url)
    assert all("declared" not in r for r in json.loads(bare_json.stdout)), bare_json.stdout


def _invoke(url: str, columns: int, *args: str) -> Result:
    from tether.cli import cli

    env = {"TETHER_DATABASE_URL": None, "COLUMNS": str(columns)}
    return CliRunner().invoke(cli, [*args, "--db", url], env=env)


def _filled(url: str) -> None:
    """Two runs with AI calls, a schedule, and a dead letter of the outbox."""
    record_summaries(url, "summary-run-number-one", "summary-run-2")
    _save_two_schedules(url)
    at = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    app = App(url, clock=FakeClock(at))
    try:
        app.run_sync(app.store.create_run(NewRun("n1", "wf", state="null"), at))
        app.run_sync(app.store.claim_run("n1", "owner", at, NewEvent("workflow.running")))
        failed = [("n1", 1, "ConnectionError: broker refused", None)]
        app.run_sync(app.store.outbox_mark(delivered=[], failed=failed, at=at))
    finally:
        app.close()


_COMMANDS = [
    ("runs", "list"),
    ("schedules", "list"),
    ("usage",),
    ("usage", "--by", "workflow"),
    ("runs", "events", "summary-run-2"),
    ("runs", "show", "summary-run-2"),
    ("outbox", "dead"),
]


def _each_shown(url: str, columns: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each of `_COMMANDS` and what it printed on `columns` columns."""
    for args in _COMMANDS:
        shown = _invoke(url, columns, *args)
        assert shown.exit_code == 0, (args, shown.output)
        yield args, shown.output


def test_tables_on_30_columns_become_blocks_of_key_value_lines(tmp_path: Path) -> None:
    # before: every column two or three cells wide, headers one letter a line ("u" "p"
    # "d" "a" "t" "e" "d"), and `runs events` dropped its time and message columns
    url = f"sqlite:///{tmp_path}/t.db"
    _filled(url)
    for args, output in _each_shown(url, 30):
        lines = [ln for ln in output.splitlines() if "`" not in ln]  # not a hint's
        assert all(len(line) <= 30 for line in lines), (args, output)
        assert not any(c in output for c in "┃│"), (args, output)
    events = _invoke(url, 30, "runs", "events", "summary-run-2").output
    assert re.search(r"^at \(\w+\): +\d{4}-\d\d-\d\d", events, re.M), events
    assert re.search(r"^message: +ai\.text:fake:cheap", events, re.M), events
    runs = _invoke(url, 30, "runs", "list").output
    assert re.search(r"^status: +completed", runs, re.M), runs
    blocks = runs.split("\n\n")  # one a run, apart by a blank line
    assert len(blocks) == 3 and all(b.startswith("id:") for b in blocks), runs
    usage = _invoke(url, 30, "usage").output
    assert re.search(r"^cost \(USD\): +0\.004000", usage, re.M), usage
    dead = _invoke(url, 30, "outbox", "dead").output
    assert re.search(r"^run: +n1 *$", dead, re.M), dead


def test_tables_that_fit_stay_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    _filled(url)
    for args, output in _each_shown(url, 120):
        assert "┃" in output, (args, output)
        assert all(len(ln) <= 120 for ln in output.splitlines()), (args, output)


@pytest.mark.parametrize(
    "args", [("schedules", "list", "--app", "slow:app"), ("tokens", "list", "--app", "slow.py:app")]
)
def test_ctrl_c_while_the_app_module_imports_exits_130_with_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    # a real process whose --app module waits on a gate, sent SIGINT: 130 and one line
    # on stderr, no traceback (`schedules list` took no --app before)
    _interrupt.test_ctrl_c_while_the_module_imports_exits_130_with_one_line(tmp_path, args)
