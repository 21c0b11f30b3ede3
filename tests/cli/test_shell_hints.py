"""What a user of the command met with run ids and queues that need quoting in a shell,
and with no stdout at all: the commands the hints name are pasted back as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from ._helpers import SLOW, TETHER, create, interrupted, tether

ODD_ID = "night run's 1"  # a space and a quote: pasted unquoted, the shell sees two words


def _hinted(said: str, start: str) -> list[str]:
    """The argv of the command between backticks that begins with `start`, as a shell
    reads it."""
    found = re.search(rf"`({re.escape(start)}[^`]*)`", said)
    assert found is not None, said
    return shlex.split(found.group(1))


def test_hints_name_an_odd_run_id_and_queue_quoted(tmp_path: Path, flow: Path) -> None:
    submitted = tether(tmp_path, "submit", "flows.py:waits", "--id", ODD_ID, "-q", "my queue")
    assert submitted.returncode == 0, submitted.stderr
    worker = _hinted(submitted.stderr, "tether worker")
    assert worker[-2:] == ["-q", "my queue"], submitted.stderr  # not -q my queue
    shown = tether(tmp_path, "runs", "show", ODD_ID)
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())
    assert _hinted(flat, "tether runs resume")[3] == ODD_ID, flat
    parked = tether(tmp_path, "run", "flows.py:waits", "--id", "parked run's 2")
    assert parked.returncode == 0, parked.stderr
    signalled = tether(tmp_path, "runs", "signal", "parked run's 2", "go")
    assert signalled.returncode == 0, signalled.stderr
    said = signalled.stdout + signalled.stderr
    assert _hinted(said, "tether runs resume")[3] == "parked run's 2", said


def test_an_interrupted_run_resumes_by_the_command_it_names(tmp_path: Path) -> None:
    """The hint of Ctrl-C, pasted back, resumes the run; before, `--id night run's 1`
    left the shell waiting for the closing quote."""
    (tmp_path / "slow flows.py").write_text(SLOW)
    db = f"sqlite:///{tmp_path}/t.db"
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = interrupted(
        tmp_path, signal.SIGINT, "--db", db, "run", "slow flows.py:slow", "--id", ODD_ID
    )
    stderr = proc.stderr
    assert proc.returncode == 130, stderr
    again = _hinted(stderr, "tether run ")
    assert again[2:5] == ["slow flows.py:slow", "--id", ODD_ID], stderr
    resumed = subprocess.run(
        [TETHER, *again[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {
        "workflowId": ODD_ID,
        "status": "completed",
        "result": "done",
    }


def _no_stdout(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tether --db <tmp>/t.db ARGS >&-`: a real process started with stdout closed."""
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"FLOWS_DB": f"sqlite:///{tmp}/t.db", "EFFECTS": str(tmp / "effects.log")}
    return subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', TETHER, "--db", f"sqlite:///{tmp}/t.db", *args],
        cwd=tmp,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def test_json_with_no_stdout_is_no_failure(tmp_path: Path, flow: Path) -> None:
    """A run that completed, its JSON printed to no stdout, ended in a traceback and
    exit 1 (the code of a failed run); so did every --json listing."""
    create(f"sqlite:///{tmp_path}/t.db")
    ran = _no_stdout(tmp_path, "run", "flows.py:greet", "-i", '{"name": "ada"}', "--id", "g1")
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "run g1 completed" in ran.stderr
    for args in (["runs", "list", "--json"], ["usage", "--json"], ["runs", "show", "g1", "--json"]):
        done = _no_stdout(tmp_path, *args)
        assert (done.returncode, done.stderr) == (0, ""), args


def test_a_token_is_not_created_for_no_stdout(tmp_path: Path) -> None:
    """`tokens create >&-` made a token and printed it nowhere, exit 0: a token shown
    only once, and never, that stays valid in the database."""
    create(f"sqlite:///{tmp_path}/t.db")
    done = _no_stdout(tmp_path, "tokens", "create", "--scope", "admin", "--name", "ci")
    assert done.returncode == 2, done.stderr
    assert "stdout is closed" in done.stderr and "nothing was created" in done.stderr
    listed = tether(tmp_path, "tokens", "list", "--json")
    assert json.loads(listed.stdout) == []
