"""Where a ``budget.raise`` signal must go: to the run that waits for it.

A budget of a run stops the calls of the runs it started too, and it is the run whose
call stopped that waits for the raise (its stop message names it). Sent to the run
that owns the budget instead, the signal was kept for a wait that never comes, and
the stopped run stayed paused with nothing said.
"""

from __future__ import annotations

from .errors import InvalidArgumentError
from .store import RunFilter, Store, WaitKind, WaitStatus

__all__ = ["check_raise_target"]

RAISE = "budget.raise"
_LOOKED_AT = 200  # descendant runs looked at, at most: a raise is rare, a tree can be wide


async def check_raise_target(store: Store, workflow_id: str) -> None:
    """Refuse a ``budget.raise`` for `workflow_id` when it waits for none and a run it
    started (at any depth) does, naming that run. One waiting, or none anywhere below
    (a raise sent ahead of a pause), is let through as any signal is."""
    if await _waits_for_raise(store, workflow_id):
        return
    waiting = await _waiting_below(store, workflow_id)
    if waiting:
        shown = ", ".join(repr(w) for w in waiting[:3]) + (" ..." if len(waiting) > 3 else "")
        raise InvalidArgumentError(
            f"run {workflow_id!r} does not wait for {RAISE}, but run(s) it started do: "
            f"{shown} (its budget stopped their calls, and they wait for the raise); "
            f"send it to them, e.g. app.signal({waiting[0]!r}, {RAISE!r}, {{...}})"
        )


async def _waiting_below(store: Store, workflow_id: str) -> list[str]:
    """The unfinished runs below `workflow_id` waiting for a raise, breadth first."""
    waiting: list[str] = []
    frontier, looked = [workflow_id], 0
    while frontier and looked < _LOOKED_AT:
        parent = frontier.pop(0)
        for child in await store.list_runs_page(RunFilter(parent=parent), limit=_LOOKED_AT):
            looked += 1
            if child.status.terminal:
                continue
            if await _waits_for_raise(store, child.workflow_id):
                waiting.append(child.workflow_id)
            frontier.append(child.workflow_id)
    return waiting


async def _waits_for_raise(store: Store, workflow_id: str) -> bool:
    return any(
        w.kind is WaitKind.SIGNAL and w.name == RAISE and w.status is WaitStatus.PENDING
        for w in await store.list_waits(workflow_id)
    )
