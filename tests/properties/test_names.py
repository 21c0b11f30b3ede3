"""Names and keys given to tether: step names, mutex/lease/heartbeat keys, event types,
signal names, workflow ids; and the numbers that say how long (timeouts, retry, clock).

Every refusal is an `InvalidArgumentError` that names the argument and says what
to pass instead; a good name (any valid text up to 1000 bytes) is accepted on
both backends.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tether import App, FakeClock, InvalidArgumentError, RetryPolicy, Workflow

from ._support import FAST, HEAVY, LIGHT, assert_clear, new_id
from .strategies import bad_names, good_names

Call = Callable[[Workflow, Any], Awaitable[Any]]


async def _mutex(wf: Workflow, key: Any) -> None:
    async with wf.mutex(key, timeout=0):
        pass


KEYED: dict[str, Call] = {
    "step name": lambda wf, name: wf.step(name, lambda: 1),
    "mutex key": _mutex,
    "lease key": lambda wf, key: wf.touch_lease(key, holder="h", ttl=5),
    # leases are exclusive across runs: each run (example) takes a slot of its own
    "lease holder": lambda wf, holder: wf.touch_lease(
        f"slot-{wf.workflow_id}", holder=holder, ttl=5
    ),
    "heartbeat key": lambda wf, key: wf.heartbeat(key),
    "event type": lambda wf, type_: wf.append_event(type_),
}


async def _refuses_bad_names(app: App, label: str, name: Any) -> None:
    wf = await app.aopen(new_id("names"))
    before = len((await wf.get_record()).events)
    with pytest.raises(InvalidArgumentError) as caught:
        await KEYED[label](wf, name)
    assert_clear(caught.value, label)
    rec = await wf.get_record()
    assert len(rec.events) == before and rec.steps == {} and rec.leases == {}


@HEAVY
@given(label=st.sampled_from(sorted(KEYED)), name=bad_names)
async def test_a_bad_name_is_refused_naming_the_argument(
    sqlite_app: App, label: str, name: Any
) -> None:
    await _refuses_bad_names(sqlite_app, label, name)


@LIGHT
@given(label=st.sampled_from(sorted(KEYED)), name=bad_names)
async def test_a_bad_name_is_refused_per_backend(any_app: App, label: str, name: Any) -> None:
    await _refuses_bad_names(any_app, label, name)


@LIGHT
@given(label=st.sampled_from(sorted(KEYED)), name=good_names)
async def test_a_good_name_is_accepted_per_backend(any_app: App, label: str, name: str) -> None:
    wf = await any_app.aopen(new_id("good"))
    if label == "event type" and any(c < " " or c == "\x7f" for c in name):
        # one line: a field of the live event stream, where a line break forges frames
        with pytest.raises(InvalidArgumentError, match="one line of text"):
            await KEYED[label](wf, name)
        return
    await KEYED[label](wf, name)


def _random_text(n_bytes: int, seed: int) -> str:
    """Incompressible ASCII, so PostgreSQL cannot squeeze it into an index entry."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n_bytes))


@pytest.mark.parametrize("label", sorted(KEYED))
async def test_long_names_are_accepted_up_to_1000_bytes_and_refused_past_it(
    any_app: App, label: str
) -> None:
    wf = await any_app.aopen(new_id("long"))
    await KEYED[label](wf, _random_text(1000, 1))
    with pytest.raises(InvalidArgumentError) as caught:
        await KEYED[label](wf, _random_text(10_000, 2))
    assert_clear(caught.value, label, "10000 bytes")


async def test_an_unhashable_step_name_is_refused_clearly_too(sqlite_app: App) -> None:
    wf = await sqlite_app.aopen(new_id("unhashable"))
    for name in (["a"], {"a": 1}):
        with pytest.raises(InvalidArgumentError) as caught:
            await wf.step(name, lambda: 1)  # type: ignore[arg-type]
        assert_clear(caught.value, "step name")


bad_workflow_ids = st.one_of(
    st.text(" \t\n", min_size=1, max_size=4),
    st.integers(),
    st.binary(min_size=1, max_size=4),
    st.tuples(st.integers()),
).filter(bool)


async def plain(wf: Workflow) -> int:
    return 1


@HEAVY
@given(wid=bad_workflow_ids)
async def test_a_bad_workflow_id_is_refused_by_run_and_open(sqlite_app: App, wid: Any) -> None:
    for call in (lambda: sqlite_app.arun(plain, workflow_id=wid), lambda: sqlite_app.aopen(wid)):
        with pytest.raises(InvalidArgumentError) as caught:
            await call()
        assert_clear(caught.value, "workflow_id", hint=False)  # app.py's message: no hint yet
    assert await sqlite_app.alist_runs() == []


async def test_a_workflow_id_with_nul_is_refused_on_every_backend(any_app: App) -> None:
    with pytest.raises(InvalidArgumentError):
        await any_app.aopen("a\x00b")


# -- the App's entry points check ids and names like the Workflow does ------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda app: app.asignal(123, "go"), id="signal-int-id"),
        pytest.param(lambda app: app.asignal("", "go"), id="signal-empty-id"),
        pytest.param(lambda app: app.asignal("w", "g\ud800"), id="signal-surrogate-name"),
        pytest.param(lambda app: app.asend_event("e\udfff", 1), id="event-surrogate-type"),
        pytest.param(lambda app: app.acancel(123), id="cancel-int-id"),
        pytest.param(lambda app: app.acancel(""), id="cancel-empty-id"),
        pytest.param(lambda app: app.aget_record("\ud800"), id="record-surrogate-id"),
        pytest.param(lambda app: app.aopen("\ud800"), id="open-surrogate-id"),
        pytest.param(lambda app: app.alist_runs(limit="x"), id="list-runs-str-limit"),
    ],
)
async def test_app_entry_points_refuse_bad_ids_and_names_clearly(
    sqlite_app: App, call: Callable[[App], Awaitable[Any]]
) -> None:
    with pytest.raises(InvalidArgumentError):
        await call(sqlite_app)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda app: app.asignal("w", "", 1), id="signal"),
        pytest.param(lambda app: app.asend_event("", 1), id="event"),
        pytest.param(lambda app: app.acomplete_token("", 1), id="token"),
    ],
)
async def test_app_refusals_of_blank_names_say_how_to_fix_them(
    sqlite_app: App, call: Callable[[App], Awaitable[Any]]
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await call(sqlite_app)
    assert_clear(caught.value)


async def _start_with_id(app: App, wid: Any) -> Any:
    async def flow(wf: Workflow) -> None:
        return None

    return await app.astart(flow, workflow_id=wid)


@pytest.mark.parametrize("wid", [123, "", "\ud800"])
async def test_start_refuses_a_bad_workflow_id_clearly(sqlite_app: App, wid: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        await _start_with_id(sqlite_app, wid)


@pytest.mark.parametrize("which", ["signal", "event"])
async def test_waits_refuse_a_name_with_a_lone_surrogate(sqlite_app: App, which: str) -> None:
    async def flow(wf: Workflow) -> Any:
        if which == "signal":
            return await wf.wait_for_signal("go\ud800")
        return await wf.wait_for_event("go\ud800")

    with pytest.raises(InvalidArgumentError):
        await sqlite_app.arun(flow, workflow_id=new_id("wait"))


async def test_overlong_workflow_ids_and_signal_names_are_refused_on_every_backend(
    any_app: App,
) -> None:
    """Both backends answer alike: over the index limit, a clear refusal, nothing stored."""
    with pytest.raises(InvalidArgumentError, match="bytes long"):
        await any_app.aopen(_random_text(10_000, 3))
    wid = _random_text(900, 3)
    await any_app.aopen(wid)
    with pytest.raises(InvalidArgumentError, match="bytes long"):
        await any_app.asignal(wid, _random_text(10_000, 4))
    assert await any_app.asignal(wid, _random_text(200, 4)) is False


# -- durations: timeouts, sleeps, retry policies, the fake clock ------------------------------

bad_seconds = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, 1e20, True, "5", None]),
    st.floats(max_value=-1e-9, allow_nan=False),
)


@HEAVY
@given(seconds=bad_seconds)
async def test_a_bad_sleep_or_timeout_is_refused(sqlite_app: App, seconds: Any) -> None:
    assume(seconds is not None)  # None is "no timeout" for waits
    wf = await sqlite_app.aopen(new_id("secs"))
    with pytest.raises(InvalidArgumentError) as caught:
        await wf.sleep(seconds)
    assert_clear(caught.value, "sleep seconds")
    with pytest.raises(InvalidArgumentError) as caught:
        await wf.wait_for_signal("go", timeout=seconds)
    assert_clear(caught.value, "timeout")
    assert (await wf.get_record()).events == ()


bad_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, "1", None, True, -1, -0.5]),
)


@FAST
@given(field=st.sampled_from(["backoff", "multiplier", "max_delay", "jitter"]), value=bad_numbers)
def test_a_bad_retry_number_is_refused_naming_the_field(field: str, value: Any) -> None:
    assume(not (field == "multiplier" and value is True))  # True is not a number here either
    with pytest.raises(InvalidArgumentError) as caught:
        RetryPolicy(**{field: value})
    assert_clear(caught.value, field)


@FAST
@given(
    attempts=st.integers(min_value=1, max_value=50),
    backoff=st.floats(min_value=0, max_value=1e6),
    multiplier=st.floats(min_value=1, max_value=1e300),
    max_delay=st.floats(min_value=0, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=1),
    attempt=st.integers(min_value=1, max_value=10_000),
)
def test_any_valid_retry_policy_gives_a_bounded_delay(
    attempts: int, backoff: float, multiplier: float, max_delay: float, jitter: float, attempt: int
) -> None:
    assume(max_delay >= backoff)  # a shorter cap is refused (its own test)
    policy = RetryPolicy(attempts, backoff, multiplier, max_delay, jitter)
    delay = policy.delay(attempt)
    assert 0 <= delay <= max_delay * (1 + jitter) + 1e-9


@FAST
@given(
    field=st.sampled_from(["attempts", "interrupted_reruns"]),
    value=st.sampled_from([math.nan, math.inf, 1.5, 2.0, "1", None, True, -1, -(10**30)]),
)
def test_a_bad_retry_count_is_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RetryPolicy(**{field: value})
    assert_clear(caught.value, field)


def test_should_retry_must_be_callable() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RetryPolicy(attempts=2, should_retry="yes")  # type: ignore[arg-type]
    assert_clear(caught.value, "should_retry")


@FAST
@given(seconds=st.one_of(bad_numbers, st.floats(min_value=1e12, max_value=1e300)))
def test_the_fake_clock_refuses_a_bad_advance_and_keeps_its_time(seconds: Any) -> None:
    assume(not isinstance(seconds, int | float) or isinstance(seconds, bool) or abs(seconds) > 1)
    clock = FakeClock()
    before = clock.now()
    with pytest.raises(InvalidArgumentError) as caught:
        clock.advance(seconds)
    assert_clear(caught.value, "FakeClock.advance")
    assert clock.now() == before


def test_the_fake_clock_needs_an_aware_start() -> None:
    from datetime import datetime

    with pytest.raises(InvalidArgumentError) as caught:
        FakeClock(datetime(2026, 1, 1))
    assert_clear(caught.value, "FakeClock start")
