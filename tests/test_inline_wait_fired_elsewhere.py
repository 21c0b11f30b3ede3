"""A run waiting inline for a brief timer (`App(inline_wait=...)`) whose timer another
process fires in the moment between the run parking and the driver looking at its
waits. The run is then pending, its wait resolved, and no wait is left to sleep
for: before, `arun` took that for "waiting" and returned the run `pending`, with
nothing driving it on (seen with a second process calling `fire_due_timers` in a
loop: 3 runs in 3 on PostgreSQL stopped halfway)."""

from __future__ import annotations

from typing import Any

from tether import App, RunStatus, Workflow
from tether.store import open_store
from tether.testing import FakeClock


async def test_a_timer_fired_elsewhere_as_the_run_parks_is_driven_on(
    database_url: str, clock: FakeClock
) -> None:
    other = App(database_url, clock=clock)  # another process's App: fires, drives nothing
    store = open_store(database_url)
    looked = store.list_waits
    fired: list[Any] = []

    async def list_waits(workflow_id: str) -> Any:
        if not fired:  # the other process fires the due timer just now
            clock.advance(1)
            fired.append(await other.afire_due_timers())
        return await looked(workflow_id)

    store.list_waits = list_waits  # type: ignore[method-assign]
    app = App(store=store, clock=clock, inline_wait=5)

    @app.workflow
    async def napping(wf: Workflow) -> str:
        await wf.step("a", lambda: "a")
        await wf.sleep(1)
        return await wf.step("b", lambda: "b")

    try:
        done = await app.arun(napping, workflow_id="nap")
        assert fired == [["nap"]]  # the timer was fired by the other App, not this one
        assert done.status is RunStatus.COMPLETED, done.status
        assert done.value == "b"
    finally:
        await app.aclose()
        await other.aclose()
