"""Floors of the lock timings: a mutex's `poll` and `stale_after`, a lease's `ttl`.

1e-9 s passed the check for "above 0": a poll that small spun a CPU against the
database while it waited, and a claim that short lapsed between two writes of a live
holder, so another process took it beside them. Below its floor each is refused,
before anything is taken or recorded, saying the floor, why, and what to pass.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

import tether
from tether import App


async def _no_mutex(app: App, key: str) -> None:
    """The refused call took nothing: the key has no holder, and is free to take."""
    row = await app.store.get_lock("mutex", key)
    assert row is None or row.released_at is not None


@pytest.mark.parametrize(
    ("kwargs", "floor", "default"),
    [
        ({"poll": 1e-9}, "mutex poll must be at least 0.005 seconds, got 1e-09", "poll=0.05"),
        ({"poll": 0.004}, "mutex poll must be at least 0.005 seconds, got 0.004", "poll=0.05"),
        (
            {"poll": timedelta(microseconds=1)},
            "mutex poll must be at least 0.005 seconds, got 1e-06",
            "poll=0.05",
        ),
        ({"stale_after": 1e-9}, "stale_after must be at least 0.3 seconds", "stale_after=30"),
        ({"stale_after": 0.29}, "stale_after must be at least 0.3 seconds", "stale_after=30"),
        (
            {"stale_after": timedelta(milliseconds=1)},
            "stale_after must be at least 0.3 seconds, got 0.001",
            "stale_after=30",
        ),
    ],
)
@pytest.mark.parametrize("how", ["mutex", "with_mutex"])
async def test_a_mutex_timing_below_its_floor_is_refused(
    app: App, how: str, kwargs: dict[str, Any], floor: str, default: str
) -> None:
    wf = await app.aopen(f"mx-floor-{how}")
    ran: list[str] = []
    with pytest.raises(tether.InvalidArgumentError) as err:
        if how == "mutex":
            async with wf.mutex("acct", **kwargs):
                ran.append("block")
        else:
            await wf.with_mutex("acct", lambda: ran.append("fn"), **kwargs)
    text = str(err.value)
    assert floor in text
    assert f"pass e.g. {default} (the default)" in text
    why = "CPU and the database busy" if "poll" in kwargs else "beside a live one"
    assert why in text
    assert ran == []
    await _no_mutex(app, "acct")


async def test_for_each_refuses_a_stale_after_below_the_floor(app: App) -> None:
    wf = await app.aopen("fe-floor")
    done: list[int] = []

    async def item(n: int) -> None:
        done.append(n)

    with pytest.raises(tether.ForEachError) as err:
        await wf.for_each([1, 2], item, mutex_key=lambda n: "k", stale_after=1e-9)
    assert "InvalidArgumentError: stale_after must be at least 0.3 seconds, got 1e-09" in str(
        err.value
    )
    assert done == []
    await _no_mutex(app, "k")


async def test_the_mutex_floors_themselves_are_accepted(app: App) -> None:
    wf = await app.aopen("mx-at-floor")
    async with wf.mutex("acct", poll=0.005, stale_after=0.3) as handle:
        row = await app.store.get_lock("mutex", "acct")
        assert row is not None and row.holder == handle.holder
    got = await wf.with_mutex("acct", lambda: 7, poll=timedelta(milliseconds=5), stale_after=0.3)
    assert got == 7
    await _no_mutex(app, "acct")


@pytest.mark.parametrize(
    ("ttl", "got"),
    [(1e-9, "1e-09"), (0.5, "0.5"), (0.999, "0.999"), (timedelta(milliseconds=1), "0.001")],
)
async def test_a_lease_ttl_below_its_floor_is_refused(app: App, ttl: object, got: str) -> None:
    wf = await app.aopen("lease-floor")
    with pytest.raises(tether.InvalidArgumentError) as err:
        await wf.touch_lease("slot", holder="a", ttl=ttl)  # type: ignore[arg-type]
    text = str(err.value)
    assert f"lease ttl must be at least 1 second, got {got}" in text
    assert "lapses between two writes of a live holder" in text
    assert "pass e.g. ttl=30" in text
    assert (await wf.get_record()).leases == {}
    # the key is free: another holder takes it at once
    assert (await wf.touch_lease("slot", holder="b", ttl=1)).holder == "b"


_NOT_SECONDS = [math.nan, math.inf, -math.inf, -1, -1e-9, True, False, "5", None, [1]]


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        (knob, value)
        for knob in ("timeout", "poll", "stale_after", "ttl")
        for value in _NOT_SECONDS
        if not (knob == "stale_after" and value is None)  # (None: the default, 30 s)
    ],
)
async def test_a_lock_timing_that_is_no_number_of_seconds_says_so(
    app: App, knob: str, value: object
) -> None:
    wf = await app.aopen(f"bad-{knob}")
    with pytest.raises(tether.InvalidArgumentError) as err:
        if knob == "ttl":
            await wf.touch_lease("slot", holder="a", ttl=value)  # type: ignore[arg-type]
        else:
            async with wf.mutex("acct", **{knob: value}):
                pass
    text = str(err.value)
    assert f"{knob} must be a number of seconds" in text
    assert f"got {value!r}" in text
    assert "pass e.g. 60 or timedelta(days=2)" in text
    await _no_mutex(app, "acct")
    assert (await wf.get_record()).leases == {}
