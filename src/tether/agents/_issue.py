"""The normalised issue every tracker produces (Symphony's domain model).

Labels are trimmed, lowercased, deduplicated; a `None` stays `None` and a
list is never missing, so a strict template may reference every field.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Blocker", "Issue", "normalise_labels", "normalise_state"]


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def scrub_unstorable(value: Any) -> Any:
    """`value` with every NUL and lone surrogate in its strings (keys too) replaced by
    U+FFFD: a tracker may send either (JSON escapes them), no database stores them."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub_unstorable(k): scrub_unstorable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_unstorable(v) for v in value]
    return value


def normalise_state(state: str | None) -> str:
    """How states are compared: trimmed and lowercased (the provider spelling is kept
    on the issue itself)."""
    return (state or "").strip().lower()


def normalise_labels(labels: Any) -> tuple[str, ...]:
    seen: list[str] = []
    for raw in labels or ():
        label = str(raw).strip().lower()
        if label and label not in seen:
            seen.append(label)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class Blocker:
    """An issue that blocks another: its id, identifier and state (None if unknown)."""

    id: str | None
    identifier: str | None
    state: str | None


@dataclass(frozen=True, slots=True)
class Issue:
    """One tracker issue, normalised. `priority`: lower is more urgent (None: unset);
    `dispatchable`: the adapter's verdict that an agent may work on it."""

    id: str
    identifier: str
    title: str
    state: str
    description: str | None = None
    priority: int | None = None
    labels: tuple[str, ...] = ()
    blocked_by: tuple[Blocker, ...] = ()
    dispatchable: bool = True
    url: str | None = None
    branch_name: str | None = None
    assignee_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: what a run records and what a prompt template sees. A NUL or a
        lone surrogate in the tracker's text (neither can be stored) is U+FFFD."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["blocked_by"] = [asdict(b) for b in self.blocked_by]
        clean: dict[str, Any] = scrub_unstorable(data)
        return clean

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Issue:
        priority = data.get("priority")
        return cls(
            id=str(data["id"]),
            identifier=str(data["identifier"]),
            title=str(data["title"]),
            state=str(data["state"]),
            description=data.get("description"),
            priority=priority
            if isinstance(priority, int) and not isinstance(priority, bool)
            else None,
            labels=normalise_labels(data.get("labels")),
            blocked_by=tuple(
                Blocker(b.get("id"), b.get("identifier"), b.get("state"))
                for b in data.get("blocked_by") or ()
            ),
            dispatchable=bool(data.get("dispatchable", True)),
            url=data.get("url"),
            branch_name=data.get("branch_name"),
            assignee_id=data.get("assignee_id"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            extra=dict(data.get("extra") or {}),
        )
