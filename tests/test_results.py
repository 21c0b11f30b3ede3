"""The first run returns exactly what a replay returns, type included; a workflow's
input is its declared type before a run exists."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import tether
from tether import App, NotSerializableError, RunStatus, Workflow, serde
from tether._results import dump_result, load_result, recorded_result


class Model(BaseModel):
    x: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Day(BaseModel):
    day: date


async def _first_and_replay(app: App, wid: str, make: Any, **step: Any) -> tuple[Any, Any]:
    """The value a step returned the first time and on a replay of the same run."""
    seen: list[Any] = []

    async def flow(wf: Workflow) -> None:
        seen.append(await wf.step("s", make, **step))
        await wf.wait_for_signal("again")

    await app.arun(flow, workflow_id=wid)
    await app.asignal(wid, "again")
    await app.arun(flow, workflow_id=wid)
    assert len(seen) == 2
    return seen[0], seen[1]


def _points() -> Point:
    return Point(1, 2)


def _typed_tuple() -> tuple[int, int]:
    return (1, 2)


def _typed_set() -> set[int]:
    return {1, 2}


def _int_keys() -> dict[int, str]:
    return {1: "a"}


@pytest.mark.parametrize(
    ("make", "step", "expected"),
    [
        (lambda: Model(x=2), {}, Model(x=2)),  # recorded with its class
        (_points, {}, Point(1, 2)),
        (lambda: date(2026, 1, 1), {"result_type": date}, date(2026, 1, 1)),
        (_typed_tuple, {}, (1, 2)),  # the declared return type
        (_typed_set, {}, {1, 2}),
        (lambda: b"abc", {"result_type": bytes}, b"abc"),
        (_int_keys, {}, {1: "a"}),
        (lambda: [Model(x=1)], {"result_type": list[Model]}, [Model(x=1)]),
        (lambda: 3, {"result_type": float}, 3.0),  # an int declared float is a float at once
        (lambda: 2, {"result_type": float | None}, 2.0),
    ],
)
async def test_typed_results_come_back_as_themselves(
    app: App, make: Any, step: dict[str, Any], expected: Any
) -> None:
    first, replay = await _first_and_replay(app, "typed", make, **step)
    assert first == replay == expected
    assert type(first) is type(replay) is type(expected)


@pytest.mark.parametrize(
    ("make", "bad", "path"),
    [
        (lambda: (1, 2), "tuple", "$"),
        (lambda: {1, 2}, "set", "$"),
        (lambda: b"abc", "bytes", "$"),
        (lambda: {"when": date(2026, 1, 1)}, "date", "$.when"),
        (lambda: {1: "a"}, "int", "$ (a key)"),
        (lambda: (i for i in range(3)), "generator", "$"),
        (lambda: {"items": [Model(x=1)]}, "Model", "$.items[0]"),
    ],
)
async def test_values_that_would_change_on_replay_are_refused_the_first_time(
    app: App, make: Any, bad: str, path: str
) -> None:
    async def flow(wf: Workflow) -> None:
        await wf.step("s", make)

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id=f"refused-{bad}")
    assert info.value.offending_type.__name__ == bad and info.value.path == path
    assert "result_type=" in str(info.value)


def test_the_type_to_declare_is_named_for_the_whole_result() -> None:
    def refusal(value: Any) -> str:
        with pytest.raises(NotSerializableError) as info:
            dump_result(value, what="the result of step 's'")
        return str(info.value)

    assert "`-> list[Model]`" in refusal([Model(x=1)])
    assert "`-> dict[str, Model]`" in refusal({"m": Model(x=1)})
    assert "`-> set[...]`" in refusal({1, 2})


async def test_a_workflow_result_is_the_same_when_asked_again(app: App) -> None:
    async def flow(wf: Workflow) -> Model:
        return Model(x=await wf.step("n", lambda: 4))

    first = await app.arun(flow, workflow_id="wres")
    again = await app.arun(flow, workflow_id="wres")
    assert first.value == again.value == Model(x=4) and type(again.value) is Model
    assert first.record.output == {"x": 4}  # the record shows the data


plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(
                st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
lossy = st.one_of(
    st.tuples(st.integers()),
    st.frozensets(st.integers(), min_size=1, max_size=3),
    st.dates(),
    st.dictionaries(st.integers(), st.text(max_size=3), min_size=1, max_size=3),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(plain_json, lossy, st.builds(Model, x=st.integers(-100, 100))))
async def test_first_run_equals_replay_for_every_value(app: App, value: Any) -> None:
    """Whatever a step may return: refused at once, or the same (type included) on replay."""
    wid = f"prop-{uuid.uuid4().hex}"
    try:
        first, replay = await _first_and_replay(app, wid, lambda: value)
    except NotSerializableError:
        return
    assert first == replay and type(first) is type(replay)
    assert first == value


async def test_input_is_converted_to_the_declared_type_before_a_run_exists(app: App) -> None:
    @app.workflow(name="nightly")
    async def nightly(wf: Workflow, day: Day) -> str:
        return day.day.isoformat()  # an attribute: the input arrives as the model

    assert (await app.arun(nightly, {"day": "2026-04-25"}, workflow_id="n1")).value == (
        "2026-04-25"
    )

    @app.workflow(name="two")
    async def two(wf: Workflow, x: int) -> int:
        return x * 2

    with pytest.raises(tether.InvalidArgumentError, match="does not fit"):
        await app.arun(two, "notint", workflow_id="bad-1")
    with pytest.raises(tether.InvalidArgumentError, match="day"):
        await app.astart(nightly, {"when": "today"})
    with pytest.raises(tether.InvalidArgumentError, match="day"):
        await app.asubmit(nightly, {"day": "not a date"})
    assert [r.workflow_id for r in await app.alist_runs()] == ["n1"]  # nothing left behind
    assert (await app.aget_run("n1")).status is RunStatus.COMPLETED


@pytest.mark.parametrize(
    "value",
    [
        {"$tether": "webhook-v1", "value": {"id": 7}},  # a payload that uses the key itself
        {"$tether": "builtins:str", "value": 12},
        {"$tether": ":", "value": None},
    ],
)
def test_plain_json_with_the_tag_key_comes_back_as_itself(value: dict[str, object]) -> None:
    # before: read as a value recorded with its class: unwrapped, or a ValidationError
    assert load_result(dump_result(value, what="result")) == value


class Grid(BaseModel):
    cells: dict[tuple[int, int], str]


async def test_a_typed_value_whose_json_does_not_read_back_is_refused_before_it_is_recorded(
    app: App,
) -> None:
    # pydantic writes the key (1, 2) as "1,2", which no tuple validates from: the step was
    # recorded completed, the first run failed with a bare ValidationError, and every
    # replay said "the code changed since the step ran" when it had not
    async def flow(wf: Workflow) -> None:
        await wf.step("grid", lambda: {(1, 2): "x"}, result_type=dict[tuple[int, int], str])

    with pytest.raises(NotSerializableError, match=r"does not read back as dict\[tuple") as info:
        await app.arun(flow, workflow_id="no-read-back")
    assert info.value.path == "$['1,2']['[key]']"
    record = await app.aget_record("no-read-back")
    assert record.steps["grid"].status.value == "failed" and record.status is RunStatus.FAILED
    with pytest.raises(NotSerializableError):  # asked again: the same error, as itself
        await app.arun(flow, workflow_id="no-read-back")

    async def model(wf: Workflow) -> None:  # recorded with its class: the same check
        await wf.step("grid", lambda: Grid(cells={(1, 2): "x"}))

    with pytest.raises(NotSerializableError, match="does not read back as Grid"):
        await app.arun(model, workflow_id="no-read-back-model")

    async def result(wf: Workflow) -> dict[tuple[int, int], str]:
        return {(3, 4): "y"}

    with pytest.raises(NotSerializableError, match="result of workflow"):
        await app.arun(result, workflow_id="no-read-back-result")


def test_the_first_load_of_a_dump_is_its_own_value_and_never_shared() -> None:
    text = dump_result([Model(x=1)], what="r", tp=list[Model])
    first, again = load_result(text, list[Model]), load_result(text, list[Model])
    assert first == again == [Model(x=1)] and first is not again
    text = dump_result(Point(1, 2), what="r")
    assert load_result(text) == load_result(text) == Point(1, 2)
    assert load_result(text) is not load_result(text)


async def test_a_result_returned_without_its_await_says_to_await_it(app: App) -> None:
    """`return wf.step(...)` without the await was refused saying to declare the return
    type `-> coroutine`; the step never ran."""
    ran: list[str] = []

    @app.workflow
    async def forgot(wf: Workflow) -> Any:
        return wf.step("a", lambda: ran.append("a") or 1)

    with pytest.raises(NotSerializableError, match=r"without being awaited.*return await"):
        await app.arun(forgot, workflow_id="fa")
    assert ran == []
    with pytest.raises(NotSerializableError, match=r"without being awaited"):
        dump_result(asyncio.sleep(0), what="x")


def test_an_untyped_plain_result_is_walked_once_before_it_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk that proves a result plain JSON was followed by dump_json's walk for sets
    (none can be there) and pydantic's copy of the whole value before the encoder, which
    cost most of the time to record it (bench/results.py). The text and the errors are
    dump_json's."""
    value = {"a": [1, 2.5, "s", None, True], "b": {"c": -0.0, "d": ["x"] * 3}, "$tether": 1}
    calls: list[str] = []

    def counted(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(serde, "_refuse_set", counted("_refuse_set", serde._refuse_set))
    monkeypatch.setattr(
        serde, "to_jsonable_python", counted("to_jsonable_python", serde.to_jsonable_python)
    )
    text, first = recorded_result(value, what="the result of step 's'")
    recorded_result([value] * 3, what="the result of step 's'")
    recorded_result(2.5, what="the result of step 's'")
    assert calls == []
    assert text == f'{{"$tether":":","value":{serde.dump_json(value, what="v")}}}'
    assert first == {**value, "b": {"c": 0.0, "d": ["x"] * 3}} and first is not value
    with pytest.raises(NotSerializableError, match=r"at \$\.a\[1\] is nan"):
        recorded_result({"a": [1, float("nan")]}, what="the result of step 's'")


def test_an_untyped_result_containing_itself_is_refused() -> None:
    # the walk that proves a result plain went round it for ever: the step never ended
    looped: dict[str, Any] = {"n": 1}
    looped["me"] = looped
    with pytest.raises(NotSerializableError, match="or contains itself") as info:
        dump_result(looped, what="the result of step 's'")
    assert info.value.path.startswith("$.me.me.me")
    twice: list[Any] = [1]
    twice.append([twice, (1, 2)])  # and a part that would change on replay: named first
    with pytest.raises(NotSerializableError, match="different type") as info:
        dump_result(twice, what="the result of step 's'")
    assert info.value.path == "$[1][1]"
