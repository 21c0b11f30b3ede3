"""Bad arguments to the `tether` command: exit 2 (usage), 3 (unknown run) or 4 (store),
with one `error:` line on stderr and never a traceback.

The properties drive the command in-process through click's CliRunner; a handful
of cases run the real console script as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from tether import App
from tether.cli import cli

from ._support import HEAVY, LIGHT
from .strategies import json_values

FLOWS = textwrap.dedent(
    """
    from typing import Any

    import tether

    async def echo(wf: tether.Workflow, value: Any) -> Any:
        return await wf.step("echo", lambda: value)

    async def plain(wf: tether.Workflow) -> int:
        return 1
    """
)


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(FLOWS)
    return path


def create(url: str) -> str:
    """Make the tether database at `url`: the commands that read runs never create one."""
    app = App(url)
    app.list_runs()
    app.close()
    return url


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args], env={"TETHER_DATABASE_URL": None})


def assert_one_error_line(stderr: str, code: int) -> None:
    assert "Traceback" not in stderr, stderr
    # `tether run` first says which database it uses, then the one error line
    lines = [x for x in stderr.strip().splitlines() if not x.startswith("database: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"exit {code}: {stderr!r}"


def assert_refused(result: Result, *codes: int) -> None:
    assert result.exit_code in codes, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_one_error_line(result.stderr, result.exit_code)


@HEAVY
@given(text=st.one_of(st.text(max_size=40), json_values().map(json.dumps)))
def test_any_input_text_runs_or_is_refused_with_exit_2(
    sqlite_url: str, flows: Path, text: str
) -> None:
    result = invoke(sqlite_url, "run", f"{flows}:echo", "--input", text)
    if result.exit_code == 0:
        out = json.loads(result.stdout)
        assert out["status"] == "completed"
        assert out["result"] == json.loads(text)
    else:
        assert_refused(result, 2)


@LIGHT
@given(
    value=st.sampled_from(
        [
            "NaN",
            "[Infinity]",
            '{"a": -Infinity}',
            '"\\ud800"',
            '"a\\u0000b"',
            "9" * 5000,
            "[" * 10_000 + "]" * 10_000,
            '{"a": ' + "[" * 300 + "]" * 300 + "}",
        ]
    )
)
def test_input_json_tether_cannot_store_is_refused_with_exit_2(
    sqlite_url: str, flows: Path, value: str
) -> None:
    for option in ("--input", "--state"):
        target = "echo" if option == "--input" else "plain"
        result = invoke(sqlite_url, "run", f"{flows}:{target}", option, value)
        assert_refused(result, 2)


ids = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\ud800", "a\udcffb", "x" * 5000, "-", "--help-me"]),
)


@HEAVY
@given(
    wid=ids,
    command=st.sampled_from(
        [
            ("runs", "show"),
            ("runs", "events"),
            ("runs", "export"),
            ("runs", "cancel"),
            ("runs", "signal", "@ID", "go"),
            ("runs", "complete-token"),
        ]
    ),
)
def test_an_unknown_or_bad_run_id_exits_2_or_3(sqlite_url: str, wid: str, command: Any) -> None:
    args = [wid if a == "@ID" else a for a in command]
    if "@ID" not in command:
        args.append(wid)
    args.insert(2, "--")  # what follows is arguments: an id like '-0' is not an option
    result = invoke(create(sqlite_url), *args)
    assert_refused(result, 2, 3)


@HEAVY
@given(status=st.text(max_size=15), limit=st.integers(min_value=-5, max_value=3))
def test_runs_list_with_any_status_and_limit_lists_or_exits_2(
    sqlite_url: str, status: str, limit: int
) -> None:
    result = invoke(create(sqlite_url), "runs", "list", "--status", status, "--limit", str(limit))
    if result.exit_code != 0:
        assert_refused(result, 2)


@LIGHT
@given(
    url=st.sampled_from(
        [
            "postgresql://u@[::1:5432/x",
            "postgresql://127.0.0.1:99999/test",
            "postgresql://127.0.0.1:5432/test?pool_size=-1",
            "postgresql://127.0.0.1:5432/test?statement_timeout=abc",
            "sqlite:///x.db?durability=x",
            "sqlite://host/x.db",
            "garbage",
            "mysql://localhost/db",
        ]
    )
)
def test_a_bad_db_url_exits_2(url: str) -> None:
    assert_refused(invoke(url, "runs", "list"), 2)


def test_an_unusable_database_exits_4(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"  # a folder where the file should be
    folder.mkdir()
    assert_refused(invoke(f"sqlite:///{folder}", "runs", "list"), 4)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 200)
    assert_refused(invoke(f"sqlite:///{junk}", "runs", "list"), 4)


# -- the real console script, a handful of cases ---------------------------------------------


def tether(tmp: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    env["COLUMNS"] = "80"  # narrow: the one error line must still be one line
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(("--db", "postgresql://u@[::1:5432/x", "runs", "list"), 2, id="ipv6"),
        pytest.param(("runs", "show", "no-such-run"), 3, id="unknown-run"),
        pytest.param(("runs", "list", "--status", "sideways"), 2, id="bad-status"),
        pytest.param(("run", "flows.py:echo", "--input", '{"a": NaN}'), 2, id="nan-input"),
        pytest.param(("run", "flows.py:echo", "--input", "{bad json"), 2, id="bad-json"),
        pytest.param(("runs", "show", b"caf\xe9"), 2, id="not-utf8-id"),
        pytest.param(("runs", "signal", "r", b"g\xff"), 2, id="not-utf8-signal"),
    ],
)
def test_the_console_script_exits_with_one_error_line(
    tmp_path: Path, flows: Path, args: tuple[str | bytes, ...], code: int
) -> None:
    if "--db" not in args:
        args = ("--db", create(f"sqlite:///{tmp_path}/t.db"), *args)
    done = tether(tmp_path, *args)
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == code, (done.returncode, stderr)
    assert_one_error_line(stderr, code)


def test_the_console_script_exits_4_on_an_unusable_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 200)
    done = tether(tmp_path, "--db", f"sqlite:///{junk}", "runs", "list")
    assert done.returncode == 4
    assert_one_error_line(done.stderr.decode(), 4)
