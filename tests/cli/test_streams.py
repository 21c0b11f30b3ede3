"""The command's output where stdout is not a UTF-8 terminal: an ASCII locale, a pipe
its reader closes early (`| head -1`). Real processes, real pipes."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from tether import App
from tether.store import NewRun

from ._helpers import TETHER, tether


def _runs(url: str, *ids: str) -> None:
    """Pending runs with these ids (the newest last)."""
    app = App(url)

    async def create() -> None:
        for wid in ids:
            await app.store.create_run(NewRun(wid, "nightly", state="null"), datetime.now(UTC))

    app.run_sync(create())
    app.close()


def test_tables_print_under_an_ascii_locale(tmp_path: Path) -> None:
    # a run id in Japanese: UnicodeEncodeError and a traceback, exit 1
    _runs(f"sqlite:///{tmp_path}/t.db", "rün-日本", "plain-1")
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    listed = tether(tmp_path, "runs", "list", env=ascii_out)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    lines = listed.stdout.splitlines()
    assert any("r\\xfcn-\\u65e5\\u672c" in line for line in lines), listed.stdout
    assert any("plain-1" in line for line in lines), listed.stdout
    assert len({len(line) for line in lines}) == 1, listed.stdout  # the columns line up
    shown = tether(tmp_path, "runs", "show", "rün-日本", env=ascii_out)
    assert shown.returncode == 0, shown.stderr
    assert "r\\xfcn-\\u65e5\\u672c" in shown.stdout


def _first_line_then_close(tmp: Path, *args: str) -> tuple[int, str]:
    """`tether ARGS | head -1`: the reader takes one line and closes the pipe; the
    command's exit code and what it wrote on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = subprocess.Popen(
        [TETHER, "--db", f"sqlite:///{tmp}/t.db", *args],
        cwd=tmp,
        env=env | {"COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # long before the command has written all of it (> a pipe's 64 KiB)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert first, stderr
    return proc.wait(timeout=120), stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    # `runs list --json | head -1` exited 1, as if the listing had failed
    _runs(f"sqlite:///{tmp_path}/t.db", *(f"run-{i:04}" for i in range(1200)))
    for args in (["runs", "list", "--json", "--all"], ["runs", "list", "--limit", "1100"]):
        code, stderr = _first_line_then_close(tmp_path, *args)
        assert stderr == "", (args, stderr)  # no traceback, no message
        assert code == 141, (args, code)  # 128 + SIGPIPE, what a shell shows for git


def test_head_leaving_mid_write_of_a_long_listing_ends_the_command_as_closed(
    tmp_path: Path,
) -> None:
    """`runs list --all | head -1` of 300 KB exited 0: head reads a pipe's worth and
    leaves while the command's write is blocked, which then comes back short with no
    error, and the rest was dropped as if all had been read."""
    _runs(f"sqlite:///{tmp_path}/t.db", *(f"run-{i:05}" for i in range(3000)))
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    piped = subprocess.run(
        ["bash", "-c", f'"{TETHER}" --db "sqlite:///{tmp_path}/t.db" runs list --all '
         '| head -1 > /dev/null; exit "${PIPESTATUS[0]}"'],
        cwd=tmp_path, env=env | {"COLUMNS": "200"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert (piped.returncode, piped.stderr) == (141, "")


def test_no_stdout_at_all_is_no_error(tmp_path: Path) -> None:
    # `tether runs list >&-`: the flush at the end must not trip over a missing stdout
    _runs(f"sqlite:///{tmp_path}/t.db", "run-1")
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    res = subprocess.run(
        [TETHER, "--db", f"sqlite:///{tmp_path}/t.db", "runs", "list"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),  # the child has no stdout
    )
    assert (res.returncode, res.stderr) == (0, "")
