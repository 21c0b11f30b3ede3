"""Fixtures shared by the agents tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .trackers._servers import FakeGitHub, served


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A GitHub issues API on a free loopback port (`fake.base` is its URL)."""
    yield from served(FakeGitHub())
