"""`tether worker` takes what `Worker(...)` takes: --worker-id, --poll-interval,
--maintenance-interval and --stuck-after (before: none of them, so an operator could
neither name a worker nor tune it without writing a script). Bad values exit 2 in the
command line's words; a named id is held by one live worker at a time."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tether.testing import eventually_sync

from ._helpers import TETHER, tether


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--poll-interval", "1e-9"], "--poll-interval must be at least 0.01 seconds, got 1e-09"),
        (["--maintenance-interval", "0.01"], "--maintenance-interval must be at least 0.1 "),
        (["--stuck-after", "0.5"], "--stuck-after must be at least 1 second, got 0.5"),
        (["--poll-interval", "nan"], "--poll-interval nan: poll-interval must be a number"),
        (["--stuck-after", "inf"], "--stuck-after inf: stuck-after must be a number"),
        (["--worker-id", " "], "--worker-id must not be blank"),
        (["--worker-id", "a\tb"], "--worker-id 'a\\tb' contains a control character"),
    ],
)
def test_bad_worker_options_exit_2_in_the_commands_words(
    tmp_path: Path, flow: Path, args: list[str], said: str
) -> None:
    res = tether(tmp_path, "worker", "--app", "flows.py:app", *args)
    assert res.returncode == 2, res.stderr
    assert said in res.stderr
    assert "poll_interval" not in res.stderr and "stuck_after" not in res.stderr
    assert not (tmp_path / "t.db").exists()  # refused before the App was loaded


def test_below_a_floor_the_error_says_why_and_what_to_pass(tmp_path: Path, flow: Path) -> None:
    res = tether(tmp_path, "worker", "--app", "flows.py:app", "--poll-interval", "0.001")
    assert "news of a job wakes it at once" in res.stderr
    assert "pass e.g. --poll-interval 0.5 (the default)" in res.stderr


def test_the_options_reach_the_worker(tmp_path: Path, flow: Path) -> None:
    args = ["--worker-id", "edge-1", "--poll-interval", "0.01"]
    args += ["--maintenance-interval", "0.1", "--stuck-after", "1"]
    proc, log = _serve(tmp_path, args)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        _stop(proc)
    (started,) = [line for line in log.read_text().splitlines() if "worker started" in line]
    assert "worker=edge-1" in started and "poll_interval=0.01" in started
    assert "maintenance_interval=0.1" in started and "stuck_after=1.0" in started


def test_a_worker_id_a_live_worker_holds_is_refused(tmp_path: Path, flow: Path) -> None:
    first, _ = _serve(tmp_path, ["--worker-id", "w1"])
    try:
        second = tether(tmp_path, "worker", "--app", "flows.py:app", "--worker-id", "w1")
        assert second.returncode == 2, second.stderr
        assert "worker id 'w1' is in use by a live worker" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "--worker-id" in second.stderr
        assert first.poll() is None  # the first serves on
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
        third, log = _serve(tmp_path, ["--worker-id", "w1"])  # stopped: the id is free
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=60) == 0
        assert "worker=w1" in log.read_text()
    finally:
        _stop(first)


def _serve(tmp: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    """`tether worker --app flows.py:app ARGS`, a real process, once it serves."""
    db = f"sqlite:///{tmp}/t.db"
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env |= {"EFFECTS": str(tmp / "effects.log"), "FLOWS_DB": db}
    log = tmp / f"worker-{len(list(tmp.glob('worker-*.log')))}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TETHER, "--db", db, "worker", "--app", "flows.py:app", *args],
            cwd=tmp,
            env=env,
            stderr=out,
        )
    try:
        eventually_sync(lambda: _started(proc, log), timeout=60)
    except BaseException:
        _stop(proc)
        raise
    return proc, log


def _started(proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()  # it exited: say why, do not wait on
    return "worker started" in log.read_text()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
