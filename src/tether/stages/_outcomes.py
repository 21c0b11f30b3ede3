"""What an async-batch stage answers: `Suspend` from submit, `Ready`/`NotReady`/`Failed`
from check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .._durations import check_seconds

__all__ = ["DEFAULT_MAX_WAIT", "DEFAULT_POLL_EVERY", "Failed", "NotReady", "Ready", "Suspend"]

DEFAULT_POLL_EVERY = 30.0  # seconds between checks when neither side says
DEFAULT_MAX_WAIT = 24 * 3600.0  # a provider batch's usual completion window


def _seconds(what: str, value: float | timedelta | None, default: float) -> float:
    """Seconds (or a timedelta, as elsewhere in tether), above 0; `default` for None."""
    return default if value is None else check_seconds(what, value, positive=True)


@dataclass(frozen=True)
class Suspend:
    """Returned by a batch stage's submit: park the run, check `state` every
    `poll_every` seconds, give up after `max_wait` seconds.

    `state` (JSON data: a batch id, a status URL) is recorded and handed to
    every check; it must hold what the check needs, since the check may run
    on another worker days later.
    """

    state: Any
    poll_every: float | timedelta | None = None
    max_wait: float | timedelta | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "poll_every", _seconds("poll_every", self.poll_every, DEFAULT_POLL_EVERY)
        )
        object.__setattr__(self, "max_wait", _seconds("max_wait", self.max_wait, DEFAULT_MAX_WAIT))


@dataclass(frozen=True)
class Ready:
    """The batch is done: `output` is the stage's output (validated by its model)."""

    output: Any


@dataclass(frozen=True)
class NotReady:
    """Not done yet: check again in `next_check_in` seconds (default: `poll_every`)."""

    next_check_in: float | timedelta | None = None

    def __post_init__(self) -> None:
        if self.next_check_in is not None:  # stored as seconds: compared with the time left
            seconds = _seconds("next_check_in", self.next_check_in, 0.0)
            object.__setattr__(self, "next_check_in", seconds)


@dataclass(frozen=True)
class Failed:
    """The batch failed for good: the stage (and the run) fails with `error`."""

    error: str
