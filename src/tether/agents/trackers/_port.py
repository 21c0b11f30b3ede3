"""The tracker port: where issues come from, and the few writes a run makes.

Reads follow Symphony's contract: `fetch_issues_by_states` (an empty list asks
nothing; issues that are not dispatchable are included, the scheduler
decides) and `fetch_issues_by_ids` (ids not returned are not visible). Both
raise `TrackerError` rather than return a partial answer.

Writes (`move`, `comment`) are called inside durable steps and carry a
`marker` (``tether-run:<run>:<step>``): an adapter that can look before it
writes (comments) finds the marker of a write that landed before a crash and
does not write again; a move to the state an issue is already in is a no-op.
A comment is tether's own only if the marker is its last line, alone (as
`marked` writes it): a person quoting or pasting it elsewhere in a comment of
theirs must not make tether skip its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._issue import Issue

__all__ = ["Tracker", "carries_marker", "marked"]


@runtime_checkable
class Tracker(Protocol):
    kind: str

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]: ...

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]: ...

    async def move(self, issue_id: str, state: str, *, marker: str) -> None: ...

    async def comment(self, issue_id: str, body: str, *, marker: str) -> None: ...

    async def aclose(self) -> None: ...


def _tag(marker: str) -> str:
    return f"<!-- {marker} -->"


def marked(body: str, marker: str) -> str:
    """`body` as tether posts it: the marker (an invisible HTML comment) on its own last line."""
    return f"{body}\n\n{_tag(marker)}"


def carries_marker(text: str, marker: str) -> bool:
    """Whether a comment's `text` is one `marked` wrote with `marker` (its last line is
    the tag, alone; a quoted ``> <!-- ... -->`` or a tag mid-text is a person's)."""
    lines = text.rstrip().splitlines()
    return bool(lines) and lines[-1].strip() == _tag(marker)
