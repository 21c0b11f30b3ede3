"""The least a worker's timings may be set to, and why: a poll of 1e-9 s (which passed
the check for "above 0") kept a CPU busy asking the database for work, and a
maintenance interval as small took and renewed its chore locks without pause."""

from __future__ import annotations

from ..errors import InvalidArgumentError

__all__ = ["DEFAULTS", "FLOORS", "at_least"]

# setting -> (its floor in seconds, why not less)
FLOORS: dict[str, tuple[float, str]] = {
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
DEFAULTS: dict[str, float] = {
    "poll_interval": 0.5,
    "maintenance_interval": 5.0,
    "stuck_after": 300.0,
}


def at_least(setting: str, seconds: float, *, flag: bool = False) -> float:
    """`seconds` (already checked as seconds) if it is not below `setting`'s floor; else
    an error naming the floor and why, in the words of the Python API, or with `flag`,
    of the command line (``--poll-interval``)."""
    floor, why = FLOORS[setting]
    if seconds >= floor:
        return seconds
    name = "--" + setting.replace("_", "-") if flag else setting
    example = f"{name} {DEFAULTS[setting]:g}" if flag else f"{name}={DEFAULTS[setting]:g}"
    raise InvalidArgumentError(
        f"{name} must be at least {floor:g} second{'' if floor == 1 else 's'}, "
        f"got {seconds:g}: {why}; "
        f"pass e.g. {example} (the default)"
    )
