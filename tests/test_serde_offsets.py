"""Datetimes and times whose UTC offset has seconds (a fixed ``+05:00:30``, or a local
mean time such as Europe/Amsterdam's +00:19:32 before 1937) are read back as the same
instant with the same offset. pydantic writes an offset to the minute and cannot parse
one with seconds: the record held another instant, and a replay answered it."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

from tether import App, RunStatus, Workflow
from tether.definition import WorkflowDef
from tether.serde import dump_json, load_json, to_json_data, validate

ODD = timezone(timedelta(hours=5, seconds=30))
BEHIND = timezone(-timedelta(hours=5, seconds=30, microseconds=7))  # seconds and microseconds
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
LMT = datetime(1930, 1, 15, 12, 0, 1, 250, tzinfo=AMSTERDAM)  # +00:19:32


class Stamped(BaseModel):
    at: datetime
    daily: time
    seen: dict[datetime, list[datetime]]
    label: str


def _same(got: Any, want: datetime | time) -> None:
    assert got == want and got.utcoffset() == want.utcoffset(), (got, want)


def test_lmt_offset_has_seconds() -> None:
    assert LMT.utcoffset() == timedelta(minutes=19, seconds=32)


@pytest.mark.parametrize("moment", [datetime(2026, 3, 1, 8, 30, 0, 5, ODD), LMT])
def test_a_datetime_with_seconds_in_its_offset_reads_back_the_same(moment: datetime) -> None:
    text = dump_json(moment, what="v", tp=datetime)
    assert text == f'"{moment.isoformat()}"'
    _same(load_json(text, datetime), moment)


def test_a_time_of_day_with_seconds_in_its_offset_reads_back_the_same() -> None:
    daily = time(23, 59, 58, 999999, tzinfo=BEHIND)
    _same(load_json(dump_json(daily, what="v", tp=time), time), daily)


def test_offsets_with_seconds_nested_in_a_model_keys_included() -> None:
    odd = datetime(2026, 3, 1, 8, 30, tzinfo=BEHIND)
    whole = datetime(2026, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=2)))
    value = Stamped(at=odd, daily=time(7, tzinfo=ODD), seen={LMT: [odd, whole]}, label="2026-03-01")
    back = load_json(dump_json(value, what="v", tp=Stamped), Stamped)
    assert back == value
    _same(back.at, odd)
    _same(back.daily, value.daily)
    [(key, [first, second])] = back.seen.items()
    _same(key, LMT)
    _same(first, odd)
    _same(second, whole)


def test_an_untyped_value_writes_the_offset_in_full() -> None:
    data = to_json_data({"when": [LMT]}, what="v")
    assert data == {"when": [LMT.isoformat()]}
    assert dump_json({"when": [LMT]}, what="v") == f'{{"when":["{LMT.isoformat()}"]}}'
    _same(validate(dict[str, list[datetime]], data)["when"][0], LMT)


def test_a_str_that_reads_like_one_stays_a_str() -> None:
    text = "2026-03-01T08:30:00+05:00:30"
    assert load_json(dump_json({"x": text}, what="v"), dict[str, str]) == {"x": text}
    assert validate(str, text) == text


def test_timedelta_microseconds_read_back_the_same() -> None:
    for span in (timedelta(microseconds=-1), timedelta(days=-1, seconds=5, microseconds=7)):
        assert load_json(dump_json(span, what="v", tp=timedelta), timedelta) == span


def _lmt() -> datetime:
    return LMT


async def test_a_replayed_step_and_input_keep_an_lmt_datetime(app: App) -> None:
    async def dated(wf: Workflow, when: datetime) -> datetime:
        got = await wf.step("when", _lmt)
        assert got == LMT and got.utcoffset() == LMT.utcoffset(), got
        assert when.utcoffset() == ODD.utcoffset(None), when
        await wf.wait_for_signal("go")
        return got

    flow = app.workflow(name="dated")(dated)
    start = datetime(2026, 3, 1, 8, 30, tzinfo=ODD)
    assert (await app.arun(flow, start, workflow_id="d")).status is RunStatus.WAITING
    await app.asignal("d", "go")
    done = await app.aresult("d", timeout=30)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    _same(done.value, LMT)


def test_the_input_type_is_resolved_once() -> None:
    async def flow(wf: Workflow, items: list[int]) -> None:
        return None

    defn = WorkflowDef.make(flow)
    assert defn.input_type == list[int]
    assert defn.input_type is defn.input_type
