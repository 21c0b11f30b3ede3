"""JSON values given to tether: refused clearly with their path, or stored and returned exactly.

Covers workflow input, initial state, step results, state updates, event and
signal payloads: NaN and infinities, integers past 2**63 (kept exactly) and
past Python's digit limit (refused), lone surrogates, NUL, values 256 to
10,000 levels deep, strings of a few MB.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tether import App, NotSerializableError, StepStatus, Workflow
from tether.serde import MAX_DEPTH, dump_json, load_json

from ._support import FAST, HEAVY, LIGHT, assert_clear, new_id
from .strategies import Poisoned, json_values, nested, poisoned_values, safe_text, same

# -- the serialiser alone: many examples, no database ---------------------------------------


@FAST
@given(p=poisoned_values())
def test_a_poisoned_value_is_refused_naming_its_path(p: Poisoned) -> None:
    with pytest.raises(NotSerializableError) as caught:
        dump_json(p.value, what="the result of step 'fetch'")
    assert caught.value.path == p.path
    assert_clear(caught.value, "the result of step 'fetch'", p.path)


@FAST
@given(
    key=st.one_of(st.just("a\x00b"), st.just("\ud800"), st.just("x\udfffy")), inner=json_values()
)
def test_a_bad_dict_key_is_refused_as_a_key(key: str, inner: Any) -> None:
    with pytest.raises(NotSerializableError) as caught:
        dump_json({"ok": 1, "outer": {key: inner}}, what="workflow state")
    assert caught.value.path.startswith("$.outer[")
    assert caught.value.path.endswith("(the key)")
    assert_clear(caught.value, "workflow state")


@FAST
@given(value=json_values())
def test_plain_json_survives_the_serialiser(value: Any) -> None:
    assert same(load_json(dump_json(value, what="v")), value)


@FAST
@given(depth=st.integers(min_value=MAX_DEPTH + 1, max_value=10_000), dicts=st.booleans())
@example(depth=10_000, dicts=False)
@example(depth=10_000, dicts=True)
def test_a_value_nested_too_deep_is_refused_without_recursion_error(
    depth: int, dicts: bool
) -> None:
    with pytest.raises(NotSerializableError) as caught:
        dump_json(nested(depth, dicts=dicts), what="the input of workflow 'w'")
    assert_clear(caught.value, "the input of workflow 'w'", f"more than {MAX_DEPTH} levels deep")


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(NotSerializableError) as caught:
        dump_json({"a": loop}, what="event 'x' detail")
    assert_clear(caught.value, "event 'x' detail", "contains itself")


def test_the_deepest_value_allowed_round_trips() -> None:
    value = nested(MAX_DEPTH)
    assert load_json(dump_json(value, what="v")) == value


# -- through the engine: step results, state, payloads, input --------------------------------


async def _poisoned_step(app: App, p: Poisoned) -> None:
    wf = await app.aopen(new_id("step"))
    await wf.step("good", lambda: {"n": 1})
    with pytest.raises(NotSerializableError) as caught:
        await wf.step("bad", lambda: p.value)
    assert_clear(caught.value, "step 'bad'", p.path)
    rec = await wf.get_record()
    assert rec.steps["good"].status is StepStatus.COMPLETED and rec.steps["good"].result == {"n": 1}
    assert rec.steps["bad"].status is not StepStatus.COMPLETED and rec.steps["bad"].result is None


@HEAVY
@given(p=poisoned_values())
async def test_a_step_returning_a_poisoned_value_fails_clearly(
    sqlite_app: App, p: Poisoned
) -> None:
    await _poisoned_step(sqlite_app, p)


@LIGHT
@given(p=poisoned_values())
async def test_a_step_returning_a_poisoned_value_fails_clearly_per_backend(
    any_app: App, p: Poisoned
) -> None:
    await _poisoned_step(any_app, p)


async def _poisoned_elsewhere(app: App, p: Poisoned) -> None:
    wid = new_id("where")
    wf = await app.aopen(wid, initial_state={"kept": True})
    cases = [
        ("workflow state", lambda: wf.update_state(p.value)),
        ("workflow state", lambda: wf.update_state(lambda _old: p.value)),
        ("event 'note' detail", lambda: wf.append_event("note", detail=p.value)),
        ("heartbeat 'hb' detail", lambda: wf.heartbeat("hb", p.value)),
        ("lease 'slot' detail", lambda: wf.touch_lease("slot", holder="h", ttl=5, detail=p.value)),
        ("signal payload", lambda: app.asignal(wid, "go", p.value)),
        ("event payload", lambda: app.asend_event("tick", p.value)),
        ("initial_state", lambda: app.aopen(new_id("init"), initial_state=p.value)),
        ("initial_state", lambda: app.arun(_takes_input, {"x": 1}, initial_state=p.value)),
        ("the input of workflow", lambda: app.arun(_takes_input, p.value)),
        ("the input of workflow", lambda: app.astart(_takes_input, p.value)),
    ]
    before = len((await wf.get_record()).events)
    for what, call in cases:
        with pytest.raises(NotSerializableError) as caught:
            await call()
        assert_clear(caught.value, what, p.path)
    rec = await wf.get_record()
    assert rec.state == {"kept": True}
    assert len(rec.events) == before
    assert rec.heartbeats == {} and rec.leases == {}


async def _takes_input(wf: Workflow, value: Any) -> Any:
    return await wf.step("echo", lambda: value)


@HEAVY
@given(p=poisoned_values())
async def test_poisoned_state_payloads_and_input_are_refused_before_anything_is_written(
    sqlite_app: App, p: Poisoned
) -> None:
    await _poisoned_elsewhere(sqlite_app, p)


@LIGHT
@given(p=poisoned_values())
async def test_poisoned_state_payloads_and_input_are_refused_per_backend(
    any_app: App, p: Poisoned
) -> None:
    await _poisoned_elsewhere(any_app, p)


async def test_deep_values_are_refused_by_every_entry_point(any_app: App) -> None:
    deep = nested(10_000)
    wf = await any_app.aopen(new_id("deep"), initial_state=1)
    calls = [
        lambda: wf.step("deep", lambda: deep),
        lambda: wf.update_state(deep),
        lambda: wf.append_event("note", detail=deep),
        lambda: any_app.asend_event("tick", deep),
        lambda: any_app.arun(_takes_input, deep),
    ]
    for call in calls:
        with pytest.raises(NotSerializableError) as caught:
            await call()
        assert_clear(caught.value, f"more than {MAX_DEPTH} levels deep")
    assert (await wf.get_record()).state == 1


# -- accepted values round-trip ----------------------------------------------------------------


def _never() -> Any:
    raise AssertionError("a completed step ran again on replay")


async def _round_trip(app: App, value: Any) -> None:
    wid = new_id("rt")
    first = await app.aopen(wid)
    await first.step("s", lambda: value)
    await first.update_state(value)
    again = await app.aopen(wid)  # a new context: what a resumed run sees
    replayed = await again.step("s", _never)
    assert same(replayed, value), (replayed, value)
    assert same(again.state, value), (again.state, value)


@HEAVY
@given(value=json_values())
@example(value=2**63)
@example(value=-(2**200))
@example(value={"big": [2**64 + 1, -(2**70)], "f": 1e300, "neg0": -0.0, "tiny": 5e-324})
async def test_accepted_values_replay_exactly(sqlite_app: App, value: Any) -> None:
    await _round_trip(sqlite_app, value)


@LIGHT
@given(value=json_values())
@example(value={"big": [2**64 + 1, -(2**200)], "tiny": 5e-324, "s": "é ü 🙂"})
async def test_accepted_values_replay_exactly_per_backend(any_app: App, value: Any) -> None:
    await _round_trip(any_app, value)


@pytest.mark.parametrize("value", [1e16, 1e23, 1.7976931348623157e308, -2.5e20, 1.5e16])
async def test_large_floats_replay_exactly(any_app: App, value: float) -> None:
    """jsonb printed 1e23 as 100000000000000000000000, an int; PostgreSQL keeps JSON as
    json since migration 0023, which keeps the number as written."""
    await _round_trip(any_app, value)
    await _round_trip(any_app, {"nested": [value, -value, "1e+23"], "e+": value})
    await _round_trip(any_app, {"long": [10**3999, -(10**3999)], "f": value})  # digits read once


async def test_strings_of_a_few_megabytes_round_trip(any_app: App) -> None:
    big = "0123456789abcdef\u00e9" * 200_000  # ~3.4 MB of UTF-8
    await _round_trip(any_app, {"blob": big, "list": [big[:1000]] * 3})


async def signal_waiter(wf: Workflow, name: str) -> Any:
    return await wf.wait_for_signal(name)


async def event_waiter(wf: Workflow, event_type: str) -> Any:
    return await wf.wait_for_event(event_type)


@HEAVY
@given(payload=json_values(), name=safe_text.filter(lambda s: s.strip() != ""))
async def test_signal_payloads_reach_the_run_exactly(
    sqlite_app: App, payload: Any, name: str
) -> None:
    sqlite_app.workflow(signal_waiter)
    wid = new_id("sig")
    parked = await sqlite_app.arun(signal_waiter, name, workflow_id=wid)
    assert parked.status.value == "waiting"
    await sqlite_app.asignal(wid, name, payload)
    result = await sqlite_app.aresume(wid)
    assert result.status.value == "completed"
    assert same(result.value, payload), (result.value, payload)


@LIGHT
@given(payload=json_values())
async def test_event_payloads_reach_the_run_exactly(any_app: App, payload: Any) -> None:
    any_app.workflow(event_waiter)
    event_type, wid = new_id("evt"), new_id("ev")
    await any_app.arun(event_waiter, event_type, workflow_id=wid)
    assert await any_app.asend_event(event_type, payload) == [wid]
    result = await any_app.aresume(wid)
    assert same(result.value, payload), (result.value, payload)


def test_nan_is_refused_even_where_the_type_allows_float() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(NotSerializableError) as caught:
            dump_json([1.0, bad], what="the result of step 'f'", tp=list[float])
        assert_clear(caught.value, "step 'f'", "$[1]")
