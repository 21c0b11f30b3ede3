"""Routes under ``/runs/{id}/...`` whose run id may hold '/' (a child's does), and
``/wait-tokens/{id}/complete``, whose token id may too (``wf.wait_for_token`` takes
the caller's own, such as ``order/42``).

Such a route takes the rest of the path as the id (``{workflow_id:path}``), so
``/runs/x/events`` is ambiguous: the events of run ``x``, or the record of run
``x/events``? The raw path answers it: a client that percent-encodes the id
(``/runs/x%2Fevents``, as `Client` does) sends the route's own tail, such as
``/events``, as the only literal slashes after the id. A route here matches only
if its tail is literally in the raw path, so an encoded id is always read whole
(``..`` and ``.`` too, sent as ``%2E%2E`` and ``%2E``). An id sent unencoded
still works when no route's tail ends it. Being routes of the API, they check
their query too (`ApiRoute`).

A route with no tail (the record's, ``/runs/{id}``) does not match an empty id:
``/runs/`` is the list's address with a trailing slash, redirected to ``/runs``
as every other route's is (it was read as the record of run "", a 422, and a
POST to it a 405 saying the path takes GET alone).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Match
from starlette.types import Scope

from ._query import ApiRoute

__all__ = ["RunRoute"]

_WHOLE = ":path}"  # a parameter that takes the rest of the path: '/' and all


class RunRoute(ApiRoute):
    """An `ApiRoute` that, for a path with a ``{...:path}`` parameter followed by a tail
    (``/events``), matches only when the raw path ends with that tail as sent."""

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        tail = path.partition(_WHOLE)[2]
        self._tail = tail.encode()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        if not self._tail:  # ``/runs/``: the list's address with a trailing slash, not run ""
            empty = "" in child.get("path_params", {}).values()
            return (Match.NONE, {}) if empty else (match, child)
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and not raw.partition(b"?")[0].endswith(self._tail):
            return Match.NONE, {}  # the tail is part of an encoded id: another route's
        return match, child
