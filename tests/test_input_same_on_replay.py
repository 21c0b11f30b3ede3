"""A workflow's input is what every drive of its run reads, the first one included:
a tuple given to an unannotated parameter was a tuple on the first drive and a list
on the replay after a crash; such an input is now refused when the run is started,
and what is accepted reads the same on every drive."""

from __future__ import annotations

import enum
from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel

from tether import App, NotSerializableError, RunStatus, Workflow


class Order(BaseModel):
    id: int


class Colour(enum.Enum):
    RED = "red"


def _seen_each_drive(app: App) -> tuple[Any, list[Any]]:
    seen: list[Any] = []

    @app.workflow(name="takes")
    async def takes(wf: Workflow, x) -> str:  # type: ignore[no-untyped-def]  # unannotated on purpose
        seen.append(x)
        await wf.wait_for_signal("go")
        return type(x).__name__

    return takes, seen


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ((1, 2), "builtins.tuple at $"),
        (Order(id=1), "Order at $ would come back as a dict"),
        (Colour.RED, "Colour at $"),
        ({"day": date(2026, 1, 2)}, "datetime.date at $.day"),
        ({1: "a"}, "(a key)"),
    ],
)
async def test_an_untyped_input_a_replay_would_read_as_another_is_refused(
    app: App, given: Any, path: str
) -> None:
    takes, seen = _seen_each_drive(app)
    with pytest.raises(NotSerializableError, match="Annotate the workflow's input") as caught:
        await app.arun(takes, given, workflow_id="w")
    assert path in str(caught.value)
    assert seen == [] and await app.alist_runs() == []  # nothing created


async def test_the_first_drive_reads_the_input_as_every_replay_does(app: App) -> None:
    takes, seen = _seen_each_drive(app)
    given = {"items": [1, 2], "note": "x"}
    parked = await app.arun(takes, given, workflow_id="w")
    assert parked.status is RunStatus.WAITING
    given["items"].append(3)  # the caller's object changes after the start
    await app.asignal("w", "go", None)
    assert (await app.arun(takes, workflow_id="w")).value == "dict"
    assert seen == [{"items": [1, 2], "note": "x"}] * 2
    assert seen[0] is not given


async def test_a_typed_input_that_reads_back_as_another_value_is_refused(app: App) -> None:
    @app.workflow(name="either")
    async def either(wf: Workflow, x: str | date) -> str:
        return type(x).__name__

    with pytest.raises(NotSerializableError, match="reads back as str"):
        await app.arun(either, date(2026, 1, 2), workflow_id="e")
    assert (await app.arun(either, "2026-01-02", workflow_id="s")).value == "str"


async def test_a_typed_input_is_the_declared_type_on_every_drive(app: App) -> None:
    seen: list[Any] = []

    @app.workflow(name="typed")
    async def typed(wf: Workflow, x: tuple[int, int]) -> None:
        seen.append(x)
        await wf.wait_for_signal("go")

    await app.arun(typed, [1, 2], workflow_id="t")
    await app.asignal("t", "go", None)
    await app.arun(typed, workflow_id="t")
    assert seen == [(1, 2), (1, 2)]
