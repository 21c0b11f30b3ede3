"""Verbs of `ApiVerbs`: the heads of a page of runs (`list_run_heads`), which are the
runs of `list_runs_page` without what a list does not show."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tether.store import (
    EndReason,
    Fence,
    NewEvent,
    NewRun,
    RunFilter,
    RunRow,
    RunStatus,
    Store,
)

from .._sql import execute

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EV = NewEvent("x")
ERROR = json.dumps({"type": "RuntimeError", "message": "gave up", "traceback": "..."})


async def _runs(store: Store) -> None:
    """Runs of two tenants and workflows, some created at the same instant (ties go by
    id), one failed with an error, children of `p`."""
    made = [
        ("p", "wf", "acme", None, ("a",), 0),
        ("p/c1", "wf", "acme", "p", ("a", "b"), 1),
        ("p/c2", "kid", "acme", "p", (), 1),
        ("q", "wf", "globex", None, ("b",), 1),
        ("r", "kid", "globex", None, ("a",), 2),
        ("s", "wf", None, None, (), 3),
        ("t", "wf", None, None, ("b",), 3),
    ]
    for wid, name, tenant, parent, tags, minute in made:
        new = NewRun(wid, name, input=json.dumps({"in": wid}), state=json.dumps([wid]),
                     tags=tags, tenant=tenant, parent_id=parent)  # fmt: skip
        await store.create_run(new, T0 + timedelta(minutes=minute))
    claimed = await store.claim_run("q", "o", T0, EV)
    fence = Fence("q", claimed.generation)
    await store.finish_run(fence, RunStatus.FAILED, output=None, error=ERROR, at=T0, event=EV)


def _headed(row: RunRow, *, error: bool = False, state: bool = False) -> RunRow:
    """`row` as `list_run_heads` gives it."""
    return replace(
        row,
        input=None,
        output=None,
        initial_state=None,
        error=row.error if error else None,
        state=row.state if state else None,
    )


Page = Callable[[RunFilter, int, "tuple[str, datetime] | None"], Awaitable[list[RunRow]]]


async def _walk(page: Page, where: RunFilter, size: int) -> list[list[RunRow]]:
    """Every page of `size` runs, each after the last run of the one before."""
    pages: list[list[RunRow]] = []
    after = None
    while not pages or len(pages[-1]) == size:
        pages.append(await page(where, size, after))
        if pages[-1]:
            after = (pages[-1][-1].workflow_id, pages[-1][-1].created_at)
    return pages


FILTERS = [
    RunFilter(),
    RunFilter(status=RunStatus.FAILED),
    RunFilter(status=RunStatus.PENDING, tag="b"),
    RunFilter(workflow="kid"),
    RunFilter(tenant="acme"),
    RunFilter(parent="p"),
    RunFilter(created_after=T0 + timedelta(minutes=1), created_before=T0 + timedelta(minutes=3)),
]


@pytest.mark.parametrize("where", FILTERS, ids=range(len(FILTERS)))
async def test_heads_are_the_runs_of_a_page_without_their_payloads(
    store: Store, where: RunFilter
) -> None:
    await _runs(store)
    for size in (1, 2, 50):
        whole = await _walk(lambda w, n, a: store.list_runs_page(w, limit=n, after=a), where, size)
        heads = await _walk(lambda w, n, a: store.list_run_heads(w, limit=n, after=a), where, size)
        shown = await _walk(
            lambda w, n, a: store.list_run_heads(w, limit=n, after=a, error=True, state=True),
            where,
            size,
        )
        assert heads == [[_headed(r) for r in p] for p in whole]
        assert shown == [[_headed(r, error=True, state=True) for r in p] for p in whole]
    assert any(r.input for p in whole for r in p)  # there were payloads to leave out


async def test_a_cursor_whose_run_was_deleted_goes_on_from_its_time(store: Store) -> None:
    await _runs(store)
    gone = ("zz-deleted", T0 + timedelta(minutes=1))
    whole = await store.list_runs_page(RunFilter(), limit=50, after=gone)
    heads = await store.list_run_heads(RunFilter(), limit=50, after=gone)
    assert [r.workflow_id for r in heads] == [r.workflow_id for r in whole] == ["p"]


async def test_a_head_has_the_error_and_state_asked_for(store: Store) -> None:
    await _runs(store)
    (failed,) = await store.list_run_heads(RunFilter(status=RunStatus.FAILED), limit=5)
    assert failed.error is None and failed.state is None
    assert failed.end_reason is EndReason.FAILED
    (failed,) = await store.list_run_heads(RunFilter(status=RunStatus.FAILED), limit=5, error=True)
    assert failed.error == ERROR and failed.state is None
    (failed,) = await store.list_run_heads(RunFilter(status=RunStatus.FAILED), limit=5, state=True)
    assert failed.error is None and failed.state == '["q"]'


async def test_a_run_ended_before_end_reasons_were_recorded_has_its_reason(
    store: Store, database_url: str
) -> None:
    """Its reason is read from its error (as for a whole row), though the error is not
    given unless asked."""
    await _runs(store)
    execute(database_url, "UPDATE runs SET end_reason = NULL")
    (failed,) = await store.list_run_heads(RunFilter(status=RunStatus.FAILED), limit=5)
    assert failed.end_reason is EndReason.FAILED and failed.error is None
    (whole,) = await store.list_runs_page(RunFilter(status=RunStatus.FAILED), limit=5)
    assert failed == _headed(whole)


async def _peak(read: Awaitable[object]) -> int:
    """The most memory Python held at once (bytes, above what it held before) while
    `read` ran."""
    tracemalloc.start()
    try:
        await read
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_heads_of_runs_with_large_payloads_do_not_read_them(store: Store) -> None:
    big = json.dumps("x" * 4_000_000)
    for i in range(6):
        new = NewRun(f"big-{i}", "load", input=big, state=big)
        await store.create_run(new, T0 + timedelta(seconds=i))
    whole = await _peak(store.list_runs_page(RunFilter(), limit=50))
    heads = await _peak(store.list_run_heads(RunFilter(), limit=50))
    assert whole > 6 * 4_000_000  # the measure sees a payload read: every input was
    assert heads < 1_000_000, heads  # not one input (4 MB) nor state read


async def test_run_heads_are_the_runs_named_without_their_payloads(store: Store) -> None:
    """In the order named, a run not found left out: a run page's children."""
    await _runs(store)
    named = ["t", "p/c2", "gone", "q", "p"]
    heads = await store.run_heads(named)
    whole = [await store.get_run(w) for w in named]
    assert heads == [_headed(r) for r in whole if r is not None]
    assert [r.workflow_id for r in heads] == ["t", "p/c2", "q", "p"]
    assert heads[2].end_reason is EndReason.FAILED and heads[2].error is None
    assert await store.run_heads([]) == []


async def test_run_heads_of_runs_with_large_payloads_do_not_read_them(store: Store) -> None:
    big = json.dumps("x" * 4_000_000)
    for i in range(6):
        new = NewRun(f"big-{i}", "load", input=big, state=big, parent_id="p")
        await store.create_run(new, T0 + timedelta(seconds=i))
    ids = await store.child_runs("p")

    async def whole() -> list[RunRow | None]:
        return [await store.get_run(w) for w in ids]

    assert await _peak(whole()) > 6 * 4_000_000  # the measure sees a read of each input
    heads = await _peak(store.run_heads(ids))
    assert heads < 1_000_000, heads  # not one input (4 MB) nor state read
    assert [r.workflow_id for r in await store.run_heads(ids)] == ids
