"""A prune picks runs in one transaction (`prunable_runs`) and deletes them in another
(`delete_runs`); a `rerun_from` through a second store handle (`store`) between the two
must not let the delete take a run whose family no longer passes the prune's rule. The
gate is the App's own pick, wrapped to let the rerun in once it has picked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

import tether
from tether import App, FakeClock, RunStatus
from tether.store import Fence, NewEvent, NewRun, Store


async def _finished(store: Store, wid: str, at: datetime, parent: str | None = None) -> None:
    """A run that took step "s" and completed at `at`."""
    await store.create_run(NewRun(wid, "wf", state="null", parent_id=parent), at)
    fence = Fence(wid, (await store.claim_run(wid, "o", at, NewEvent("r"))).generation)
    await store.start_step(fence, "s", idempotency_key=None, at=at, event=NewEvent("s"))
    await store.finish_run(
        fence, RunStatus.COMPLETED, output="1", error=None, at=at, event=NewEvent("x")
    )


async def _family(app: App, clock: FakeClock) -> None:
    """Run "p" and its child "p/c", both ended an hour ago."""
    await _finished(app.store, "p", clock.now())
    await _finished(app.store, "p/c", clock.now(), parent="p")
    clock.advance(3600)


async def _rerun_to_end(store: Store, wid: str, at: datetime) -> None:
    """Rerun `wid` from its step "s" and let it complete again at `at`."""
    await store.rerun_from(wid, "s", at=at)
    fence = Fence(wid, (await store.claim_run(wid, "o", at, NewEvent("r"))).generation)
    await store.finish_run(
        fence, RunStatus.COMPLETED, output="2", error=None, at=at, event=NewEvent("x")
    )


def _gate(app: App, meanwhile: Callable[[], Awaitable[None]]) -> list[list[str]]:
    """Run `meanwhile` after the prune's first pick, before its delete; the picks."""
    pick, picks = app.store.prunable_runs, []

    async def gated(*args: Any, **kw: Any) -> list[str]:
        ids = await pick(*args, **kw)
        picks.append(ids)
        if len(picks) == 1:
            await meanwhile()
        return ids

    app.store.prunable_runs = gated  # type: ignore[method-assign]
    return picks


async def test_a_child_stays_when_its_parent_is_rerun_between_pick_and_delete(
    app: App, clock: FakeClock, store: Store
) -> None:
    await _family(app, clock)
    picks = _gate(app, lambda: store.rerun_from("p", "s", at=clock.now()))

    # the parent, open again, replays its child from the child's row: it must stay
    assert await app.aprune("1m") == 0
    assert picks[0] == ["p"]  # a family's top: the child would have gone with it
    assert (await app.aget_run("p")).status is RunStatus.PENDING
    assert (await app.aget_run("p/c")).status is RunStatus.COMPLETED


async def test_a_family_stays_when_a_child_is_rerun_to_a_later_end_meanwhile(
    app: App, clock: FakeClock, store: Store
) -> None:
    await _family(app, clock)

    _gate(app, lambda: _rerun_to_end(store, "p/c", clock.now()))
    # the child ended after the cutoff now: neither it nor the parent it would go with
    assert await app.aprune("1m") == 0
    assert {r.workflow_id for r in await app.alist_runs()} == {"p", "p/c"}


async def test_a_run_rerun_to_a_later_end_meanwhile_stays(
    app: App, clock: FakeClock, store: Store
) -> None:
    await _finished(app.store, "r", clock.now())
    clock.advance(3600)

    _gate(app, lambda: _rerun_to_end(store, "r", clock.now()))
    assert await app.aprune("1m") == 0
    assert (await app.aget_run("r")).finished_at == clock.now()


async def test_a_rerun_after_the_family_went_is_told_the_run_is_not_found(
    app: App, clock: FakeClock, store: Store
) -> None:
    await _family(app, clock)
    assert await app.aprune("1m") == 2
    for wid in ("p", "p/c"):
        with pytest.raises(tether.RunNotFoundError):
            await store.rerun_from(wid, "s", at=clock.now())
