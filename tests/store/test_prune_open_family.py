"""Pruning past finished runs whose children still run: `delete_runs` skips such a run
whole, so a prune that picked them filled its batch with them and deleted nothing else."""

from __future__ import annotations

import tether
from tether import App, FakeClock, RunStatus


async def test_prune_passes_over_runs_whose_children_have_not_ended(
    app: App, clock: FakeClock
) -> None:
    @app.workflow(name="kid")
    async def kid(wf: tether.Workflow) -> str:
        await wf.wait_for_signal("go")
        return "kid"

    @app.workflow(name="parent")
    async def parent(wf: tether.Workflow) -> str:
        await wf.start_child(kid)  # not waited for: the parent ends first
        return "parent"

    @app.workflow(name="plain")
    async def plain(wf: tether.Workflow) -> str:
        return "plain"

    for i in range(3):
        await app.arun(parent, workflow_id=f"p{i}")
    clock.advance(10)
    await app.arun(plain, workflow_id="plain")
    clock.advance(3600)

    assert await app.aprune("1m", batch=3) == 1
    left = {r.workflow_id: r.status for r in await app.alist_runs()}
    assert "plain" not in left
    # the parents stay with their children, which have not ended
    assert {w: s for w, s in left.items() if "/" not in w} == {
        f"p{i}": RunStatus.COMPLETED for i in range(3)
    }
    assert all(not s.terminal for w, s in left.items() if "/" in w)
    finished_before = clock.now()
    assert await app.store.prunable_runs(finished_before, None, 10) == []
