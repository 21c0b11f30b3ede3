"""Fixtures shared by the agents tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .trackers._servers import FakeGitHub, serving


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A GitHub issues API on a free loopback port (`fake.base` is its URL)."""
    fake = FakeGitHub()
    with serving(fake) as base:
        fake.base = base
        yield fake
