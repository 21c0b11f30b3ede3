"""The least a timing may be set to: a value that passes the check for "above 0" may
still be absurd (a poll of 1e-9 s keeps a CPU busy asking the database; a lock held
for 1e-9 s lapses between two writes of its holder). `at_least` refuses one below
its floor with an error naming the floor, why, and what to pass instead."""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["WORKER_DEFAULTS", "WORKER_FLOORS", "at_least", "worker_timing"]


def at_least(name: str, seconds: float, floor: float, why: str, example: str) -> float:
    """`seconds` (already checked as seconds) if it is not below `floor`; else an error
    saying `name` must be at least `floor` seconds, `why`, and `example` to pass."""
    if seconds >= floor:
        return seconds
    raise InvalidArgumentError(
        f"{name} must be at least {floor:g} second{'' if floor == 1 else 's'}, "
        f"got {seconds:g}: {why}; pass e.g. {example}"
    )


# a worker's own timings (`tether.worker.Worker`, `tether worker`):
# setting -> (its floor in seconds, why not less)
WORKER_FLOORS: dict[str, tuple[float, str]] = {
    "poll_interval": (
        0.01,
        "an idle worker claims again every poll, and news of a job wakes it at once "
        "anyway; a shorter poll only keeps a CPU and the database busy",
    ),
    "maintenance_interval": (
        0.1,
        "each tick takes and renews the chore locks (held for three intervals) and "
        "fires due timers; a shorter one keeps a CPU and the database busy, and locks "
        "lapsing within a database round trip pass the chores from worker to worker",
    ),
    "stuck_after": (
        1.0,
        "a run is requeued as stuck once it sat that long with no job; a shorter "
        "time mistakes a run between two of its own writes for a stuck one",
    ),
}

# what each setting is by default (`Worker`'s), shown in the examples of the errors
WORKER_DEFAULTS: dict[str, float] = {
    "poll_interval": 0.5,
    "maintenance_interval": 5.0,
    "stuck_after": 300.0,
}


def worker_timing(setting: str, seconds: float, *, flag: bool = False) -> float:
    """`seconds` (already checked as seconds) if it is not below `setting`'s floor; else
    an error naming the floor and why, in the words of the Python API, or with `flag`,
    of the command line (``--poll-interval``)."""
    floor, why = WORKER_FLOORS[setting]
    name = "--" + setting.replace("_", "-") if flag else setting
    example = (
        f"{name} {WORKER_DEFAULTS[setting]:g}" if flag else f"{name}={WORKER_DEFAULTS[setting]:g}"
    )
    return at_least(name, seconds, floor, why, f"{example} (the default)")
