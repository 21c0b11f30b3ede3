"""Blob reads on PostgreSQL in slices of 1,000 bytes, not 1 MiB: a test's small bodies
then take many slices."""

from __future__ import annotations

import pytest


def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.store import _postgres

    sliced = _postgres._Q["get_blob"].replace("1048576", "1000")
    assert sliced != _postgres._Q["get_blob"]
    monkeypatch.setitem(_postgres._Q, "get_blob", sliced)
