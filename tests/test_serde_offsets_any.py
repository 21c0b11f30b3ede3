"""A str that reads like a datetime whose UTC offset has seconds (``+01:00:30``, as
isoformat writes one) stays a str where the type does not ask for a moment (``Any``,
``object``, a model field of either): before, the record read it back as a datetime,
on the first run and every replay, so a step's str changed type once recorded.

Only text the declared type refused is read as a moment; a datetime under ``Any`` is
refused at record time, whatever its offset, as it reads back as its text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, NotSerializableError, RunStatus, StepStatus, Workflow

TEXT = "2026-01-02T03:04:05+01:00:30"
DAILY = "03:04:05-05:00:30.000007"
ODD = timezone(timedelta(hours=1, seconds=30))
MOMENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=ODD)


class Note(BaseModel):
    at: datetime
    said: Any


def _texts() -> dict[str, Any]:
    return {"at": TEXT, "daily": [DAILY]}


def _said() -> Note:
    return Note(at=MOMENT, said={"x": TEXT[:-2] + "31"})


async def _first_and_replay(url: str, clock: FakeClock, flow: Any, given: Any = None) -> list[Any]:
    """What `flow` saw on its first run, then on a replay by a new App on the same file."""
    seen: list[Any] = []

    async def wrapped(wf: Workflow, given: dict[str, Any] | None = None) -> None:
        seen.append(await flow(wf, given))
        await wf.wait_for_signal("again")

    first = App(url, clock=clock)
    try:
        run = await first.arun(first.workflow(name="f")(wrapped), given, workflow_id="w")
        assert run.status is RunStatus.WAITING, run.record.last_error
        await first.asignal("w", "again")
    finally:
        await first.aclose()
    second = App(url, clock=clock)
    try:
        second.workflow(name="f")(wrapped)
        done = await second.aresume("w")
        assert done.status is RunStatus.COMPLETED, done.record.last_error
    finally:
        await second.aclose()
    assert len(seen) == 2
    return seen


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


async def test_a_step_under_dict_of_any_keeps_its_str(sqlite_url: str, clock: FakeClock) -> None:
    async def flow(wf: Workflow, given: Any) -> Any:
        return await wf.step("s", _texts)

    first, replay = await _first_and_replay(sqlite_url, clock, flow)
    assert first == replay == _texts()
    assert _types(first) == _types(replay) == {"at": str, "daily": [str]}


async def test_a_step_declared_object_keeps_its_str(sqlite_url: str, clock: FakeClock) -> None:
    async def flow(wf: Workflow, given: Any) -> Any:
        return await wf.step("s", lambda: TEXT, result_type=object)

    assert await _first_and_replay(sqlite_url, clock, flow) == [TEXT, TEXT]


async def test_only_the_field_that_asks_for_a_moment_is_read_as_one(
    sqlite_url: str, clock: FakeClock
) -> None:
    async def flow(wf: Workflow, given: Any) -> Any:
        return await wf.step("s", _said)

    first, replay = await _first_and_replay(sqlite_url, clock, flow)
    for note in (first, replay):
        assert note.at == MOMENT and note.at.utcoffset() == MOMENT.utcoffset()
        assert note.said == {"x": TEXT[:-2] + "31"}


async def test_an_input_and_a_typed_wait_under_any_keep_their_str(
    sqlite_url: str, clock: FakeClock
) -> None:
    async def flow(wf: Workflow, given: Any) -> Any:
        sent = await wf.wait_for_signal("data", result_type=dict[str, Any])
        return [given, sent]

    seen: list[Any] = []

    async def wrapped(wf: Workflow, given: dict[str, Any]) -> None:
        seen.append(await flow(wf, given))
        await wf.wait_for_signal("again")

    first = App(sqlite_url, clock=clock)
    try:
        defn = first.workflow(name="f")(wrapped)
        await first.astart(defn, {"at": TEXT}, workflow_id="w")
        await first.asettle(10)
        await first.asignal("w", "data", {"at": DAILY})
        await first.asettle(10)
        await first.asignal("w", "again")
    finally:
        await first.aclose()
    second = App(sqlite_url, clock=clock)
    try:
        second.workflow(name="f")(wrapped)
        done = await second.aresume("w")
        assert done.status is RunStatus.COMPLETED, done.record.last_error
    finally:
        await second.aclose()
    assert seen == [[{"at": TEXT}, {"at": DAILY}]] * 2
    assert all(type(part["at"]) is str for pair in seen for part in pair)


async def _refused(app: App, wid: str, fn: Any) -> NotSerializableError:
    async def flow(wf: Workflow) -> Any:
        return await wf.step("s", fn)

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id=wid)
    record = await app.aget_record(wid)
    assert record.steps["s"].status is StepStatus.FAILED  # not recorded as done
    return info.value


def _moment_under_any() -> dict[str, Any]:
    return {"at": MOMENT}


def _same_text_twice() -> Note:
    return Note(at=MOMENT, said=MOMENT.isoformat())


async def test_a_datetime_under_any_is_refused_whatever_its_offset(app: App) -> None:
    """Before, one whose offset had seconds (only) was read back as a datetime: the
    same text a str gives, so that str came back a datetime."""
    err = await _refused(app, "dt", _moment_under_any)
    assert err.path == "$.at" and err.offending_type is datetime
    assert f"reads back as str {MOMENT.isoformat()!r}" in str(err)
    assert "Declare the type it has (not Any or object)" in str(err)


async def test_a_str_equal_to_a_moment_beside_it_is_refused_not_changed(app: App) -> None:
    """The text a datetime field refused is read as a moment wherever it appears: under
    `Any` beside it, that would be another type, so it is refused on the first run."""
    err = await _refused(app, "twice", _same_text_twice)
    assert err.path == "$.said" and err.offending_type is str
    assert "reads back as datetime" in str(err) and "Declare the type it has" in str(err)
