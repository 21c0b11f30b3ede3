"""A URL option of tether's own given empty (``?schema=``) is refused: read as absent,
it took its default, and a templated URL whose value came out empty put the tables in
schema ``tether``, beside another deployment's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tether import App
from tether.errors import InvalidArgumentError

TETHER = str(Path(sys.executable).with_name("tether"))


@pytest.mark.parametrize(
    "query", ["schema=", "schema=%20", "pool_size=", "statement_timeout=&schema=x"]
)
def test_an_empty_postgresql_option_is_refused(query: str) -> None:
    name = query.split("=")[0]
    with pytest.raises(InvalidArgumentError, match=rf"\?{name}= is empty; give it a value"):
        App(f"postgresql://127.0.0.1/test?{query}")


def test_an_empty_sqlite_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\?busy_timeout= is empty"):
        App(f"sqlite:///{tmp_path}/t.db?busy_timeout=")
    assert not (tmp_path / "t.db").exists()


def test_the_command_exits_2_naming_the_empty_option(tmp_path: Path) -> None:
    done = subprocess.run(
        [TETHER, "--db", "postgresql://127.0.0.1/test?schema=", "runs", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "?schema= is empty" in done.stderr and "Traceback" not in done.stderr
