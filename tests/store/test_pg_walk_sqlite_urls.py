"""SQLite URLs as a user writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import App
from tether.errors import InvalidArgumentError


def test_a_home_folder_path_says_that_tilde_is_not_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///~/t.db was told to "mkdir -p '~'": a folder named ~ in the working
    directory, which `rm -rf ~` meant for it would not remove: it removes the home folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(InvalidArgumentError) as info:
        App("sqlite:///~/t.db")
    msg = str(info.value)
    assert "does not expand ~" in msg and "mkdir" not in msg
    assert f"sqlite:///{tmp_path / 'home' / 't.db'}" in msg
    assert not (tmp_path / "~").exists()
