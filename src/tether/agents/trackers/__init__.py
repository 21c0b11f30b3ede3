"""Trackers: the port (`Tracker`) and its adapters."""

from __future__ import annotations

from ._file import FileTracker, parse_issues
from ._memory import MemoryTracker
from ._port import Tracker

__all__ = ["FileTracker", "MemoryTracker", "Tracker", "parse_issues"]
