"""Event payload filters, shared by every adapter so backends agree.

A filter is a JSON object; an event matches when every field it names has an
equal value in the payload. A dotted name (``"order.id"``) reaches into
nested objects.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["matches"]

_MISSING = object()


def _lookup(payload: Any, dotted: str) -> Any:
    cur = payload
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def matches(match: str | None, payload: str | None) -> bool:
    """Whether the JSON `payload` satisfies the JSON filter `match` (None matches all)."""
    if match is None:
        return True
    wanted = json.loads(match)
    if not wanted:
        return True
    data = None if payload is None else json.loads(payload)
    return all(_lookup(data, k) == v for k, v in wanted.items())
