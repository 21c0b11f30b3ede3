"""`App.list_runs` refuses a filter no run could match, on both databases alike.

An empty tag, tenant, workflow or parent listed nothing on SQLite, and one with a
NUL failed on PostgreSQL as a store error (which a client retries); a time window
given the wrong way round listed nothing, as if no run had been created.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tether import App, Workflow
from tether.errors import InvalidArgumentError
from tether.testing import FakeClock


async def leaf(wf: Workflow, n: int) -> int:
    return n


@pytest.mark.parametrize("what", ["tag", "tenant", "workflow", "parent"])
@pytest.mark.parametrize("value", ["", "  ", "acme\x00"])
async def test_a_name_no_run_can_have_is_refused(app: App, what: str, value: str) -> None:
    await app.asubmit(leaf, 1, workflow_id="r", tags=["vip"], tenant="acme")
    with pytest.raises(InvalidArgumentError, match=f"{what}.*leave it out \\(None\\)"):
        await app.alist_runs(**{what: value})  # type: ignore[arg-type]


async def test_a_cursor_with_a_nul_is_refused_as_bad_input(app: App) -> None:
    await app.arun(leaf, 1, workflow_id="r")
    with pytest.raises(InvalidArgumentError, match="after"):
        await app.alist_runs(after="r\x00")


async def test_a_window_the_wrong_way_round_is_refused(app: App, clock: FakeClock) -> None:
    await app.arun(leaf, 1, workflow_id="r")
    now = clock.now()
    early, late = now - timedelta(hours=1), now + timedelta(hours=1)
    assert [
        r.workflow_id for r in await app.alist_runs(created_after=early, created_before=late)
    ] == ["r"]
    with pytest.raises(InvalidArgumentError, match="swap them"):
        await app.alist_runs(created_after=late, created_before=early)
    with pytest.raises(InvalidArgumentError, match="must be before"):
        await app.alist_runs(created_after=now, created_before=now)


async def test_good_names_still_filter(app: App) -> None:
    await app.asubmit(leaf, 1, workflow_id="r", tags=["vip"], tenant="acme")
    assert [r.workflow_id for r in await app.alist_runs(tag="vip", tenant="acme")] == ["r"]
    assert await app.alist_runs(tag="nope") == []
