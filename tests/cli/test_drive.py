"""What `tether run` says of a run that parked: the command that wakes it, runnable."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ._helpers import tether

WAITING_APP = """
import tether

app = tether.App("sqlite:///mod.db")

@app.workflow
async def approve(wf):
    await wf.step("draft", lambda: "d")
    return await wf.wait_for_signal("approval")
"""


def _wake_hint(stderr: str) -> list[str]:
    [hint] = re.findall(r"`(tether runs signal [^`]*)`", stderr)
    return shlex.split(hint)[1:]


def test_the_command_a_parked_run_names_finds_it_on_the_apps_database(tmp_path: Path) -> None:
    """Run on its App's database, the run said `tether runs signal a1 approval`, which
    looked for it in .tether/tether.db and exited 4: no such database."""
    (tmp_path / "mod.py").write_text(WAITING_APP)
    parked = tether(tmp_path, "run", "mod.py:approve", "--id", "a1", use_db=False)
    assert parked.returncode == 0, parked.stderr
    hint = _wake_hint(parked.stderr)
    assert hint == ["runs", "signal", "a1", "approval", "--db", "sqlite:///mod.db"]
    sent = tether(tmp_path, *hint, use_db=False)
    assert sent.returncode == 0 and "woke a1" in sent.stdout, sent.stderr


def test_the_hint_names_a_database_only_where_the_rule_would_not_find_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "mod.py").write_text(WAITING_APP)
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    given = tether(tmp_path, "run", "mod.py:approve", "--id", "a2", db=elsewhere)
    assert _wake_hint(given.stderr)[-2:] == ["--db", elsewhere]
    env = {"TETHER_DATABASE_URL": elsewhere}  # the command finds it there by itself
    from_env = tether(tmp_path, "run", "mod.py:approve", "--id", "a3", use_db=False, env=env)
    assert _wake_hint(from_env.stderr) == ["runs", "signal", "a3", "approval"]
    sent = tether(tmp_path, *_wake_hint(from_env.stderr), use_db=False, env=env)
    assert sent.returncode == 0 and "woke a3" in sent.stdout, sent.stderr
