"""The store tests' shared fixture: an opened store of the current backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether.store import Store, open_store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A fresh store, opened (migrated), closed after the test."""
    s = open_store(database_url)
    await s.open()
    yield s
    await s.close()
