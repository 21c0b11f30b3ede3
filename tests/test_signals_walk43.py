"""Signals and events that arrive after a wait's timeout passed, before a tick timed it
out: before, such a wait took the late answer, so whether a run saw its `default` or
the late payload depended on whether a worker's tick came between (on a FakeClock,
on whether the test fired the timers before it signalled)."""

from __future__ import annotations

from typing import Any

from tether import App, FakeClock, RunStatus, Workflow


async def _waiting(app: App, workflow_id: str) -> None:
    await app.asettle()
    assert (await app.aget_run(workflow_id)).status is RunStatus.WAITING


async def test_a_signal_after_the_timeout_passed_is_kept_for_the_next_wait(
    app: App, clock: FakeClock
) -> None:
    @app.workflow
    async def asks_twice(wf: Workflow) -> list[Any]:
        first = await wf.wait_for_signal("go", timeout=10, default="late")
        return [first, await wf.wait_for_signal("go")]

    await app.astart(asks_twice, workflow_id="late-sig")
    await _waiting(app, "late-sig")
    clock.advance(11)  # the timeout passed; nothing has timed the wait out yet
    assert await app.asignal("late-sig", "go", "yes") is False  # kept, not the first's answer
    await app.afire_due_timers()
    await app.asettle()
    done = await app.aresult("late-sig", timeout=5)
    assert done.value == ["late", "yes"]


async def test_a_run_replayed_past_a_waits_timeout_does_not_take_a_late_signal(
    app: App, clock: FakeClock
) -> None:
    @app.workflow
    async def asks_once(wf: Workflow) -> Any:
        return await wf.wait_for_signal("go", timeout=10, default="late")

    await app.astart(asks_once, workflow_id="late-replay")
    await _waiting(app, "late-replay")
    clock.advance(10)  # due at this instant, as `fire_due` judges it
    assert await app.asignal("late-replay", "go", "yes") is False
    # replayed before any tick: its wait, registered again, does not take the kept signal
    resumed = await app.aresume("late-replay")
    assert (resumed.status, resumed.value) == (RunStatus.COMPLETED, "late")


async def test_an_event_after_the_timeout_passed_wakes_no_run(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def hears(wf: Workflow, n: int) -> Any:
        return await wf.wait_for_event("done", timeout=10 * n, default="late")

    await app.astart(hears, 1, workflow_id="ev-late")
    await app.astart(hears, 2, workflow_id="ev-in-time")
    await _waiting(app, "ev-late")
    await _waiting(app, "ev-in-time")
    clock.advance(15)  # past the first's timeout, within the second's
    assert await app.asend_event("done", {"ok": True}) == ["ev-in-time"]
    await app.afire_due_timers()
    await app.asettle()
    assert (await app.aresult("ev-late", timeout=5)).value == "late"
    assert (await app.aresult("ev-in-time", timeout=5)).value == {"ok": True}
