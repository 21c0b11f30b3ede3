"""Fixtures shared by the agents tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import tether

from ._procs import AGENT
from .trackers._servers import FakeGitHub, served


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A GitHub issues API on a free loopback port (`fake.base` is its URL)."""
    yield from served(FakeGitHub())


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tether.App]:
    """An App on the test database, its clock fake, its runs waited out inline for 5 s."""
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where `_procs.AGENT` logs its starts and looks for its block/fail files."""
    where = tmp_path / "agent"
    where.mkdir()
    (where / "agent.py").write_text(AGENT)
    monkeypatch.setenv("AGENT_HOME", str(where))
    return where
