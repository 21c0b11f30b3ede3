"""What a new user of the command met: a database URL of no kind tether knows
called "not a PostgreSQL URL", and `tether usage` with nothing to pipe."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ._helpers import create, record_summaries, tether


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("runs.db", "--db 'runs.db' is not a URL; tether stores in SQLite or PostgreSQL: "
                    "for a SQLite file write sqlite:///runs.db"),
        ("mysql://u:secret@h/d", "--db 'mysql://u:***@h/d' is a mysql:// URL; tether stores in "
                                 "SQLite or PostgreSQL: use sqlite:///path/to/file.db or "
                                 "postgresql://user@host:5432/db"),
    ],
)  # fmt: skip
def test_a_database_url_of_another_kind_is_named_so(tmp_path: Path, given: str, said: str) -> None:
    for args in (["runs", "list"], ["usage"], ["tokens", "list"]):
        done = tether(tmp_path, *args, db=given)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == f"error: {said}", done.stderr
        assert "PostgreSQL URL" not in done.stderr and "secret" not in done.stderr
    from_env = tether(tmp_path, "runs", "list", use_db=False, env={"TETHER_DATABASE_URL": given})
    assert from_env.returncode == 2 and "$TETHER_DATABASE_URL" in from_env.stderr


def test_usage_prints_json_for_a_pipe(tmp_path: Path) -> None:
    url = create(f"sqlite:///{tmp_path}/t.db")
    record_summaries(url, "u1")
    done = tether(tmp_path, "usage", "--by", "model", "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    rows = {r["group"]: r for r in got["rows"]}
    assert rows["fake:cheap"]["cost_micro_usd"] == 2000  # 1000 x $1 + 100 x $10, per million
    assert rows["fake:unpriced"]["unknown_cost_calls"] == 1  # never a $0 cost
    assert got["total"]["calls"] == 2 and got["total"]["priced_calls"] == 1
    # no calls in the window: "total" keeps its shape, zeros (it was null, and a script's
    # total["calls"] raised TypeError)
    none = tether(tmp_path, "usage", "--workflow", "other", "--json")
    assert none.returncode == 0, none.stderr
    empty = json.loads(none.stdout)
    assert empty["rows"] == [] and set(empty["total"]) == set(got["total"]), empty
    assert empty["total"]["group"] is None
    assert {k: v for k, v in empty["total"].items() if k != "group"} == dict.fromkeys(
        set(got["total"]) - {"group"}, 0
    ), empty


def test_a_bad_time_names_its_option(tmp_path: Path) -> None:
    create(f"sqlite:///{tmp_path}/t.db")
    for option in ("--since", "--until"):
        done = tether(tmp_path, "usage", option, "3x")
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: {option}: cannot read '3x' as a time"), done.stderr


def test_a_run_that_parks_says_what_it_waits_for_and_how_to_send_it(
    tmp_path: Path, flow: Path
) -> None:
    # the JSON said "waiting", and nothing said for what
    parked = tether(tmp_path, "run", "flows.py:waits", "--id", "doc 1")
    assert parked.returncode == 0, parked.stderr
    assert json.loads(parked.stdout)["status"] == "waiting"  # stdout: the JSON alone
    line = parked.stderr.splitlines()[-1]
    db = f"sqlite:///{tmp_path}/t.db"  # the --db it ran on: the command finds the run there
    assert line == f"run doc 1 waits for signal 'go' (`tether runs signal 'doc 1' go --db {db}`)"
    hint = shlex.split(line.split("`")[1])
    sent = tether(tmp_path, *hint[1:], use_db=False)  # the command, as given
    assert sent.returncode == 0 and "woke doc 1" in sent.stdout, sent.stderr
    done = tether(tmp_path, "run", "flows.py:greet", "-i", '{"name": "Ada"}', "--id", "g1")
    assert "waits for" not in done.stderr  # a run that ended says nothing of waits


def test_a_blank_db_is_refused_not_taken_for_no_db(tmp_path: Path, flow: Path) -> None:
    # `tether --db "$DB_URL" run ...` with $DB_URL unset ran on the module App's
    # database (or made .tether/tether.db), and `runs list` read the default one
    for args in (["run", "flows.py:greet", "-i", '{"name": "a"}'], ["runs", "list"],
                 ["worker", "--app", "flows.py:app"], ["usage"]):  # fmt: skip
        done = tether(tmp_path, *args, db="", env={"FLOWS_DB": f"sqlite:///{tmp_path}/t.db"})
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == (
            "error: --db is blank (a shell variable that is not set?); give a database URL, "
            "e.g. sqlite:///runs.db or postgresql://user@host:5432/db"
        ), done.stderr
    assert not (tmp_path / "t.db").exists() and not (tmp_path / ".tether").exists()


def test_json_output_keeps_text_as_written(tmp_path: Path, flow: Path) -> None:
    # `runs export` wrote "日本" and `runs show --json`, `runs list --json`, `runs events
    # --json` and `tether run` wrote "\u65e5\u672c" (grep found nothing); and where
    # stdout could not encode it, `runs export` ended in a UnicodeEncodeError traceback
    ran = tether(tmp_path, "run", "flows.py:greet", "-i", '{"name": "日本"}', "--id", "ユニ-1")
    assert ran.returncode == 0, ran.stderr
    assert '"result": "hi 日本"' in ran.stdout and '"workflowId": "ユニ-1"' in ran.stdout
    for args in (["runs", "show", "ユニ-1", "--json"], ["runs", "list", "--json"],
                 ["runs", "events", "ユニ-1", "--json"], ["runs", "export", "ユニ-1"]):  # fmt: skip
        shown = tether(tmp_path, *args)
        assert shown.returncode == 0, shown.stderr
        assert "\\u" not in shown.stdout, (args, shown.stdout)
        assert args[1] == "events" or "日本" in shown.stdout, (args, shown.stdout)
        json.loads(shown.stdout)
    exported = tether(tmp_path, "runs", "export", "ユニ-1")
    ascii_only = tether(tmp_path, "runs", "export", "ユニ-1", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_only.returncode == 0, ascii_only.stderr
    assert ascii_only.stdout.isascii() and "\\u65e5\\u672c" in ascii_only.stdout
    assert json.loads(ascii_only.stdout) == json.loads(exported.stdout)
