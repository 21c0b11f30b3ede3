"""A sound tether database in a folder that cannot be written (a read-only mount, a
shared folder of another user): SQLite in WAL mode must make the -wal and -shm files
beside it even to read it, so it does not open, and `tether runs list` said the file
"is not a readable SQLite database" and told the user to pass --db, of the database
they had passed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._helpers import create, tether


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path/ro`, holding a tether database, made read-only for this process: by
    its mode, or (root writes past a mode) by a read-only bind mount of itself."""
    folder = tmp_path / "ro"
    folder.mkdir()
    create(f"sqlite:///{folder}/t.db")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for argv in (["mount", "--bind", folder, folder], ["mount", "-o", "remount,bind,ro", folder]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", folder], capture_output=True, check=False)
            pytest.skip(f"cannot make a read-only folder as root here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


def test_a_database_in_a_read_only_folder_is_said_so_with_the_fix(read_only: Path) -> None:
    assert not os.access(read_only, os.W_OK)  # the fixture did make it read-only
    url = f"sqlite:///{read_only}/t.db"
    for args in (["runs", "list"], ["usage", "--json"], ["runs", "show", "r1"]):
        done = tether(read_only.parent, *args, db=url)
        assert done.returncode == 4, (args, done.stderr)
        assert done.stdout == "", done.stdout
        said = " ".join(done.stderr.split())
        assert f"its folder {read_only} is read-only" in said, said
        assert "t.db-wal and t.db-shm" in said and "make the folder writable" in said, said
        assert "not a readable SQLite database" not in said, said
        assert "pass --db URL" not in said, said  # it was given the right one


def test_running_into_a_read_only_folder_says_so(read_only: Path, flow: Path) -> None:
    # `tether run` on it said "not a readable SQLite database", and on a new file there
    # "cannot open SQLite database ...: unable to open database file"
    for name in ("t.db", "new.db"):
        url = f"sqlite:///{read_only}/{name}"
        done = tether(read_only.parent, "run", f"{flow}:greet", "-i", '{"name": "a"}', db=url)
        assert done.returncode == 4, done.stderr
        said = " ".join(done.stderr.split())
        assert f"cannot open {read_only / name}: its folder {read_only} is read-only" in said
        assert "make the folder writable" in said and "unable to open" not in said, said
        assert not (read_only.parent / "effects.log").exists()  # no step ran
