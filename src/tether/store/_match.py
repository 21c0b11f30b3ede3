"""Event payload filters, shared by every adapter so backends agree.

A filter is a JSON object; an event matches when every field it names has an
equal value in the payload, equal as JSON values are: ``true`` is not ``1``
nor ``false`` ``0`` (Python's ``True == 1`` woke a run waiting for
``{"ok": true}`` on ``{"ok": 1}``), while ``1`` and ``1.0`` are one number.
A dotted name (``"order.id"``) reaches into nested objects.
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
    return all(_same(_lookup(data, k), v) for k, v in wanted.items())


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean equals only a boolean, in lists and objects too."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
