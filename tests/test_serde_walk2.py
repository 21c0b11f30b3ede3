"""A typed result that reads back as another value is refused on the first run.

Pydantic reads a result back without error yet as something else: a union whose
members both take its JSON (``str | date`` reads ``"2026-01-02"`` as the str), or
``Any`` (a date under ``dict[str, Any]``). The first run, and every replay, then
went on with a str where the function returned a date, and nothing said so."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from tether import App, NotSerializableError, StepStatus, Workflow

DAY = date(2026, 1, 2)


class Loose(BaseModel):
    n: int
    when: object = None


class Base(BaseModel):
    n: int


class Sub(Base):
    extra: str = "x"


@dataclasses.dataclass(eq=False)
class NoEq:
    n: int


async def _first_and_replay(app: App, wid: str, fn: Any, tp: Any) -> list[Any]:
    """What the step answered on the first run and on a replay of the same run."""
    seen: list[Any] = []

    async def flow(wf: Workflow) -> None:
        seen.append(await wf.step("s", fn, result_type=tp))
        await wf.wait_for_signal("again")

    await app.arun(flow, workflow_id=wid)
    await app.asignal(wid, "again")
    await app.arun(flow, workflow_id=wid)
    return seen


async def _refused(app: App, wid: str, fn: Any, tp: Any) -> NotSerializableError:
    async def flow(wf: Workflow) -> Any:
        return await wf.step("s", fn, result_type=tp)

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id=wid)
    record = await app.aget_record(wid)
    assert record.steps["s"].status is StepStatus.FAILED  # not recorded as done
    return info.value


async def test_a_date_declared_str_or_date_is_refused_not_read_back_a_str(app: App) -> None:
    err = await _refused(app, "union", lambda: DAY, str | date)
    assert err.path == "$" and err.offending_type is date
    assert "reads back as str '2026-01-02'" in str(err) and "left_to_right" in str(err)


async def test_the_left_to_right_union_the_error_names_keeps_the_date(app: App) -> None:
    tp = Annotated[date | str, Field(union_mode="left_to_right")]
    assert await _first_and_replay(app, "l2r", lambda: DAY, tp) == [DAY, DAY]
    assert [type(v) for v in await _first_and_replay(app, "l2r-s", lambda: "x", tp)] == [str, str]


async def test_a_date_under_any_is_refused_with_its_path(app: App) -> None:
    err = await _refused(app, "any", lambda: {"at": DAY}, dict[str, Any])
    assert err.path == "$.at" and err.offending_type is date


async def test_a_date_in_a_model_field_of_type_object_is_refused(app: App) -> None:
    async def flow(wf: Workflow) -> Any:
        return await wf.step("s", lambda: Loose(n=1, when=DAY))  # untyped: by its class

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id="loose")
    assert info.value.path == "$.when" and "reads back as str" in str(info.value)


async def test_a_result_declared_a_str_or_date_returning_a_date_fails_the_run(app: App) -> None:
    async def flow(wf: Workflow) -> str | date:
        return DAY

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id="wf-union")
    assert "the result of workflow" in str(info.value) and info.value.offending_type is date


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        (True, int, 1),  # the declared int
        (3, float, 3.0),
        (Sub(n=1), Base, Base(n=1)),  # as its declared class, as before
        ([1.5, 2], list[float], [1.5, 2.0]),
    ],
)
async def test_values_that_read_back_as_their_declared_type_still_pass(
    app: App, value: Any, tp: Any, expected: Any
) -> None:
    first, replay = await _first_and_replay(app, "fine", lambda: value, tp)
    assert first == replay == expected and type(first) is type(replay) is type(expected)


async def test_a_dataclass_without_eq_still_passes(app: App) -> None:
    first, replay = await _first_and_replay(app, "noeq", lambda: NoEq(2), NoEq)
    assert type(first) is type(replay) is NoEq and first.n == replay.n == 2
