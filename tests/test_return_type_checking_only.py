"""A workflow and a step whose return type is declared, in a module that imports
`Workflow` only for type checkers (``if TYPE_CHECKING:``, with postponed
annotations). Before, the one annotation that did not resolve at run time hid the
return type that did: a declared ``-> date`` came back from the record as a str."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from tether import App, RunStatus

if TYPE_CHECKING:
    from tether import Workflow


def _day() -> date:
    return date(2026, 12, 6)


async def dated(wf: Workflow) -> date:
    day = await wf.step("day", _day)
    assert isinstance(day, date), type(day)  # the step's own type, on replay too
    await wf.wait_for_signal("go")
    return day


async def test_a_declared_return_type_holds_beside_a_type_checking_only_annotation(
    app: App,
) -> None:
    flow = app.workflow(name="dated")(dated)
    assert (await app.arun(flow, workflow_id="d")).status is RunStatus.WAITING
    await app.asignal("d", "go")
    done = await app.aresult("d", timeout=30)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == date(2026, 12, 6) and isinstance(done.value, date)
