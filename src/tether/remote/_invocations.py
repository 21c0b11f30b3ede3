"""How many times a remote run's tenant was invoked, read without its history.

Each invocation is recorded as an event `INVOKED` whose detail holds its number
(``{"invocation": n}``, since the protocol's first release), so the count is the number
in the run's latest such event: one row, read backwards from the run's last event
(`Store.last_event`). A drive counted them by reading every event of the run, at each
invocation: a run woken a thousand times read its whole history as many times.
"""

from __future__ import annotations

import json

from ..store import Store

__all__ = ["INVOKED", "invocations_so_far"]

INVOKED = "remote.invoked"


async def invocations_so_far(store: Store, workflow_id: str) -> int:
    """The number of the run's latest invocation (0: none yet)."""
    latest = await store.last_event(workflow_id, INVOKED)
    if latest is None:
        return 0
    number = _number(latest.detail)
    if number is not None:
        return number
    # an event without its number (never written by tether, but a database is a
    # database): counted one by one
    return sum(1 for e in await store.list_events(workflow_id) if e.type == INVOKED)


def _number(detail: str | None) -> int | None:
    """The invocation's number in its event's detail, if it holds one."""
    try:
        found = json.loads(detail) if detail else None
    except ValueError:
        return None
    number = found.get("invocation") if isinstance(found, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None
