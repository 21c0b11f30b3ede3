"""An in-memory tracker for tests: issues in a dict, writes recorded in order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from .._errors import TrackerError
from .._issue import Issue, normalise_state

__all__ = ["MemoryTracker"]


class MemoryTracker:
    """Holds issues; `fail_reads` makes the next reads raise (a tracker outage)."""

    kind = "memory"

    def __init__(self, issues: Iterable[Issue] = ()) -> None:
        self.issues: dict[str, Issue] = {i.id: i for i in issues}
        self.writes: list[tuple[str, str, str, str]] = []  # (kind, issue id, value, marker)
        self.fail_reads = 0
        self.reads = 0

    def put(self, issue: Issue) -> None:
        self.issues[issue.id] = issue

    def set_state(self, issue_id: str, state: str) -> None:
        self.issues[issue_id] = replace(self.issues[issue_id], state=state)

    def remove(self, issue_id: str) -> None:
        self.issues.pop(issue_id, None)

    def _read(self) -> None:
        self.reads += 1
        if self.fail_reads:
            self.fail_reads -= 1
            raise TrackerError("the memory tracker is down (fail_reads)", code="tracker_request")

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        if not states:
            return []
        self._read()
        wanted = {normalise_state(s) for s in states}
        return [i for i in self.issues.values() if normalise_state(i.state) in wanted]

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        if not ids:
            return []
        self._read()
        return [self.issues[i] for i in dict.fromkeys(ids) if i in self.issues]

    async def move(self, issue_id: str, state: str, *, marker: str) -> None:
        if issue_id in self.issues:
            self.set_state(issue_id, state)
            self.writes.append(("move", issue_id, state, marker))

    async def comment(self, issue_id: str, body: str, *, marker: str) -> None:
        if any(w[0] == "comment" and w[3] == marker for w in self.writes):
            return
        self.writes.append(("comment", issue_id, body, marker))

    async def aclose(self) -> None:
        return None
