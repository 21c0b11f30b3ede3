"""Trackers: the port (`Tracker`) and its adapters."""

from __future__ import annotations

from ._file import FileTracker, parse_issues
from ._github import GitHubTracker
from ._http import rate_limit_wait
from ._linear import LinearTracker
from ._memory import MemoryTracker
from ._port import Tracker

__all__ = [
    "FileTracker",
    "GitHubTracker",
    "LinearTracker",
    "MemoryTracker",
    "Tracker",
    "parse_issues",
    "rate_limit_wait",
]
