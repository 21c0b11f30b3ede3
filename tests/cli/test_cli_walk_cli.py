"""A user's walk of the `tether` command's edges: a module that exits as it is imported,
an id submitted again, times and intervals beyond what Python holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._helpers import tether


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("import sys\nsys.exit(3)\n", "sys.exit(3)"),  # 3 read as "no such run", no word said
        ("raise SystemExit('bye')\n", "sys.exit('bye')"),  # exit 1 read as "the run failed"
        (  # a script's argparse at module level, fed tether's own arguments
            "import argparse\nargparse.ArgumentParser().parse_args()\n",
            "sys.exit(2)",
        ),
    ],
)
def test_a_module_that_exits_as_it_is_imported_is_a_usage_error(
    tmp_path: Path, source: str, code: str
) -> None:
    (tmp_path / "script.py").write_text(source + "async def f(wf): return 1\napp = None\n")
    (tmp_path / "scriptpkg").mkdir()
    (tmp_path / "scriptpkg" / "__init__.py").write_text(source)
    for args in (
        ("run", "script.py:f"),
        ("submit", "script.py:f"),
        ("worker", "--app", "script.py:app"),
        ("run", "scriptpkg:f"),
    ):
        done = tether(tmp_path, *args)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot ") and f"called {code}" in last, last
        assert 'if __name__ == "__main__":' in last


def test_submitting_an_id_again_to_another_queue_names_the_queue_the_run_is_on(
    tmp_path: Path, flow: Path
) -> None:
    # it said "no live worker serves queue 'other' yet: run q1 waits there"; then it
    # returned q1 with a note; now the submit is refused (the workers of 'other' would
    # never see the run), naming the queue it is on
    first = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "a"}', "--id", "q1",
                   "-q", "agents")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "a"}', "--id", "q1",
                   "-q", "other")  # fmt: skip
    assert again.returncode == 2 and again.stdout == "", again.stderr
    assert "already names a run on queue 'agents', not on queue 'other'" in again.stderr
    same = tether(tmp_path, "submit", f"{flow}:greet", "-i", '{"name": "a"}', "--id", "q1",
                  "-q", "agents")  # fmt: skip
    assert same.returncode == 0 and same.stdout.strip() == "q1", same.stderr
    assert "no live worker serves queue 'agents' yet" in same.stderr
    listed = json.loads(tether(tmp_path, "runs", "list", "--json").stdout)
    assert [(r["workflowId"], r["queue"]) for r in listed] == [("q1", "agents")]


def test_submitting_the_id_of_an_ended_or_unqueued_run_says_no_worker_will_take_it(
    tmp_path: Path, flow: Path
) -> None:
    assert tether(tmp_path, "run", f"{flow}:broken", "--id", "b1").returncode == 1
    ended = tether(tmp_path, "submit", f"{flow}:broken", "--id", "b1")
    assert ended.returncode == 0 and ended.stdout.strip() == "b1", ended.stderr
    assert "waits there" not in ended.stderr  # it had ended: nothing waits
    assert tether(tmp_path, "run", f"{flow}:waits", "--id", "w1").returncode == 0
    parked = tether(tmp_path, "submit", f"{flow}:waits", "--id", "w1")
    assert parked.returncode == 0 and parked.stdout.strip() == "w1", parked.stderr
    assert "run w1 already exists, on no queue" in parked.stderr
    assert "waits there" not in parked.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "--since", "99999999d"),
        ("runs", "list", "--until", "0001-01-01T00:00+01:00"),
        ("usage", "--since", "3000000w"),
        ("runs", "prune", "--older-than", "99999999d", "--dry-run"),
        ("runs", "prune", "--older-than", "99999999d"),
        ("top", "--interval", "inf"),
        ("top", "--interval", "1e10"),
        ("runs", "watch", "r1", "--interval", "inf"),
    ],
)
def test_times_and_intervals_beyond_any_date_are_usage_errors(
    tmp_path: Path, flow: Path, args: tuple[str, ...]
) -> None:
    # each ended in an OverflowError traceback, exit 1
    assert tether(tmp_path, "run", f"{flow}:waits", "--id", "r1").returncode == 0  # parked
    done = tether(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith("error: --") and "\n" not in line, line
