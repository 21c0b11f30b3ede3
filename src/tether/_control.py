"""Engine control flow that unwinds workflow code (not errors)."""

from __future__ import annotations

from datetime import datetime

__all__ = ["HandBack", "Suspend"]


class Suspend(BaseException):
    """Unwinds a workflow that must wait; the engine parks the run.

    A BaseException so that a user's ``except Exception`` cannot swallow it.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"waiting on {key!r}")


class HandBack(Suspend):
    """Unwinds a workflow at a step boundary because its process is shutting down, or
    because a worker's run waits out a long retry back-off (`not_before`: when its
    step's next attempt is due), which holds none of the worker's slots.

    The engine hands the run back (runnable at once by the next process or
    worker; a worker's job from `not_before`) instead of starting another step.
    A `Suspend`, so that `for_each` lets its running items reach their own
    boundaries before unwinding.
    """

    def __init__(self, not_before: datetime | None = None) -> None:
        self.not_before = not_before
        super().__init__("shutdown" if not_before is None else "retry back-off")
