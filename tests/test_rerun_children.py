"""`rerun_from` a failed child's wait goes on in that child from where it stopped: the
failure that failed it, not one its code caught on the way (whose later steps would
run again), on both backends."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

import tether
from tether import App, Workflow


def _flaky(ran: list[str], name: str, fixed: list[bool]) -> object:
    def step() -> str:
        ran.append(name)
        if not fixed:
            raise ValueError(f"{name} not fixed yet")
        return name

    return step


async def _fails_then_goes_on(
    app: App, child: Any, parent_id: str, error: str, fixed: list[bool]
) -> None:
    """Run a parent awaiting `child` as `parent_id`: it fails with `error`; then fix."""

    @app.workflow(name=f"parent-of-{parent_id}")
    async def parent(wf: Workflow) -> str:
        return str(await wf.child(child))

    with pytest.raises(tether.ChildRunError, match=error):
        await app.arun(parent, workflow_id=parent_id)
    fixed.append(True)


async def test_a_child_goes_on_from_the_failure_that_failed_it_not_one_it_caught(
    app: App,
) -> None:
    """The child went on from its first failed step, a failure its code had caught:
    'charge', done after it, was forgotten and charged again."""
    fixed: list[bool] = []
    ran: list[str] = []

    @app.workflow(name="work")
    async def work(wf: Workflow) -> str:
        with contextlib.suppress(ValueError):  # fails for good, and is let be
            await wf.step("optional", _flaky(ran, "optional", []))
        charged = await wf.step("charge", lambda: ran.append("charge") or "$")
        return charged + await wf.step("ship", _flaky(ran, "ship", fixed))

    await _fails_then_goes_on(app, work, "pk", "ship not fixed yet", fixed)
    assert (await app.arerun_from("pk", "child:pk/work#1")).value == "$ship"
    assert ran == ["optional", "charge", "ship", "ship"]  # charged once


async def test_a_child_whose_code_raised_after_a_caught_failure_forgets_nothing(
    app: App,
) -> None:
    """A child whose code raised outside its steps, after catching a step's failure,
    went on from that caught failure: the steps after it ran again."""
    fixed: list[bool] = []
    ran: list[str] = []

    @app.workflow(name="tally")
    async def tally(wf: Workflow) -> int:
        with contextlib.suppress(ValueError):
            await wf.step("optional", _flaky(ran, "optional", []))
        n = await wf.step("count", lambda: ran.append("count") or 7)
        if not fixed:
            raise RuntimeError("the tally's code raised")
        return n

    @app.workflow
    async def parent(wf: Workflow) -> int:
        return int(await wf.child(tally)) + 1

    with pytest.raises(tether.ChildRunError, match="code raised"):
        await app.arun(parent, workflow_id="pt")
    fixed.append(True)
    assert (await app.arerun_from("pt", "child:pt/tally#1")).value == 8
    assert ran == ["optional", "count"]  # nothing ran again


async def test_a_child_whose_code_wrapped_its_steps_failure_goes_on_from_that_step(
    app: App,
) -> None:
    """A failure raised from the step's (`raise ... from exc`) is the step's."""
    fixed: list[bool] = []
    ran: list[str] = []

    @app.workflow(name="wrap")
    async def wrap(wf: Workflow) -> str:
        first = await wf.step("first", lambda: ran.append("first") or "1")
        try:
            return first + await wf.step("second", _flaky(ran, "second", fixed))
        except ValueError as exc:
            raise RuntimeError("the second step failed") from exc

    await _fails_then_goes_on(app, wrap, "pw2", "the second step failed", fixed)
    assert (await app.arerun_from("pw2", "child:pw2/wrap#1")).value == "1second"
    assert ran == ["first", "second", "second"]
