"""A family of runs is deleted whole: a finished child of a run that has not ended is
refused (that run's replay reads it: a detached child deleted was started anew and ran
again), and a prune takes a family from its top, so neither a batch limit, a --status
nor an open sibling leaves a parent without a child it started."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

import tether
from tether import App, ChildRunError, FakeClock, InvalidArgumentError, RunStatus
from tether.testing import eventually

from .._sql import execute

RAN: list[str] = []


async def kid(wf: tether.Workflow) -> str:
    RAN.append(wf.workflow_id)
    return "kid"


async def bad_kid(wf: tether.Workflow) -> str:
    raise RuntimeError("the kid failed")


async def open_kid(wf: tether.Workflow) -> str:
    return str(await wf.wait_for_signal("go"))


async def awaits_then_parks(wf: tether.Workflow) -> str:
    got = await wf.child(kid)
    await wf.wait_for_signal("go")
    return got


async def starts_then_parks(wf: tether.Workflow) -> str:
    cid = await wf.start_child(kid, workflow_id="detached-kid")
    await wf.wait_for_signal("go")
    return cid


async def survives_a_failed_kid(wf: tether.Workflow) -> str:
    with contextlib.suppress(ChildRunError):
        await wf.child(bad_kid)
    return "survived"


async def leaves_a_kid_open(wf: tether.Workflow) -> str:
    await wf.start_child(open_kid, workflow_id="open-kid")
    return await wf.child(kid)


async def _status(app: App, wid: str) -> RunStatus:
    return (await app.aget_run(wid)).status


async def _reaches(app: App, wid: str, status: RunStatus) -> None:
    async def there() -> bool:
        return await _status(app, wid) is status

    await eventually(there)


async def _left(app: App) -> set[str]:
    return {r.workflow_id for r in await app.alist_runs()}


@pytest.mark.parametrize("parent", [awaits_then_parks, starts_then_parks])
async def test_a_finished_child_of_a_waiting_run_is_not_deleted(
    app: App, parent: Callable[..., Any]
) -> None:
    RAN.clear()
    assert (await app.arun(parent, workflow_id="p")).status is RunStatus.WAITING
    (child,) = await app.store.child_runs("p")
    await _reaches(app, child, RunStatus.COMPLETED)

    with pytest.raises(InvalidArgumentError, match=r"started by run 'p'.*\(waiting\)") as err:
        await app.adelete_run(child)
    assert "once it ends" in str(err.value) and "cancel it" in str(err.value)
    with pytest.raises(InvalidArgumentError, match="started by run 'p'"):
        await app.store.delete_runs([child])  # the store verb refuses, not only the App
    assert await _status(app, child) is RunStatus.COMPLETED

    await app.asignal("p", "go")
    await _reaches(app, "p", RunStatus.COMPLETED)
    assert [child] == RAN  # a detached child deleted was started again by the replay
    await app.adelete_run("p")  # ended: the family goes whole
    assert await _left(app) == set()


async def test_a_batch_of_one_takes_a_family_whole(app: App, clock: FakeClock) -> None:
    await app.arun(awaits_then_parks, workflow_id="p")  # its child ends now, first
    clock.advance(60)
    await app.asignal("p", "go")
    await _reaches(app, "p", RunStatus.COMPLETED)
    clock.advance(3600)
    cutoff = clock.now()

    # the child ended first: a limit of one picked it alone (oldest first), and its
    # parent stayed without it until the next batch (for good, if the prune stopped)
    ids = await app.store.prunable_runs(cutoff, None, 1)
    assert ids == ["p"]
    assert await app.store.delete_runs(ids, finished_before=cutoff) == 2
    assert await _left(app) == set()


async def test_a_child_picked_alone_by_its_status_stays_with_its_parent(
    app: App, clock: FakeClock
) -> None:
    assert (await app.arun(survives_a_failed_kid, workflow_id="q")).status is RunStatus.COMPLETED
    clock.advance(3600)

    # the failed child went alone, and its parent stayed without it for good
    assert await app.aprune("1m", ["failed"]) == 0
    assert await _left(app) == {"q", "q/bad_kid#1"}
    assert await app.aprune("1m", ["completed"]) == 2


async def test_a_child_stays_while_a_sibling_has_not_ended(app: App, clock: FakeClock) -> None:
    assert (await app.arun(leaves_a_kid_open, workflow_id="s")).status is RunStatus.COMPLETED
    await _reaches(app, "open-kid", RunStatus.WAITING)
    clock.advance(3600)

    # "s" and its child "s/kid#1" ended an hour ago, "open-kid" has not: the child went
    # alone
    assert await app.aprune("1m") == 0
    assert await _left(app) == {"s", "s/kid#1", "open-kid"}
    await app.asignal("open-kid", "go", 1)
    await _reaches(app, "open-kid", RunStatus.COMPLETED)
    clock.advance(3600)
    assert await app.aprune("1m") == 3


async def test_a_child_whose_parents_row_is_gone_is_pruned(
    app: App, clock: FakeClock, database_url: str
) -> None:
    """Nothing ties a child's `parent_id` to a row (no foreign key): a parent's row
    deleted outside tether leaves its child the top of what is left. `prunable_runs`
    picked it, and `delete_runs` skipped it as a run below another, for good."""
    assert (await app.arun(awaits_then_parks, workflow_id="p")).status is RunStatus.WAITING
    await app.asignal("p", "go")
    await _reaches(app, "p", RunStatus.COMPLETED)
    assert len(await app.store.child_runs("p")) == 1
    execute(database_url, "DELETE FROM runs WHERE id = 'p'")
    clock.advance(3600)
    assert await app.aprune("1m") == 1
    assert await _left(app) == set()
