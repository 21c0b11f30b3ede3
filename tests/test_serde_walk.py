"""A replay answers what the first run answered: an error's args and fields, and a
signal's payload, on both backends (a real App on a real database)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tether import App, NotSerializableError, Workflow
from tether._failure import decode_error, revive_error


def _undecodable() -> None:
    b"\xff".decode("utf-8")


def _tuple_key() -> None:
    raise KeyError(("a", 1))


async def _raised_twice(app: App, wid: str, fn: Any) -> list[BaseException]:
    """The error a step raised on the first run and on a replay of the same run."""
    seen: list[BaseException] = []

    async def flow(wf: Workflow) -> None:
        try:
            await wf.step("s", fn)
        except Exception as exc:
            seen.append(exc)
        await wf.wait_for_signal("again")

    await app.arun(flow, workflow_id=wid)
    await app.asignal(wid, "again")
    await app.arun(flow, workflow_id=wid)
    assert len(seen) == 2
    return seen


async def test_a_unicode_decode_error_replays_with_its_five_arguments(app: App) -> None:
    first, replay = await _raised_twice(app, "undecodable", _undecodable)
    assert type(replay) is UnicodeDecodeError
    assert replay.args == first.args == ("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert str(replay) == str(first) and "can't decode byte 0xff" in str(replay)
    assert (replay.object, replay.start, replay.end) == (b"\xff", 0, 1)


async def test_a_key_error_with_a_tuple_key_replays_the_tuple(app: App) -> None:
    first, replay = await _raised_twice(app, "tuple-key", _tuple_key)
    assert type(replay) is KeyError and replay.args == first.args == (("a", 1),)
    assert str(replay) == str(first) == "('a', 1)"


async def test_a_set_sent_as_a_signal_is_refused_not_turned_into_a_list(app: App) -> None:
    """The run read back a list where a set was sent, and nothing said so."""
    got: list[Any] = []

    async def flow(wf: Workflow) -> None:
        got.append(await wf.wait_for_signal("go"))

    await app.arun(flow, workflow_id="set-signal")
    with pytest.raises(NotSerializableError) as info:
        await app.asignal("set-signal", "go", {"tags": {"a", "b"}})
    assert info.value.path == "$.tags" and "Send a list" in str(info.value)
    await app.asignal("set-signal", "go", {"tags": ["a", "b"]})
    await app.arun(flow, workflow_id="set-signal")
    assert got == [{"tags": ["a", "b"]}]


def test_an_error_recorded_before_tagged_attributes_revives_as_it_did() -> None:
    """Rows the earlier codec wrote (plain ``attributes``, tuples and bytes left out)."""
    old_key = {
        "type": "KeyError",
        "module": "builtins",
        "qualname": "KeyError",
        "message": "'x'",
        "retryable": None,
        "traceback": None,
        "cause": None,
        "attributes": {"args": ["x"]},
    }
    exc = revive_error("w", decode_error(json.dumps(old_key)))
    assert type(exc) is KeyError and exc.args == ("x",) and str(exc) == "'x'"
    old_tuple = {**old_key, "message": "('a', 1)", "attributes": None}
    exc = revive_error("w", decode_error(json.dumps(old_tuple)))
    assert type(exc) is KeyError and exc.args == ("('a', 1)",)


def _negative_zero() -> float:
    return -0.0


async def test_a_negative_zero_is_the_same_zero_on_the_first_run_and_on_replay(
    app: App,
) -> None:
    """PostgreSQL's jsonb has no negative zero: there a replay read 0.0 where the first
    run had seen -0.0 (SQLite kept it). Both backends now record 0.0."""
    seen: list[Any] = []

    async def flow(wf: Workflow) -> None:
        seen.append(await wf.step("typed", _negative_zero))
        seen.append(await wf.step("plain", lambda: {"x": [-0.0, -0.05]}))
        await wf.wait_for_signal("again")

    await app.arun(flow, workflow_id="zeros")
    await app.asignal("zeros", "again")
    await app.arun(flow, workflow_id="zeros")
    assert seen[0::2] == [0.0, 0.0] and all(math.copysign(1, v) == 1 for v in seen[0::2])
    assert seen[1] == seen[3] == {"x": [0.0, -0.05]}
    assert [math.copysign(1, d["x"][0]) for d in seen[1::2]] == [1, 1]
