"""A worker's timings have floors: `poll_interval=1e-9` (above 0, so accepted) made an
idle worker claim again without pause, a CPU spent asking the database for work; a
maintenance interval as small took and renewed the chore locks without pause, and a
`stuck_after` as small requeued runs between two of their own writes. Refused now,
saying the floor and why; the floors themselves are taken."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tether
from tether import App
from tether.worker import Worker, maintenance_tick


@pytest.mark.parametrize(
    ("setting", "value", "floor", "why"),
    [
        ("poll_interval", 1e-9, "at least 0.01 seconds", "news of a job wakes it at once"),
        ("poll_interval", timedelta(microseconds=1), "at least 0.01 seconds", "CPU"),
        ("maintenance_interval", 1e-9, "at least 0.1 seconds", "chore locks"),
        ("maintenance_interval", 0.05, "at least 0.1 seconds", "CPU"),
        ("stuck_after", 1e-9, "at least 1 second,", "between two of its own writes"),
    ],
)
def test_a_worker_refuses_timings_below_their_floor(
    sqlite_url: str, setting: str, value: object, floor: str, why: str
) -> None:
    with tether.App(sqlite_url) as app, pytest.raises(tether.InvalidArgumentError) as refused:
        Worker(app, **{setting: value})  # type: ignore[arg-type]
    said = str(refused.value)
    assert said.startswith(f"{setting} must be {floor}")
    assert why in said and f"pass e.g. {setting}=" in said


def test_a_worker_takes_its_timings_at_their_floor(sqlite_url: str) -> None:
    with tether.App(sqlite_url) as app:
        worker = Worker(app, poll_interval=0.01, maintenance_interval=0.1, stuck_after=1)
    assert (worker.poll_interval, worker.maintenance_interval, worker.stuck_after) == (
        0.01,
        0.1,
        1.0,
    )


async def test_a_tick_refuses_a_stuck_after_below_its_floor(app: App) -> None:
    """A cron-triggered host calls `maintenance_tick` itself: the same floor holds."""
    with pytest.raises(tether.InvalidArgumentError, match="stuck_after must be at least 1 "):
        await maintenance_tick(app, "w1", stuck_after=0.001)
    assert await app.store.list_locks("chore") == []  # refused before any chore
    assert (await maintenance_tick(app, "w1", stuck_after=1)).skipped == []
